"""The report's view of beta selection: what each selector chose and how well, from the records.

* `choices`: per (setting, method), the choice recomputed from the records with the same selector
  the grid used (`aft.experiments.selection`): cv from the fold records, holdout from the
  select-phase records.
* `selection_table`: the chosen beta and step with the fold mean ± SE, flagged when it lies at the
  edge of the grid.
* `regret_table`: from the analysis-only ``regret`` runs (every beta trained as the finals are and
  evaluated on test), the test accuracy of CV's and holdout's choice minus the best beta's in
  hindsight. Never used to choose.
"""

from __future__ import annotations

import math
from collections import defaultdict

from aft.experiments.records import RunRecord
from aft.experiments.selection import Choice, choose_cv, choose_holdout, edge_warning
from aft.report.aggregate import STL, RecordIndex, Setting, mean_se, method_sort_key
from aft.report.tables import DASH, Table, _group_cells, fmt_acc, fmt_pts

Key = tuple[Setting, str]


def choices(index: RecordIndex, mode: str) -> dict[Key, Choice]:
    """Per (setting, method) the choice of selector `mode` (``cv`` or ``holdout``) from the records."""
    groups: dict[Key, list] = defaultdict(list)
    for r in index.cv if mode == "cv" else index.select:
        groups[(Setting.of(r), r.method)].append(r)
    out: dict[Key, Choice] = {}
    for key, recs in groups.items():
        try:
            out[key] = choose_cv(recs) if mode == "cv" else choose_holdout(recs)
        except Exception as exc:  # an incomplete set of fold runs: reported, not fatal
            index.notes.append(f"{key[1]} {key[0].group.label()}: no {mode} choice ({exc})")
    return out


def _label(key: Key) -> str:
    s, method = key
    return f"{method} {s.group.label()} [{s.teachers_label()}]"


def edge_notes(index: RecordIndex) -> list[str]:
    """One warning per choice at the edge of its grid (both selectors)."""
    out = []
    for mode in ("cv", "holdout"):
        for key, c in sorted(choices(index, mode).items(), key=lambda kv: (kv[0][0], method_sort_key(kv[0][1]))):
            warn = edge_warning(f"{mode} {_label(key)}", c) if key[1] != STL else None
            if warn:
                out.append("warning: " + warn)
    return out


def collapse_notes(index: RecordIndex) -> list[str]:
    """One warning per (setting, method, beta, phase) with runs that never left chance (`extra.collapsed`).

    Final runs are what the test tables average: a collapsed one is a defect to explain, so it is
    listed first; collapsed fold/select runs only lowered that beta's validation score.
    """
    groups: dict[tuple[str, str, str, int, str, str, float], list[RunRecord]] = {}
    for r in [*index.final, *index.cv, *index.select]:
        if r.extra.get("collapsed"):
            teachers = "+".join(r.teachers) or "-"
            key = (r.phase, r.suite, r.student, r.train_size, r.method, teachers, float(r.beta))
            groups.setdefault(key, []).append(r)
    out = []
    for (phase, suite, student, n, method, teachers, beta), recs in sorted(
            groups.items(), key=lambda kv: (kv[0][0] != "final", kv[0])):  # train sizes sort as numbers
        where = f"{suite}/{student}/n={n}"
        seeds = sorted({r.seed if r.fold is None else r.fold for r in recs})
        what = "seeds" if phase != "cv" else "folds"
        out.append(f"warning: collapsed ({phase}): {where} {method} [{teachers}] beta={beta:g}, {len(recs)} run(s), "
                   f"{what} {seeds}: {recs[0].extra.get('collapse_reason', 'never left chance')}")
    return out


