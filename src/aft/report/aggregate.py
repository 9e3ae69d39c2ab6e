"""Grouping of run records into settings, mean ± standard error over seeds, and normalized error.

Vocabulary (../shared/BENCHMARKS.md):

- a *setting* is (suite, dataset, student, teachers, train size, views);
- STL is method ``"none"`` (no teachers): the STL of a setting is the STL run of the same suite,
  dataset, student, train size and views, whatever the teacher set;
- the linear probe is method ``"probe"`` (student ``"probe"``, views 1): the probe of a setting is the
  probe on the same suite, dataset, train size and teacher set (same views if there is one, else 1);
- only ``phase == "final"`` records with a test accuracy feed test tables (``cv`` fold records feed
  the beta curves and the selection table, ``regret`` records only the regret table); ``phase == "select"``
  records (validation only) feed the beta curves.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from aft.experiments.records import RunRecord

log = logging.getLogger(__name__)

STL = "none"
PROBE = "probe"
#: display order of methods; unknown methods follow alphabetically, AFT variants right after `aft`
METHOD_ORDER = ("none", "probe", "kd", "rkd", "ft", "btuning", "kkd", "aft")


def method_sort_key(method: str) -> tuple[int, str]:
    """Sort key that puts STL, probe, the baselines and then AFT (and its variants) in a fixed order."""
    if method in METHOD_ORDER:
        return (METHOD_ORDER.index(method) * 2, method)
    if method.startswith("aft"):
        return (METHOD_ORDER.index("aft") * 2 + 1, method)
    return (len(METHOD_ORDER) * 2, method)


@functools.total_ordering
@dataclass(frozen=True)
class Group:
    """A (suite, dataset, student, train size, views) cell: a setting without its teachers.

    Groups sort as a reader scans a table: by dataset, student, training size *as a number*, views,
    then suite (``n=100, n=500, n=2000`` even when the n=500 runs come from another suite).
    """

    suite: str
    dataset: str
    student: str
    train_size: int
    views: int = 1

    def sort_key(self) -> tuple[str, str, int, int, str]:
        """(dataset, student, train size, views, suite): the display order."""
        return (self.dataset, self.student, self.train_size, self.views, self.suite)

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Group):
            return NotImplemented
        return self.sort_key() < other.sort_key()

    def label(self) -> str:
        """Short column label, e.g. ``fashion-mnist / cnn / n=500`` (``, views=4`` when views > 1)."""
        return f"{self.dataset} / {self.student} / {self.size_label()}"

    def size_label(self) -> str:
        return f"n={self.train_size}" + (f", views={self.views}" if self.views != 1 else "")


@dataclass(frozen=True, order=True)
class Setting:
    """(suite, dataset, student, teachers, train size, views): what one comparison cell holds fixed."""

    group: Group
    teachers: tuple[str, ...] = ()

    @classmethod
    def of(cls, record: RunRecord) -> Setting:
        group = Group(record.suite, record.dataset, record.student, record.train_size, record.views)
        return cls(group, tuple(record.teachers))

    def teachers_label(self) -> str:
        return teachers_label(self.teachers)


def teachers_label(teachers: Sequence[str]) -> str:
    """``a+b`` for a concatenation, ``—`` for none."""
    return "+".join(teachers) or "—"


@dataclass(frozen=True)
class Stat:
    """Mean ± standard error of per-seed values (`se` is None with a single value)."""

    mean: float
    se: float | None
    n: int
    values: tuple[float, ...] = field(default=(), repr=False, compare=False)


def mean_se(values: Iterable[float]) -> Stat:
    """Mean and standard error (sample std with ddof=1 divided by sqrt(n)); SE is None for n == 1."""
    vals = tuple(float(v) for v in values)
    if not vals:
        raise ValueError("mean_se needs at least one value")
    n = len(vals)
    mean = math.fsum(vals) / n
    if n == 1:
        return Stat(mean, None, 1, vals)
    var = math.fsum((v - mean) ** 2 for v in vals) / (n - 1)
    return Stat(mean, math.sqrt(var) / math.sqrt(n), n, vals)


def average_of_stats(stats: Sequence[Stat]) -> Stat:
    """Mean of per-setting means; SE = sqrt(sum SE_i^2) / k (settings treated as independent).

    The SE is None when any setting has a single seed (its SE is unknown).
    """
    if not stats:
        raise ValueError("average_of_stats needs at least one stat")
    k = len(stats)
    mean = math.fsum(s.mean for s in stats) / k
    if any(s.se is None for s in stats):
        se = None
    else:
        se = math.sqrt(math.fsum(s.se**2 for s in stats)) / k  # type: ignore[operator]
    return Stat(mean, se, k, tuple(s.mean for s in stats))


def dedupe(records: Iterable[RunRecord]) -> list[RunRecord]:
    """Drop repeated runs (same `key`); the last one in file order wins (a rerun replaces a run)."""
    by_key: dict[str, RunRecord] = {}
    for r in records:
        if r.key in by_key:
            log.info("duplicate run record %s: keeping the later one", r.key)
            by_key.pop(r.key)
        by_key[r.key] = r
    return list(by_key.values())


def drop_superseded(records: list[RunRecord]) -> tuple[list[RunRecord], list[str]]:
    """Keep, per (suite, train size), the records of the configuration written last.

    A suite re-run with other shared settings at a size (a longer budget, another selection...)
    writes records with another `config` hash next to the old ones; mixing them would average two
    budgets' seeds and cross-validate over two budgets' folds. The later configuration supersedes
    the earlier one; returns the kept records and one note per group that lost records. Fold
    records are compared among themselves: scored by loss they carry a key of their own
    (`SuiteConfig.settings_hash`), next to the finals they chose.
    """
    def group(r: RunRecord) -> tuple[str, int, bool]:
        return (r.suite, r.train_size, r.phase == "cv")

    latest: dict[tuple[str, int, bool], str] = {}
    for r in records:
        latest[group(r)] = r.config
    kept, dropped = [], Counter()
    for r in records:
        if r.config == latest[group(r)]:
            kept.append(r)
        else:
            dropped[group(r)] += 1
    notes = [f"{n} {'fold ' if cv else ''}record(s) of suite {suite} at n={size} from an earlier configuration (config "
             f"{'/'.join(sorted({r.config for r in records if group(r) == (suite, size, cv)} - {latest[(suite, size, cv)]}))}"
             f", superseded by {latest[(suite, size, cv)]}) ignored" for (suite, size, cv), n in sorted(dropped.items())]
    for note in notes:
        log.info(note)
    return kept, notes


def drop_unchosen(records: list[RunRecord]) -> tuple[list[RunRecord], list[str]]:
    """Keep, per (setting, method) with fold records, only the final runs of the current choice.

    The finals' keys name their beta and steps, so when the fold runs are rescored (another
    `cv_score`) or rerun, the finals of the earlier choice stay in the records next to the new ones;
    averaging them would mix two choices. The choice is recomputed from the fold records exactly as
    the grid made it (`aft.experiments.selection.choose_cv`); finals with another (beta, steps) are
    left out, with one note per (setting, method).
    """
    from aft.experiments.selection import choose_cv

    folds: dict[tuple[Setting, str], list[RunRecord]] = defaultdict(list)
    for r in records:
        if r.phase == "cv":
            folds[(Setting.of(r), r.method)].append(r)
    chosen: dict[tuple[Setting, str], tuple[float, int | None]] = {}
    for key, recs in folds.items():
        try:
            c = choose_cv(recs)
        except Exception:  # noqa: BLE001 - incomplete fold runs: the selection table notes it
            continue
        chosen[key] = (c.beta, c.step)
    kept, dropped = [], Counter()
    for r in records:
        key = (Setting.of(r), r.method)
        if r.phase == "final" and key in chosen and (r.beta, r.steps) != chosen[key]:
            dropped[key] += 1
        else:
            kept.append(r)
    notes = [f"{n} final record(s) of {m} {s.group.label()} [{s.teachers_label()}] from an earlier choice ignored "
             f"(the fold records now choose beta={chosen[(s, m)][0]:g}, {chosen[(s, m)][1]} steps)"
             for (s, m), n in sorted(dropped.items(), key=lambda kv: (kv[0][0].group, kv[0][0].teachers, kv[0][1]))]
    for note in notes:
        log.info(note)
    return kept, notes


@dataclass
class RecordIndex:
    """Records of a comparison, deduplicated and indexed by (setting, method) and seed.

    Attributes:
        records: every (deduplicated) record.
        final: final-phase records with a test accuracy (these feed the test tables).
        select: select-phase records (these feed the beta curves only).
        cv: cross-validation fold records (beta curves with fold error bars, the selection table).
        regret: analysis-only records of every beta on test (the selection-regret table only).
        auto: analysis-only ``--beta auto`` records (the beta-auto table only).
        notes: one line per thing that was ignored (e.g. final records without a test accuracy).
    """

    records: list[RunRecord]
    final: list[RunRecord] = field(default_factory=list)
    select: list[RunRecord] = field(default_factory=list)
    cv: list[RunRecord] = field(default_factory=list)
    regret: list[RunRecord] = field(default_factory=list)
    auto: list[RunRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    _acc: dict[tuple[Setting, str], dict[int, list[float]]] = field(default_factory=dict, repr=False)

    @classmethod
    def build(cls, records: Iterable[RunRecord]) -> RecordIndex:
        recs, superseded = drop_superseded(dedupe(records))
        recs, unchosen = drop_unchosen(recs)
        idx = cls(recs, notes=[*superseded, *unchosen])
        no_test = 0
        acc: dict[tuple[Setting, str], dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
        for r in recs:
            if r.phase == "select":
                idx.select.append(r)
            elif r.phase == "cv":
                idx.cv.append(r)
            elif r.phase == "regret":
                idx.regret.append(r)
            elif r.phase == "auto":
                idx.auto.append(r)
            elif r.phase == "final":
                if r.test_acc is None:
                    no_test += 1
                    continue
                idx.final.append(r)
                acc[(Setting.of(r), r.method)][r.seed].append(float(r.test_acc))
            else:
                idx.notes.append(f"record {r.key} has unknown phase {r.phase!r}; ignored")
        if no_test:
            idx.notes.append(f"{no_test} final record(s) without test_acc ignored in the test tables")
        idx._acc = {k: dict(v) for k, v in acc.items()}
        return idx

    # --- lookups -------------------------------------------------------------------------------
    def acc_by_seed(self, setting: Setting, method: str) -> dict[int, float]:
        """Test accuracy per seed (several final records of one seed are averaged)."""
        per_seed = self._acc.get((setting, method), {})
        return {seed: math.fsum(v) / len(v) for seed, v in sorted(per_seed.items())}

    def acc(self, setting: Setting, method: str) -> Stat | None:
        """Mean ± SE test accuracy over seeds, or None without final records."""
        by_seed = self.acc_by_seed(setting, method)
        return mean_se(by_seed.values()) if by_seed else None

    def pairs(self) -> list[tuple[Setting, str]]:
        """Every (setting, method) with final test results, in display order."""
        return sorted(self._acc, key=lambda k: (k[0].group, len(k[0].teachers), k[0].teachers,
                                                method_sort_key(k[1])))

    def student_groups(self) -> list[Group]:
        """Groups of real students (not the probe), sorted."""
        return sorted({s.group for s, m in self._acc if m != PROBE and s.group.student != PROBE})

    def stl_acc_by_seed(self, group: Group) -> dict[int, float]:
        return self.acc_by_seed(Setting(group, ()), STL)

    def probe_setting(self, group: Group, teachers: tuple[str, ...]) -> Setting | None:
        """The probe matching a student group and teacher set (same views if present, else views 1)."""
        candidates = [
            s for s, m in self._acc
            if m == PROBE and s.teachers == teachers and s.group.suite == group.suite
            and s.group.dataset == group.dataset and s.group.train_size == group.train_size
        ]
        for views in (group.views, 1):
            for s in sorted(candidates):
                if s.group.views == views:
                    return s
        return None

    def probe_acc_by_seed(self, group: Group, teachers: tuple[str, ...]) -> dict[int, float]:
        ps = self.probe_setting(group, teachers)
        return self.acc_by_seed(ps, PROBE) if ps is not None else {}

    def probe_acc(self, group: Group, teachers: tuple[str, ...]) -> Stat | None:
        by_seed = self.probe_acc_by_seed(group, teachers)
        return mean_se(by_seed.values()) if by_seed else None

    def probe_teacher_sets(self, group: Group) -> list[tuple[str, ...]]:
        """Teacher sets with a probe for this group's suite, dataset and train size."""
        sets = {s.teachers for s, m in self._acc
                if m == PROBE and s.group.suite == group.suite and s.group.dataset == group.dataset
                and s.group.train_size == group.train_size}
        return sorted(sets, key=lambda t: (len(t), t))

    def wall_s(self) -> float:
        return math.fsum(r.wall_s for r in self.records)


