"""Figures of the selected configurations' runs: learning curves (mean ± SE band over seeds), sorted-ρ
curves per teacher and method, and per-class test accuracy with the confusion matrix.

The data functions (`curve_bands`, `rho_bands`, `class_results`) are pure and tested on their own;
the plot functions draw them and leave a note for every figure the records cannot feed.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aft.experiments.records import RunRecord
from aft.report.aggregate import STL, Group, RecordIndex, Setting, mean_se, method_sort_key, teachers_label
from aft.report.canvas import Plot, legend_outside, png, slug, suptitle
from aft.report.canvas import color as _color

MAX_ROWS = 12

#: learning-curve metrics: curve key, panel title, scale
CURVE_METRICS: tuple[tuple[str, str, float], ...] = (
    ("loss", "train loss (task + β·R)", 1.0),
    ("task_loss", "task loss (cross-entropy)", 1.0),
    ("reg_loss", "regularizer term R", 1.0),
    ("val_acc", "validation accuracy (%)", 100.0),
)


@dataclass(frozen=True)
class Band:
    """Mean ± SE over runs at each step (`se` is 0 where one run has the point); `n` runs per step."""

    x: tuple[float, ...]
    mean: tuple[float, ...]
    se: tuple[float, ...]
    n: tuple[int, ...]


def band(series: Iterable[Sequence[tuple[float, float]]]) -> Band | None:
    """Mean ± SE over several runs' ``(x, y)`` series, per x (non-finite values ignored)."""
    by_x: dict[float, list[float]] = defaultdict(list)
    for s in series:
        for x, y in s:
            if y is not None and math.isfinite(y):
                by_x[float(x)].append(float(y))
    if not by_x:
        return None
    xs = sorted(by_x)
    stats = [mean_se(by_x[x]) for x in xs]
    return Band(tuple(xs), tuple(s.mean for s in stats), tuple(s.se or 0.0 for s in stats), tuple(s.n for s in stats))


def _curve_series(records: Sequence[RunRecord], key: str, scale: float) -> list[list[tuple[float, float]]]:
    out = []
    for r in records:
        pts = [(float(p["step"]), float(p[key]) * scale) for p in r.curve
               if p.get("step") is not None and isinstance(p.get(key), (int, float))]
        if pts:
            out.append(pts)
    return out


def curve_bands(index: RecordIndex) -> dict[tuple[Setting, str], dict[str, tuple[Band, str]]]:
    """Per (setting, method) of the final runs, per metric, its band over seeds and where it comes from.

    The losses come from the final runs (the selected β). Validation accuracy comes from the final
    runs when they have a validation split, else (cross-validation refits on all labels) from the
    chosen β's fold runs, over every fold and seed.
    """
    finals: dict[tuple[Setting, str], list[RunRecord]] = defaultdict(list)
    for r in index.final:
        finals[(Setting.of(r), r.method)].append(r)
    folds: dict[tuple[Setting, str, float], list[RunRecord]] = defaultdict(list)
    for r in index.cv:
        folds[(Setting.of(r), r.method, float(r.beta))].append(r)
    out: dict[tuple[Setting, str], dict[str, tuple[Band, str]]] = {}
    for key, recs in finals.items():
        got: dict[str, tuple[Band, str]] = {}
        for metric, _title, scale in CURVE_METRICS:
            b = band(_curve_series(recs, metric, scale))
            source = f"{len(recs)} seed(s)"
            if b is None and metric == "val_acc":
                betas = {float(r.beta) for r in recs}
                fold_recs = [f for beta in betas for f in folds.get((key[0], key[1], beta), [])]
                b = band(_curve_series(fold_recs, metric, scale))
                source = f"{len(fold_recs)} fold run(s) of the chosen β"
            if b is not None and (metric != "reg_loss" or any(abs(v) > 0 for v in b.mean)):
                got[metric] = (b, source)
        if got:
            out[key] = got
    return out