def selection_table(index: RecordIndex) -> Table:
    """The chosen beta (and step) per setting and method, with its validation score."""
    t = Table(
        "selection",
        "Selected β and stopping step",
        "The weight (and, under cross-validation, the number of steps) each method was run with, chosen on "
        "training labels only: mean ± SE of the fold validation accuracy at the chosen step and the mean fold "
        "validation cross-entropy there (cv; 'cv (loss)' compared the betas by that loss, 'cv (accuracy)' by "
        "the accuracy), or the validation accuracy of one carved split (holdout).",
        ["Dataset", "Student", "Train size", "Method", "Teacher set", "Selection", "β", "Steps", "Val acc %",
         "Val loss", "Grid", "Edge"],
    )
    n = 0
    for mode in ("cv", "holdout"):
        got = choices(index, mode)
        for key in sorted(got, key=lambda k: (k[0].group, len(k[0].teachers), k[0].teachers, method_sort_key(k[1]))):
            s, method = key
            c = got[key]
            n += sum(len(sc.folds) for sc in c.scores)
            val = f"{100 * c.mean:.1f}" + ("" if math.isnan(c.se) else f" ± {100 * c.se:.1f}")
            chosen = next((sc for sc in c.scores if sc.beta == c.beta), None)
            loss = DASH if chosen is None or chosen.loss is None else f"{chosen.loss:.3f}"
            label = f"cv ({c.score})" if mode == "cv" and method != STL else mode
            t.rows.append([*_group_cells(s.group), method, s.teachers_label(), label,
                           DASH if method == STL else f"{c.beta:g}", DASH if c.step is None else str(c.step), val, loss,
                           DASH if method == STL else ", ".join(f"{sc.beta:g}" for sc in c.scores),
                           "⚠ at edge" if c.at_edge and method != STL else ""])
    t.n_records = n
    t.notes = ["⚠ at edge: the choice is the smallest or largest β of a grid of three or more; the best value "
               "may lie outside the grid (extend beta_grid)."]
    if not t.rows:
        t.empty_note = "No selection records (phase select or cv)."
    return t


def _beta(choice: Choice | None) -> float | None:
    return None if choice is None else choice.beta


def one_se_beta(choice: Choice | None) -> float | None:
    """The largest beta whose CV score is within one SE of the best score (analysis only)."""
    if choice is None or choice.mode != "cv" or not choice.scores:
        return None
    best = max(choice.scores, key=lambda sc: sc.mean)
    bar = best.mean - (best.se if math.isfinite(best.se) else 0.0)
    return max(sc.beta for sc in choice.scores if sc.mean >= bar)


def regret_table(index: RecordIndex) -> Table:
    """Selection regret of CV and holdout: test accuracy of the chosen β minus the best β's in hindsight."""
    t = Table(
        "regret",
        "Selection regret: CV vs holdout",
        "Analysis only (`aft compare --analysis regret`, suite key regret_analysis): every β of the grid is trained as the finals are "
        "and evaluated on test; regret = test accuracy of the selector's β − test accuracy of the best β in "
        "hindsight (points, mean over seeds; 0 is perfect). Never used to choose. The last two columns are "
        "an alternative CV rule, not the one aft uses: the largest β whose fold mean is within one SE of the "
        "best β's (the one-standard-error rule with the strongest prior as the simplest model).",
        ["Suite", "Dataset", "Student", "Train size", "Method", "Teacher set", "Best β (test)", "Best test %",
         "CV β", "CV regret", "Holdout β", "Holdout regret", "1-SE β", "1-SE regret"],
    )
    per: dict[Key, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in index.regret:
        if r.test_acc is not None and math.isfinite(r.test_acc):
            per[(Setting.of(r), r.method)][r.beta].append(float(r.test_acc))
    cv, ho = choices(index, "cv"), choices(index, "holdout")
    for key in sorted(per, key=lambda k: (k[0].group, len(k[0].teachers), k[0].teachers, method_sort_key(k[1]))):
        s, method = key
        acc = {b: mean_se(v) for b, v in per[key].items()}
        best = max(acc, key=lambda b: (acc[b].mean, -b))

        cells = []
        for b in (_beta(cv.get(key)), _beta(ho.get(key)), one_se_beta(cv.get(key))):
            if b is None or b not in acc:
                cells += [DASH, DASH]
            else:
                cells += [f"{b:g}", fmt_pts(acc[b].mean - acc[best].mean)]
        t.rows.append([s.group.suite, *_group_cells(s.group), method, s.teachers_label(), f"{best:g}",
                       fmt_acc(acc[best]), *cells])
    t.n_records = len(index.regret)
    if not t.rows:
        t.empty_note = "No regret-phase records: run a suite with `regret_analysis: true` to fill this table."
    return t