def normalized_errors(acc_by_seed: dict[int, float], stl_by_seed: dict[int, float]) -> Stat | None:
    """Per-seed test error ÷ STL test error, then mean ± SE over seeds.

    A seed is paired with STL's run of the same seed when STL has it, otherwise divided by STL's
    mean error. None when either side is empty or STL's error is 0 (the ratio is undefined).
    """
    if not acc_by_seed or not stl_by_seed:
        return None
    stl_err = {seed: 1.0 - a for seed, a in stl_by_seed.items()}
    stl_mean_err = math.fsum(stl_err.values()) / len(stl_err)
    ratios = []
    for seed, a in acc_by_seed.items():
        denom = stl_err.get(seed, stl_mean_err)
        if denom <= 0.0:
            return None
        ratios.append((1.0 - a) / denom)
    return mean_se(ratios)


def normalized_error(index: RecordIndex, setting: Setting, method: str) -> Stat | None:
    """Normalized test error of `method` in `setting` (None without STL for that group)."""
    if method == PROBE:
        raise ValueError("use normalized_errors with probe_acc_by_seed for the probe")
    return normalized_errors(index.acc_by_seed(setting, method), index.stl_acc_by_seed(setting.group))


@dataclass
class HeadlineRow:
    """One row of the headline table: a method with a teacher set, its normalized error per group."""

    method: str
    teachers: tuple[str, ...]
    cells: dict[Group, Stat]
    average: Stat