def _grid_figure(nrows: int, ncols: int, size: tuple[float, float], legend_w: float = 1.4,
                 sharex: bool = False) -> tuple[Any, list[list[Any]]]:
    """A fixed-margin grid sized in inches: room for two-line panel titles, axis labels, the suptitle
    and a legend column on the right, so nothing overlaps and the PNG needs no tight crop (constrained
    layout and the crop's second draw measured 2-3x slower on 24-panel figures)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    top, bottom, left, gap_h, gap_w = 0.8, 0.5, 0.55, 0.75 if sharex else 0.9, 0.55
    right = legend_w + 0.15
    w = size[0] * ncols + gap_w * (ncols - 1) + left + right
    h = size[1] * nrows + gap_h * (nrows - 1) + top + bottom
    fig = Figure(figsize=(w, h), dpi=90)
    fig.subplots_adjust(left=left / w, right=1 - right / w, bottom=bottom / h, top=1 - top / h,
                        wspace=gap_w / size[0], hspace=gap_h / size[1])
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex="col" if sharex else False)
    for ax in axes.flat:
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.yaxis.set_major_locator(MaxNLocator(4))
        ax.tick_params(labelsize=7)
    return fig, [list(row) for row in axes]


def _settings_by_dataset(keys: Iterable[tuple[Setting, str]]) -> dict[tuple[str, str], list[Setting]]:
    """Panels: the settings with teachers (STL joins the panels of its group), per (suite, dataset)."""
    keys = list(keys)
    settings = {s for s, _m in keys}
    with_teachers = {s.group for s in settings if s.teachers}
    panels = sorted((s for s in settings if s.teachers or s.group not in with_teachers),
                    key=lambda s: (s.group, len(s.teachers), s.teachers))
    out: dict[tuple[str, str], list[Setting]] = defaultdict(list)
    for s in panels:  # figures in the order of their first group (dataset, student, numeric size...)
        out[(s.group.suite, s.group.dataset)].append(s)
    return out


def learning_curve_plots(index: RecordIndex, notes: list[str]) -> list[Plot]:
    """Per dataset, one row per setting and one column per metric: every method's mean ± SE band."""
    bands = curve_bands(index)
    if not bands:
        notes.append("learning-curve plots skipped: no final record has a `curve`")
        return []
    plots = []
    for (suite, dataset), settings in _settings_by_dataset(bands).items():
        if len(settings) > MAX_ROWS:
            notes.append(f"learning curves for {dataset}: {len(settings) - MAX_ROWS} setting(s) beyond {MAX_ROWS} "
                         "rows not drawn")
            settings = settings[:MAX_ROWS]
        groups = {s.group for s in settings}
        # columns: the metrics some run of this figure recorded (records older than the loss fields: loss, val)
        metrics = [m for m in CURVE_METRICS
                   if any(m[0] in got for (t, _m), got in bands.items() if t.group in groups)]
        fig, rows = _grid_figure(len(settings), len(metrics), (3.3, 2.2), sharex=True)
        sources: set[str] = set()
        for axes, s in zip(rows, settings, strict=True):
            methods = sorted({m for t, m in bands if t == s or (m == STL and t == Setting(s.group, ()))},
                             key=method_sort_key)
            for ax, (metric, title, _scale) in zip(axes, metrics, strict=True):
                drawn = 0
                for m in methods:
                    got = bands.get((Setting(s.group, ()), m) if m == STL else (s, m))
                    if not got or metric not in got:
                        continue
                    b, source = got[metric]
                    if metric == "val_acc":
                        sources.add(source.split(" ", 1)[1])
                    lo = [mu - e for mu, e in zip(b.mean, b.se, strict=True)]
                    hi = [mu + e for mu, e in zip(b.mean, b.se, strict=True)]
                    ax.plot(b.x, b.mean, color=_color(m), linestyle="--" if m == STL else "-", linewidth=1.2,
                            label=m)
                    ax.fill_between(b.x, lo, hi, color=_color(m), alpha=0.18, linewidth=0)
                    drawn += 1
                if not drawn:
                    ax.text(0.5, 0.5, "not recorded", ha="center", va="center", transform=ax.transAxes,
                            color="#888", fontsize=8)
                    ax.tick_params(left=False, labelleft=False)
                elif metric == "reg_loss" and ax.get_ylim()[0] > 0 and ax.get_ylim()[1] / ax.get_ylim()[0] > 100:
                    ax.set_yscale("log")
                ax.set_title(f"{title}\n{s.group.student} {s.group.size_label()} [{s.teachers_label()}]",
                             fontsize=8)
                if s is settings[-1]:
                    ax.set_xlabel("step", fontsize=8)
        legend_outside(fig, [ax for row in rows for ax in row])
        suptitle(fig, f"{dataset}: learning curves of the selected configurations (mean ± SE over seeds)")
        val = " and ".join(sorted(sources)) or "the final runs"
        plots.append(Plot(f"curves_{slug(suite, dataset)}.png",
                          f"{dataset}: train loss, task loss, regularizer term R and validation accuracy vs step of "
                          f"each method at its selected β; line = mean over seeds, band = ± SE (validation: {val}; "
                          "under cross-validation the refit has no validation split, so the chosen β's fold runs "
                          "are shown). Dashed: STL.", png(fig, tight=False)))
    return plots


# ----------------------------------------------------------------------------- sorted rho

RHO_SORTED_KEY = "rho_sorted"


