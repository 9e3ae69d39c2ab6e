"""A plain-text comparison table of final runs for the terminal (`aft compare`, `aft demo`)."""

from __future__ import annotations

import math
from collections import defaultdict

from aft.experiments.records import RunRecord


def _mean_se(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, float("nan")
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def summary_table(records: list[RunRecord]) -> str:
    """Test accuracy (mean ± SE over seeds) and error normalized by STL, per setting and method."""
    finals = [r for r in records if r.phase == "final" and r.test_acc is not None]
    if not finals:
        return "(no final runs yet)"
    groups: dict[tuple, dict[tuple[str, str], list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for r in finals:
        groups[(r.dataset, r.train_size, r.views)][(r.method, "+".join(r.teachers))].append(r)
    lines = []
    header = f"{'method':<14} {'teachers':<36} {'beta':>6} {'student':<14} {'test acc %':>14} {'err/STL':>8} {'seeds':>5}"
    for (dataset, n, views), methods in sorted(groups.items()):
        lines.append(f"\n{dataset}, {n} labels" + (f", {views} views" if views > 1 else ""))
        lines.append(header)
        lines.append("-" * len(header))
        stl_by_student: dict[str, float] = {}
        for (method, _), recs in methods.items():
            if method == "none":
                stl_by_student[recs[0].student] = 1 - _mean_se([r.test_acc for r in recs])[0]  # type: ignore[misc]
        order = sorted(methods, key=lambda k: (k[0] != "none", k[0] != "probe", k[0], k[1]))
        for method, teachers in order:
            recs = methods[(method, teachers)]
            accs = [float(r.test_acc) for r in recs]  # type: ignore[arg-type]
            mean, se = _mean_se(accs)
            stl_err = stl_by_student.get(recs[0].student)
            norm = f"{(1 - mean) / stl_err:.3f}" if stl_err and method != "probe" else "-"
            se_txt = f"±{100 * se:.2f}" if not math.isnan(se) else "±—"
            label = "STL" if method == "none" else method
            lines.append(
                f"{label:<14} {teachers or '-':<36} {recs[0].beta:>6g} {recs[0].student:<14} "
                f"{100 * mean:>7.2f} {se_txt:>6} {norm:>8} {len(recs):>5}"
            )
    return "\n".join(lines).lstrip("\n")
