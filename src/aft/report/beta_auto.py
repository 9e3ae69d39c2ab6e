"""The report's `--beta auto` table: the grid-free rule against the cross-validated choice.

From the analysis-only ``auto`` records (suite key ``beta_auto``: the method trained with
``beta_rule: auto`` on all labels, every seed, the suite's budget) and the method's ``final``
records (beta and stopping step chosen by CV): per setting the measured beta, both test accuracies,
their paired difference, whether the rule is within one standard error of CV's accuracy, and the
compute of the rule relative to CV's (its fold runs + finals). The issue's bar for making the rule
the default: within one SE on every setting at a third of CV's compute or less.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from aft.report.aggregate import RecordIndex, Setting, mean_se, method_sort_key
from aft.report.tables import DASH, Table, _group_cells, fmt_acc, fmt_pts

Key = tuple[Setting, str]


def beta_auto_table(index: RecordIndex) -> Table:
    """`--beta auto` vs CV-selected beta, per setting and method (empty without ``auto`` records)."""
    t = Table(
        "beta-auto",
        "β auto (no grid) vs β chosen by cross-validation",
        "Analysis only (`aft compare --analysis beta-auto`, suite key beta_auto): the method trained with --beta "
        "auto (β = 3 × the median ratio of the task's and the regularizer's gradient norms when the warm-up "
        "starts) on all labels with the suite's budget, "
        "beside its CV-chosen finals, same seeds. Δ = auto − CV (points, paired over seeds); compute = wall "
        "time of the auto runs / wall time of CV's fold runs and finals.",
        ["Suite", "Dataset", "Student", "Train size", "Method", "Teacher set", "β auto (median)", "Auto test %",
         "CV β", "CV test %", "Δ", "Within 1 SE", "Compute"],
    )
    auto: dict[Key, dict[int, float]] = defaultdict(dict)
    betas: dict[Key, list[float]] = defaultdict(list)
    wall: dict[Key, dict[str, float]] = defaultdict(lambda: defaultdict(float))
    for r in index.auto:
        key = (Setting.of(r), r.method)
        if r.test_acc is not None and math.isfinite(r.test_acc):
            auto[key][r.seed] = float(r.test_acc)
        if r.extra.get("beta_auto") is not None:
            betas[key].append(float(r.extra["beta_auto"]))
        wall[key]["auto"] += float(r.wall_s or 0.0)
    cv_beta: dict[Key, float] = {}
    for r in index.final:
        key = (Setting.of(r), r.method)
        if key in auto:
            wall[key]["cv"] += float(r.wall_s or 0.0)
            cv_beta[key] = r.beta
    for r in index.cv:
        key = (Setting.of(r), r.method)
        if key in auto:
            wall[key]["cv"] += float(r.wall_s or 0.0)
    within = 0
    for key in sorted(auto, key=lambda k: (k[0].group, len(k[0].teachers), k[0].teachers, method_sort_key(k[1]))):
        s, method = key
        cv = index.acc_by_seed(s, method)
        seeds = sorted(set(cv) & set(auto[key]))
        a = mean_se(auto[key].values())
        c = mean_se(cv.values()) if cv else None
        diff = mean_se([auto[key][sd] - cv[sd] for sd in seeds]) if seeds else None
        ok = c is not None and a.mean >= c.mean - (c.se or 0.0)
        within += ok
        cost = wall[key]["auto"] / wall[key]["cv"] if wall[key]["cv"] > 0 else None
        t.rows.append([s.group.suite, *_group_cells(s.group), method, s.teachers_label(),
                       f"{statistics.median(betas[key]):.3g}" if betas[key] else DASH, fmt_acc(a),
                       f"{cv_beta[key]:g}" if key in cv_beta else DASH, fmt_acc(c),
                       DASH if diff is None else fmt_pts(diff.mean) + (f" ± {diff.se * 100:.2f}" if diff.se else ""),
                       "yes" if ok else "no", DASH if cost is None else f"{cost:.2f}"])
    t.n_records = len(index.auto)
    if t.rows:
        t.notes = [f"Within one SE of CV's accuracy in {within} of {len(t.rows)} settings (auto mean >= CV mean − "
                   "CV's SE)."]
    else:
        t.empty_note = "No auto-phase records: run a suite with `beta_auto: [aft]` to fill this table."
    return t


__all__ = ["beta_auto_table"]