def rho_bands(index: RecordIndex) -> dict[tuple[str, str], dict[Setting, Band]]:
    """Per (method, teacher) the sorted ρ of the final runs, per setting: mean ± SE over seeds at each
    relative rank (0 = the largest weight, 1 = the smallest). A teacher inside a concatenation is its
    own key (``teacher (in a+b)``): its weights compete with the other teachers'."""
    series: dict[tuple[str, str], dict[Setting, list[list[tuple[float, float]]]]] = defaultdict(
        lambda: defaultdict(list))
    for r in index.final:
        prof = r.extra.get(RHO_SORTED_KEY)
        if not isinstance(prof, dict):
            continue
        for teacher, values in prof.items():
            vals = [float(v) for v in values if isinstance(v, (int, float))]
            if not vals:
                continue
            key = teacher if len(r.teachers) < 2 else f"{teacher} (in {teachers_label(r.teachers)})"
            n = len(vals)
            series[(r.method, key)][Setting.of(r)].append(
                [(i / (n - 1) if n > 1 else 0.0, v) for i, v in enumerate(vals)])
    out: dict[tuple[str, str], dict[Setting, Band]] = {}
    for key, per_setting in series.items():
        got = {s: b for s, ss in per_setting.items() if (b := band(ss)) is not None}
        if got:
            out[key] = got
    return out


def rho_sorted_plot(index: RecordIndex, notes: list[str]) -> list[Plot]:
    """One panel per (method, teacher): the learned weights sorted high → low, one line per setting."""
    bands = rho_bands(index)
    if not bands:
        notes.append(f"ρ plot skipped: no final record has `extra['{RHO_SORTED_KEY}']` (sorted ρ per teacher, "
                     "written by `aft compare` runs of AFT-family methods)")
        return []
    keys = sorted(bands, key=lambda k: (method_sort_key(k[0]), k[1]))[:24]
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig, rows = _grid_figure(nrows, ncols, (4.2, 3.0), legend_w=0.0)
    flat = [ax for row in rows for ax in row]
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    for ax, (method, teacher) in zip(flat, keys, strict=False):
        settings = sorted(bands[(method, teacher)])
        for i, s in enumerate(settings):
            b = bands[(method, teacher)][s]
            c = cmap(i / max(1, len(settings) - 1) * 0.85)
            label = f"{s.group.dataset} {s.group.student} {s.group.size_label()}"
            ax.plot(b.x, b.mean, color=c, linewidth=1.2, label=label)
            ax.fill_between(b.x, [m - e for m, e in zip(b.mean, b.se, strict=True)],
                            [m + e for m, e in zip(b.mean, b.se, strict=True)], color=c, alpha=0.2, linewidth=0)
        ax.set_title(f"{method}: {teacher}", fontsize=8)
        ax.set_xlabel("feature rank (0 = largest weight, 1 = smallest)", fontsize=7)
        ax.set_ylabel("ρ" if method == "aft" else "feature weight (method's own scale)", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6, loc="best")
    for ax in flat[len(keys):]:
        ax.set_axis_off()
    if len(bands) > len(keys):
        notes.append(f"sorted-ρ plot: {len(bands) - len(keys)} (method, teacher) panel(s) beyond 24 not drawn")
    suptitle(fig, "Learned feature weights per teacher, sorted (mean ± SE over seeds; each method on its own axis)")
    return [Plot("rho_sorted.png", "Each teacher's learned feature weights sorted from largest to smallest, per "
                 "method (AFT's ρ is in (0, 1); other methods' weights are on their own scale, never a shared axis) "
                 "and setting; line = mean over seeds, band = ± SE. A flat curve: the teacher's features are "
                 "weighted alike; a steep drop: a few features carry the transfer.", png(fig))]


# ----------------------------------------------------------------------------- per-class accuracy

@dataclass(frozen=True)
class ClassResult:
    """A (setting, method)'s test confusion matrix summed over seeds, with per-class accuracy."""

    class_names: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]
    seeds: int

    @property
    def per_class(self) -> tuple[float, ...]:
        """Recall of each class (correct ÷ test samples of that class; NaN for a class with none)."""
        return tuple(row[i] / sum(row) if sum(row) else float("nan") for i, row in enumerate(self.confusion))


