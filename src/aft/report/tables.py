"""The report's tables, built from a `RecordIndex` and rendered as GitHub markdown.

Every builder returns a `Table`; a table with no rows carries `empty_note` (one line saying what is
missing) and renders as that note instead of crashing. Accuracies are shown in percent, normalized
errors as ratios, both as ``mean ± SE`` over seeds (``± —`` with a single seed).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aft.experiments.records import RunRecord
from aft.report.aggregate import (
    PROBE,
    STL,
    Group,
    Headline,
    RecordIndex,
    Setting,
    Stat,
    mean_se,
    method_sort_key,
    teachers_label,
)

#: known rho summary keys, shown first (any other key a record has follows alphabetically)
RHO_STAT_ORDER = ("mean", "frac_above_half", "share")
#: `extra` keys read by the cost table
LATENCY_KEY = "latency_ms"
TEACHER_PARAMS_KEY = "teacher_params"
DASH = "—"


@dataclass
class Table:
    """A titled table: header, rows of already formatted cells, footnotes.

    Attributes:
        key: short identifier (also the HTML anchor).
        title: section title.
        description: one sentence on what the table shows.
        header: column names.
        rows: formatted cells, one list per row.
        notes: footnotes rendered under the table.
        empty_note: why the table has no rows (rendered instead of the table).
        n_records: how many records feed the table.
    """

    key: str
    title: str
    description: str
    header: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    empty_note: str = ""
    n_records: int = 0


# --- formatting ----------------------------------------------------------------------------------
def fmt_stat(stat: Stat | None, scale: float = 1.0, digits: int = 3) -> str:
    """``mean ± se`` (``mean ± —`` for a single seed, ``—`` for no data)."""
    if stat is None:
        return DASH
    se = DASH if stat.se is None else f"{stat.se * scale:.{digits}f}"
    return f"{stat.mean * scale:.{digits}f} ± {se}"


def fmt_acc(stat: Stat | None) -> str:
    """Accuracy in percent with two decimals, e.g. ``93.41 ± 0.12``."""
    return fmt_stat(stat, 100.0, 2)


def fmt_ratio(stat: Stat | None) -> str:
    """Normalized error with three decimals, e.g. ``0.912 ± 0.010``."""
    return fmt_stat(stat, 1.0, 3)


def fmt_pts(diff: float | None) -> str:
    """A difference of accuracies (fractions) in percentage points with a sign, e.g. ``+3.20``."""
    return DASH if diff is None else f"{diff * 100:+.2f}"


def fmt_int(n: float | None) -> str:
    return DASH if n is None else f"{int(round(n)):,}"


def method_label(method: str) -> str:
    return {STL: "none (STL)", PROBE: "probe (linear probe)"}.get(method, method)


def _esc(cell: str) -> str:
    return cell.replace("|", "\\|").replace("\n", " ")


def to_markdown(table: Table) -> str:
    """The table as GitHub markdown (or its empty note), followed by its footnotes."""
    if not table.rows:
        return f"_{table.empty_note or 'No data.'}_\n"
    lines = ["| " + " | ".join(_esc(h) for h in table.header) + " |",
             "|" + "|".join("---" for _ in table.header) + "|"]
    lines += ["| " + " | ".join(_esc(c) for c in row) + " |" for row in table.rows]
    out = "\n".join(lines) + "\n"
    if table.notes:
        out += "\n" + "\n".join(f"- {n}" for n in table.notes) + "\n"
    return out


def _group_cells(g: Group) -> list[str]:
    return [g.dataset, g.student, g.size_label()]


# --- builders ------------------------------------------------------------------------------------
def headline_table(h: Headline, index: RecordIndex) -> Table:
    """Normalized test error: rows (method, teacher set), columns student groups + average."""
    t = Table(
        "headline",
        "Normalized test error (headline)",
        "Test error divided by STL's test error on the same dataset, student, training size and views "
        "(lower is better; STL = 1), per method and teacher set; mean ± SE over seeds.",
        ["Method", "Teachers", *[g.label() for g in h.groups], "Average", "Settings"],
    )
    for row in h.rows:
        t.rows.append([method_label(row.method), teachers_label(row.teachers),
                       *[fmt_ratio(row.cells.get(g)) for g in h.groups],
                       fmt_ratio(row.average), str(row.average.n)])
    for ts in sorted({ts for ts, _ in h.gaps}, key=lambda x: (len(x), x)):
        t.rows.append([f"probe − STL, acc. pts [{teachers_label(ts)}]", teachers_label(ts),
                       *[fmt_pts(h.gaps.get((ts, g))) for g in h.groups], DASH, DASH])
    t.notes = [
        "Per seed: test error ÷ STL's test error of the same seed (÷ STL's mean error where STL lacks "
        "that seed); then mean ± standard error over seeds (std with ddof=1 / √n; `± —` = one seed).",
        "Average = mean of the per-setting means over the settings the row has (count in *Settings*); "
        "its SE is computed from the per-setting SEs, √(Σ SE²) / k, treating settings as independent "
        "(`—` if any setting has a single seed).",
        "The *probe − STL* rows give the teacher's linear-probe accuracy minus STL's (percentage points): "
        "transfer can only help where the probe beats STL.",
        *h.notes,
    ]
    gset = set(h.groups)
    t.n_records = sum(1 for r in index.final if Group(r.suite, r.dataset, r.student, r.train_size, r.views)
                      in gset or r.method == PROBE)
    if not h.rows:
        t.empty_note = "No normalized error: no student setting has both STL and method results. " + " ".join(h.notes)
    return t


def _methods(index: RecordIndex) -> list[str]:
    ms = {m for s, m in index.pairs() if m not in (STL, PROBE) and s.group.student != PROBE}
    return sorted(ms, key=method_sort_key)


def _teacher_sets(index: RecordIndex, g: Group) -> list[tuple[str, ...]]:
    sets = {s.teachers for s, m in index.pairs() if s.group == g and s.teachers}
    sets |= set(index.probe_teacher_sets(g))
    return sorted(sets, key=lambda ts: (len(ts), ts)) or [()]


def accuracy_table(index: RecordIndex) -> Table:
    """Mean ± SE test accuracy (%) of every method per setting, with the probe and probe − STL gap."""
    methods = _methods(index)
    t = Table(
        "accuracy",
        "Test accuracy per setting",
        "Test accuracy (%) of every method, mean ± SE over seeds, with the teacher's linear probe and the "
        "probe − STL gap (percentage points) beside each setting.",
        ["Dataset", "Student", "Train size", "Teachers", "STL", "Probe", "Probe − STL (pts)", *methods],
    )
    for g in index.student_groups():
        stl = index.acc(Setting(g, ()), STL)
        for ts in _teacher_sets(index, g):
            probe = index.probe_acc(g, ts) if ts else None
            gap = probe.mean - stl.mean if (probe is not None and stl is not None) else None
            t.rows.append([*_group_cells(g), teachers_label(ts), fmt_acc(stl), fmt_acc(probe), fmt_pts(gap),
                           *[fmt_acc(index.acc(Setting(g, ts), m)) if ts else DASH for m in methods]])
    t.notes = ["STL has no teachers: the same STL result is shown on every teacher-set row of a setting.",
               "`—`: no final record for that cell."]
    t.n_records = len(index.final)
    if not t.rows:
        t.empty_note = "No final-phase records with a test accuracy for any student: no accuracy table."
    return t


def ladder_table(index: RecordIndex, methods: Sequence[str] = ("aft", "kd")) -> Table:
    """Test accuracy vs single teacher, teachers ordered weak → strong by their probe accuracy."""
    t = Table(
        "ladder",
        "Teacher ladder",
        "For each setting and method, test accuracy (%) with each single teacher, teachers ordered by "
        "their linear-probe accuracy (weaker → stronger); does the student improve in the same order?",
        ["Dataset", "Student", "Train size", "Method", "STL", "Teachers, weak → strong (probe acc.)",
         "Test acc., same order", "Monotonic ↑"],
    )
    no_probe: set[str] = set()
    used = 0
    for g in index.student_groups():
        for method in methods:
            singles = sorted({s.teachers[0] for s, m in index.pairs()
                              if s.group == g and m == method and len(s.teachers) == 1})
            if len(singles) < 2:
                continue
            probes = {tch: index.probe_acc(g, (tch,)) for tch in singles}
            no_probe |= {tch for tch, p in probes.items() if p is None}
            order = sorted(singles, key=lambda tch: (probes[tch] is None,
                                                     probes[tch].mean if probes[tch] else 0.0, tch))
            accs = [index.acc(Setting(g, (tch,)), method) for tch in order]
            used += sum(a.n for a in accs if a is not None)
            means = [a.mean for a in accs if a is not None]
            mono = "yes" if all(b > a for a, b in zip(means, means[1:], strict=False)) else "no"
            teachers_cell = " → ".join(
                f"{tch} ({probes[tch].mean * 100:.2f})" if probes[tch] else f"{tch} (no probe)" for tch in order)
            t.rows.append([*_group_cells(g), method, fmt_acc(index.acc(Setting(g, ()), STL)), teachers_cell,
                           " → ".join(fmt_acc(a) for a in accs), mono])
    t.notes = ["Monotonic ↑ = yes when each teacher's mean test accuracy is strictly above the previous "
               "(weaker) teacher's; differences within the SEs are not significant."]
    if no_probe:
        t.notes.append(f"No linear probe for {', '.join(sorted(no_probe))}: ordered last, by name.")
    t.n_records = used
    if not t.rows:
        t.empty_note = (f"No teacher ladder: no setting has final records of {' or '.join(methods)} "
                        "with two or more single teachers.")
    return t


def multi_teacher_table(index: RecordIndex) -> Table:
    """Each multi-teacher (concatenated) set vs each of its single teachers, same method and setting."""
    t = Table(
        "multi_teacher",
        "Multi-teacher vs single teachers",
        "Test accuracy (%) with a concatenated teacher set against each of its teachers alone "
        "(same method, dataset, student, training size and views).",
        ["Dataset", "Student", "Train size", "Method", "Teacher set", "Set acc.", "Single-teacher acc.",
         "Best single", "Set − best single (pts)"],
    )
    used = 0
    for setting, method in index.pairs():
        if len(setting.teachers) < 2 or method == STL:
            continue
        multi = index.acc(setting, method)
        singles = [(tch, index.acc(Setting(setting.group, (tch,)), method)) for tch in setting.teachers]
        have = [(tch, s) for tch, s in singles if s is not None]
        best = max(have, key=lambda x: x[1].mean) if have else None
        used += (multi.n if multi else 0) + sum(s.n for _, s in have)
        t.rows.append([
            *_group_cells(setting.group), method_label(method), setting.teachers_label(), fmt_acc(multi),
            "; ".join(f"{tch}: {fmt_acc(s)}" for tch, s in singles),
            best[0] if best else DASH,
            fmt_pts(multi.mean - best[1].mean) if (best and multi) else DASH,
        ])
    t.n_records = used
    if not t.rows:
        t.empty_note = "No multi-teacher comparison: no final record uses more than one teacher."
    return t


def rho_table(index: RecordIndex) -> Table:
    """Per teacher, the summaries of the learned feature weights rho, averaged over seeds."""
    values: dict[tuple[Setting, str, str], dict[str, dict[int, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    stats: set[str] = set()
    n = 0
    for r in index.final:
        if not r.rho:
            continue
        n += 1
        for teacher, summary in r.rho.items():
            for stat, v in summary.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    values[(Setting.of(r), r.method, teacher)][stat][r.seed].append(float(v))
                    stats.add(stat)
    cols = [s for s in RHO_STAT_ORDER if s in stats] + sorted(stats - set(RHO_STAT_ORDER))
    t = Table(
        "rho",
        "Which teacher features ρ favours",
        "Summaries of the learned feature weights ρ per teacher (as logged by the runs), mean ± SE over seeds.",
        ["Dataset", "Student", "Train size", "Method", "Teacher set", "Teacher", *cols],
    )

    def cell(per_seed: dict[int, list[float]]) -> str:
        if not per_seed:
            return DASH
        return fmt_stat(mean_se(math.fsum(v) / len(v) for v in per_seed.values()))

    keys = sorted(values, key=lambda k: (k[0].group, len(k[0].teachers), k[0].teachers,
                                         method_sort_key(k[1]), k[2]))
    for setting, method, teacher in keys:
        per_stat = values[(setting, method, teacher)]
        t.rows.append([*_group_cells(setting.group), method, setting.teachers_label(), teacher,
                       *[cell(per_stat.get(c, {})) for c in cols]])
    t.notes = ["Statistics as logged in each record's `rho` (e.g. mean = mean ρ over the teacher's features, "
               "frac_above_half = fraction with ρ > 0.5, share = the teacher's share of the total ρ)."]
    t.n_records = n
    if not t.rows:
        t.empty_note = "No ρ summaries: no final record has a `rho` entry (only AFT-family methods log one)."
    return t


def _mode(values: Sequence[int]) -> int | None:
    vals = [v for v in values if v]
    return Counter(vals).most_common(1)[0][0] if vals else None


def _mean_or_none(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


def _latency(extra: dict[str, Any]) -> float | None:
    v = extra.get(LATENCY_KEY)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def cost_table(index: RecordIndex) -> Table:
    """Parameters and inference latency of each student vs each teacher (from the probe records)."""
    t = Table(
        "cost",
        "Student size and inference cost",
        "Parameters and inference latency of the students against the teachers (measured with their "
        "linear probe); teacher params ÷ student params is the size reduction.",
        ["Dataset", "Model", "Role", "Params", "Latency (ms)", "Teacher ÷ student params"],
    )
    by_ds: dict[tuple[str, str], dict[tuple[str, Any], list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in index.final:
        by_ds[(r.suite, r.dataset)][("T", tuple(r.teachers)) if r.method == PROBE else ("S", r.student)].append(r)
    fallback = False
    for (_suite, dataset), models in sorted(by_ds.items()):
        teacher_params: dict[tuple[str, ...], int] = {}
        teacher_rows = []
        for (kind, name), recs in sorted(models.items(), key=lambda kv: (kv[0][0], len(kv[0][1]), kv[0][1])):
            if kind != "T":
                continue
            tp = _mode([int(r.extra[TEACHER_PARAMS_KEY]) for r in recs
                        if isinstance(r.extra.get(TEACHER_PARAMS_KEY), (int, float))])
            lat = _mean_or_none([x for x in (_latency(r.extra) for r in recs) if x is not None])
            if tp is not None:
                teacher_params[name] = tp
                params = fmt_int(tp)
            else:
                fallback = True
                params = fmt_int(_mode([r.student_params for r in recs])) + " †"
            teacher_rows.append([dataset, teachers_label(name), "teacher + linear probe", params,
                                 DASH if lat is None else f"{lat:.3f}", DASH])
        for (kind, name), recs in sorted(models.items()):
            if kind != "S":
                continue
            sp = _mode([r.student_params for r in recs])
            lat = _mean_or_none([x for x in (_latency(r.extra) for r in recs) if x is not None])
            ratio = "; ".join(f"{teachers_label(ts)}: {tp / sp:,.0f}×"
                              for ts, tp in sorted(teacher_params.items(), key=lambda kv: (len(kv[0]), kv[0]))
                              if len(ts) == 1 and sp) or DASH
            t.rows.append([dataset, name, "student", fmt_int(sp), DASH if lat is None else f"{lat:.3f}", ratio])
        t.rows.extend(teacher_rows)
    t.notes = [f"Latency = mean of the records' `extra['{LATENCY_KEY}']` (`—` when not recorded); "
               f"teacher params from `extra['{TEACHER_PARAMS_KEY}']` of the probe records."]
    if fallback:
        t.notes.append(f"†: no `extra['{TEACHER_PARAMS_KEY}']` recorded; the probe record's student_params "
                       "is shown instead.")
    t.n_records = len(index.final)
    if not t.rows:
        t.empty_note = "No final records: no size and cost table."
    return t