@dataclass
class Headline:
    """Normalized test error per (method, teacher set) and group, and the probe − STL gaps.

    Attributes:
        groups: columns (student groups that have STL results).
        rows: one per (method, teacher set), in display order.
        gaps: probe − STL test accuracy (fraction, not points) per (teacher set, group).
        notes: one line per group or cell that could not be normalized.
    """

    groups: list[Group]
    rows: list[HeadlineRow]
    gaps: dict[tuple[tuple[str, ...], Group], float]
    notes: list[str]


def headline(index: RecordIndex) -> Headline:
    """Normalized error of every (method, teacher set) in every student group with STL results."""
    notes: list[str] = []
    groups = []
    for g in index.student_groups():
        stl = index.stl_acc_by_seed(g)
        if not stl:
            notes.append(f"no STL (method 'none') final records for {g.label()}: its normalized error "
                         "is not computed (run STL for that setting)")
        elif all(a >= 1.0 for a in stl.values()):
            notes.append(f"STL has zero test error for {g.label()}: normalized error is undefined there")
        else:
            groups.append(g)
    cells: dict[tuple[str, tuple[str, ...]], dict[Group, Stat]] = defaultdict(dict)
    gset = set(groups)
    for setting, method in index.pairs():
        if method == PROBE or setting.group not in gset:
            continue
        st = normalized_error(index, setting, method)
        if st is None:
            notes.append(f"{method} [{setting.teachers_label()}] in {setting.group.label()}: normalized error "
                         "undefined (an STL seed has zero error)")
            continue
        cells[(method, setting.teachers)][setting.group] = st
    gaps: dict[tuple[tuple[str, ...], Group], float] = {}
    for g in groups:
        stl_by_seed = index.stl_acc_by_seed(g)
        for ts in index.probe_teacher_sets(g):
            probe_by_seed = index.probe_acc_by_seed(g, ts)
            st = normalized_errors(probe_by_seed, stl_by_seed)
            if st is not None:
                cells[(PROBE, ts)][g] = st
            gaps[(ts, g)] = (math.fsum(probe_by_seed.values()) / len(probe_by_seed)
                             - math.fsum(stl_by_seed.values()) / len(stl_by_seed))
    rows = [
        HeadlineRow(m, ts, dict(sorted(c.items())), average_of_stats([c[g] for g in groups if g in c]))
        for (m, ts), c in sorted(cells.items(), key=lambda kv: (method_sort_key(kv[0][0]), len(kv[0][1]), kv[0][1]))
        if c
    ]
    return Headline(groups, rows, gaps, notes)