def class_results(index: RecordIndex) -> dict[tuple[Setting, str], ClassResult]:
    """Per (setting, method) of the final runs with ``extra['confusion']``: the summed matrix."""
    acc: dict[tuple[Setting, str], list[RunRecord]] = defaultdict(list)
    for r in index.final:
        if isinstance(r.extra.get("confusion"), list):
            acc[(Setting.of(r), r.method)].append(r)
    out = {}
    for key, recs in acc.items():
        k = len(recs[0].extra["confusion"])
        recs = [r for r in recs if len(r.extra["confusion"]) == k]
        total = [[sum(int(r.extra["confusion"][i][j]) for r in recs) for j in range(k)] for i in range(k)]
        names = recs[0].extra.get("class_names") or [str(i) for i in range(k)]
        out[key] = ClassResult(tuple(str(n) for n in names), tuple(tuple(row) for row in total), len(recs))
    return out


def _main_teachers(keys: Iterable[tuple[Setting, str]], group: Group) -> tuple[str, ...]:
    count: dict[tuple[str, ...], int] = defaultdict(int)
    for s, _m in keys:
        if s.group == group and s.teachers:
            count[s.teachers] += 1
    return min(count, key=lambda ts: (-count[ts], len(ts), ts)) if count else ()


def per_class_plots(index: RecordIndex, notes: list[str]) -> list[Plot]:
    """Per student group: per-class test accuracy of each method (main teacher set + STL) and each
    method's row-normalized confusion matrix, summed over seeds."""
    results = class_results(index)
    if not results:
        notes.append("per-class plots skipped: no final record has `extra['confusion']` (written by `aft compare` "
                     "for final runs)")
        return []
    groups = sorted({s.group for s, _m in results})
    plots = []
    for g in groups[:MAX_ROWS * 2]:
        ts = _main_teachers(results, g)
        methods = sorted({m for s, m in results if s.group == g and s.teachers in ((), ts)}, key=method_sort_key)
        keys = [(Setting(g, () if m == STL else ts), m) for m in methods]
        keys = [k for k in keys if k in results]
        if not keys:
            continue
        names = results[keys[0]].class_names
        ncols = min(4, len(keys))
        nrows = 1 + math.ceil(len(keys) / ncols)
        from matplotlib.figure import Figure

        fig = Figure(figsize=(max(8.0, 3.2 * ncols) + 1.6, 3.2 + 3.0 * (nrows - 1)), dpi=90, layout="constrained")
        grid = fig.add_gridspec(nrows, ncols)
        bar_ax = fig.add_subplot(grid[0, :])
        width = 0.8 / len(keys)
        for i, key in enumerate(keys):
            pc = results[key].per_class
            xs = [c + (i - (len(keys) - 1) / 2) * width for c in range(len(names))]
            bar_ax.bar(xs, [100 * v for v in pc], width=width, color=_color(key[1]),
                       label=f"{key[1]} ({results[key].seeds} seed(s))")
        bar_ax.set_xticks(range(len(names)), names, rotation=30 if max(len(n) for n in names) > 6 else 0,
                          ha="right" if max(len(n) for n in names) > 6 else "center", fontsize=7)
        bar_ax.set_ylabel("test accuracy (%)", fontsize=8)
        bar_ax.set_title("per-class test accuracy", fontsize=9)
        bar_ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
        for i, key in enumerate(keys):
            ax = fig.add_subplot(grid[1 + i // ncols, i % ncols])
            cm = results[key].confusion
            norm = [[v / sum(row) if sum(row) else 0.0 for v in row] for row in cm]
            ax.imshow(norm, vmin=0.0, vmax=1.0, cmap="Blues")
            if len(names) <= 12:
                for r_, row in enumerate(norm):
                    for c_, v in enumerate(row):
                        ax.text(c_, r_, f"{100 * v:.0f}", ha="center", va="center", fontsize=5,
                                color="white" if v > 0.6 else "black")
            ticks = range(len(names))
            ax.set_xticks(ticks, names if len(names) <= 12 else [""] * len(names), rotation=90, fontsize=5)
            ax.set_yticks(ticks, names if len(names) <= 12 else [""] * len(names), fontsize=5)
            ax.set_xlabel("predicted", fontsize=7)
            ax.set_ylabel("true", fontsize=7)
            ax.set_title(f"{key[1]} [{key[0].teachers_label()}]", fontsize=8)
        fig.suptitle(f"{g.label()}: per-class accuracy and confusion (% of each true class, summed over seeds)",
                     fontsize=10)
        plots.append(Plot(f"classes_{slug(g.suite, g.dataset, g.student, str(g.train_size), f'v{g.views}')}.png",
                          f"{g.label()}: per-class test accuracy of each method at its selected β (teachers "
                          f"{teachers_label(ts)}; STL without) and its confusion matrix, rows = true class, "
                          "summed over seeds and normalized per row.", png(fig)))
    if len(groups) > MAX_ROWS * 2:
        notes.append(f"per-class plots: {len(groups) - MAX_ROWS * 2} group(s) not drawn")
    return plots

