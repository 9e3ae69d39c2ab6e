"""The report's figures, rendered with matplotlib's Agg canvas (no display, no global pyplot state).

Each function returns a list of `Plot` (file name, caption, PNG bytes) and appends one line to
`notes` for every figure it had to skip because the records lack its data.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from aft.report.aggregate import (
    PROBE,
    STL,
    Group,
    Headline,
    RecordIndex,
    Setting,
    mean_se,
    method_sort_key,
    teachers_label,
)
from aft.report.canvas import Plot, legend_outside, slug, suptitle
from aft.report.canvas import color as _color
from aft.report.canvas import png as _png
from aft.report.tables import TEACHER_PARAMS_KEY

__all__ = ["Plot", "all_plots", "slug"]

MAX_PANELS = 24


def _figure(n_panels: int, ncols: int = 4, size: tuple[float, float] = (4.0, 3.0)) -> tuple[Any, list[Any]]:
    from matplotlib.figure import Figure

    ncols = max(1, min(ncols, n_panels))
    nrows = math.ceil(n_panels / ncols)
    # a fixed layout: constrained/tight layout would double the rendering time of many-panel figures
    w, h = size[0] * ncols, size[1] * nrows + 0.6
    fig = Figure(figsize=(w, h), dpi=90)
    fig.subplots_adjust(left=0.9 / w if ncols > 1 else 0.2, right=1 - 0.2 / w, bottom=0.7 / h, top=1 - 0.75 / h,
                        wspace=0.3, hspace=0.55)
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(n_panels)]
    return fig, axes


def normalized_error_plot(h: Headline, notes: list[str]) -> list[Plot]:
    """Bars of the average normalized error per (method, teacher set) with SE error bars."""
    if not h.rows:
        notes.append("normalized-error plot skipped: no normalized errors (needs STL and method results)")
        return []
    labels = [f"{r.method} [{teachers_label(r.teachers)}]" for r in h.rows]
    fig, (ax,) = _figure(1, size=(8.0, 0.4 * len(h.rows) + 1.2))
    fig.subplots_adjust(left=min(0.6, (0.085 * max(len(s) for s in labels) + 0.3) / 8.0), right=0.97)
    ys = list(range(len(h.rows)))[::-1]
    ax.barh(ys, [r.average.mean for r in h.rows], xerr=[r.average.se or 0.0 for r in h.rows],
            color=[_color(r.method) for r in h.rows], capsize=3)
    ax.axvline(1.0, color="black", linestyle="--", linewidth=1, label="STL")
    ax.set_yticks(ys, labels)
    ax.set_xlabel("test error ÷ STL test error (lower is better)")
    ax.set_title(f"Normalized error, average over {len(h.groups)} setting(s)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    return [Plot("normalized_error.png", "Average normalized test error per method (± SE); dashed: STL = 1.",
                 _png(fig))]


def _panel_settings(index: RecordIndex, settings: set[Setting]) -> dict[tuple[str, str], list[Setting]]:
    by_ds: dict[tuple[str, str], list[Setting]] = defaultdict(list)
    for s in sorted(settings, key=lambda s: (s.group, len(s.teachers), s.teachers)):
        by_ds[(s.group.suite, s.group.dataset)].append(s)
    return by_ds


def _stl_val(index: RecordIndex, group: Group) -> float | None:
    vals = [r.val_acc for r in index.final if r.method == STL and Group(
        r.suite, r.dataset, r.student, r.train_size, r.views) == group]
    return math.fsum(vals) / len(vals) if vals else None


def _beta_curves(index: RecordIndex) -> dict[Setting, dict[str, list[tuple[float, float, float, bool]]]]:
    """Per setting and method, (beta, mean val acc, error bar, at edge) points: cv records give the
    mean ± SE over folds at each beta's best step; settings without them use the select phase."""
    from aft.report.selection import choices

    out: dict[Setting, dict[str, list[tuple[float, float, float, bool]]]] = defaultdict(dict)
    for (s, method), c in choices(index, "cv").items():
        if method != STL:
            out[s][method] = [(sc.beta, sc.mean, 0.0 if math.isnan(sc.se) else sc.se, c.at_edge and sc.beta == c.beta)
                              for sc in c.scores if sc.beta > 0]
    data: dict[Setting, dict[str, dict[float, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in index.select:
        if r.beta > 0 and r.method not in out.get(Setting.of(r), {}):
            data[Setting.of(r)][r.method][r.beta].append(r.val_acc)
    for s, methods in data.items():
        for method, by_beta in methods.items():
            pts = [(b, mean_se(v).mean, mean_se(v).se or 0.0) for b, v in sorted(by_beta.items())]
            out[s][method] = [(b, m, e, False) for b, m, e in pts]
    return {s: m for s, m in out.items() if any(m.values())}


def beta_curve_plots(index: RecordIndex, notes: list[str]) -> list[Plot]:
    """Validation accuracy vs beta (log x) per method, one panel per setting, one PNG per dataset:
    under cv the mean over folds with ± SE error bars; ★ the selected beta (red ring: at the grid's edge)."""
    curves = _beta_curves(index)
    if not curves:
        notes.append("beta-curve plots skipped: no select- or cv-phase records with beta > 0")
        return []
    chosen: dict[tuple[Setting, str], set[float]] = defaultdict(set)
    for r in index.final:
        chosen[(Setting.of(r), r.method)].add(r.beta)
    any_cv = bool(index.cv)
    from aft.report.selection import choices

    stl_choice = choices(index, "cv")
    plots = []
    for (suite, dataset), settings in _panel_settings(index, set(curves)).items():
        if len(settings) > MAX_PANELS:
            notes.append(f"beta curves for {dataset}: {len(settings) - MAX_PANELS} setting(s) beyond "
                         f"{MAX_PANELS} panels not drawn")
            settings = settings[:MAX_PANELS]
        fig, axes = _figure(len(settings))
        for ax, s in zip(axes, settings, strict=True):
            for method in sorted(curves[s], key=method_sort_key):
                pts = curves[s][method]
                betas = [p[0] for p in pts]
                ax.errorbar(betas, [p[1] * 100 for p in pts], yerr=[p[2] * 100 for p in pts],
                            marker="o", markersize=3, capsize=2, label=method, color=_color(method))
                for b in chosen.get((s, method), set()) & set(betas):
                    i = betas.index(b)
                    ax.plot([b], [pts[i][1] * 100], marker="*", markersize=11, color=_color(method),
                            markeredgecolor="red" if pts[i][3] else "black")
            stl_cv = stl_choice.get((Setting(s.group, ()), STL))
            stl = stl_cv.mean if stl_cv is not None else _stl_val(index, s.group)
            if stl is not None and math.isfinite(stl):
                ax.axhline(stl * 100, color="black", linestyle="--", linewidth=1,
                           label="STL (fold val)" if stl_cv is not None else "STL (final val)")
            ax.set_xscale("log")
            ax.set_xlabel("β")
            ax.set_ylabel("fold validation accuracy (%)" if any_cv else "validation accuracy (%)")
            ax.set_title(f"{s.group.student} {s.group.size_label()} [{s.teachers_label()}]", fontsize=9)
        legend_outside(fig, axes)  # one legend beside the panels: never on a curve or a title
        suptitle(fig, f"{dataset}: validation accuracy vs β (★ = selected β)")
        what = ("mean over cross-validation folds at each β's best step, error bars ± SE over folds"
                if any_cv else "select phase")
        plots.append(Plot(f"beta_{slug(suite, dataset)}.png",
                          f"{dataset}: validation accuracy vs β per method ({what}; ★ selected β, red edge: the "
                          "choice is at the edge of the grid; dashed: STL's validation accuracy).", _png(fig)))
    return plots


def _primary_teachers(index: RecordIndex, group: Group) -> tuple[str, ...]:
    count: dict[tuple[str, ...], int] = defaultdict(int)
    for s, _m in index.pairs():
        if s.group == group and s.teachers:
            count[s.teachers] += 1
    if not count:
        return ()
    return min(count, key=lambda ts: (-count[ts], len(ts), ts))


def acc_vs_params_plot(index: RecordIndex, notes: list[str]) -> list[Plot]:
    """Test accuracy vs parameter count (log x): students per method, teachers' probes as references."""
    panels = sorted({(g.suite, g.dataset, g.train_size, g.views) for g in index.student_groups()},
                    key=lambda p: (p[1], p[2], p[3], p[0]))  # training sizes as numbers
    panels = [p for p in panels if any(r.student_params for r in index.final if r.method != PROBE and (
        r.suite, r.dataset, r.train_size, r.views) == p)]
    if not panels:
        notes.append("accuracy-vs-params plot skipped: no final student record has student_params")
        return []
    panels = panels[:MAX_PANELS]
    fig, axes = _figure(len(panels), ncols=2, size=(5.5, 4.0))
    for ax, (suite, dataset, n, views) in zip(axes, panels, strict=True):
        seen: set[str] = set()
        student_marks: list[tuple[float, str]] = []
        groups = [g for g in index.student_groups() if (g.suite, g.dataset, g.train_size, g.views)
                  == (suite, dataset, n, views)]
        for g in groups:
            ts = _primary_teachers(index, g)
            params = [r.student_params for r in index.final if r.student == g.student and r.dataset == dataset
                      and r.student_params]
            if not params:
                continue
            x = max(set(params), key=params.count)
            methods = sorted({m for s, m in index.pairs() if s.group == g and m != PROBE and s.teachers in ((), ts)},
                             key=method_sort_key)
            for i, m in enumerate(methods):
                st = index.acc(Setting(g, () if m == STL else ts), m)
                if st is None:
                    continue
                xj = x * 10 ** (0.02 * (i - (len(methods) - 1) / 2))
                ax.errorbar([xj], [st.mean * 100], yerr=[(st.se or 0.0) * 100], marker="o", capsize=2,
                            color=_color(m), label=m if m not in seen else None)
                seen.add(m)
            student_marks.append((x, g.student + (f" [{teachers_label(ts)}]" if ts else "")))
        if groups:
            for ts in index.probe_teacher_sets(groups[0]):
                ps = index.probe_setting(groups[0], ts)
                recs = [r for r in index.final if r.method == PROBE and ps is not None and Setting.of(r) == ps]
                tps = [int(r.extra[TEACHER_PARAMS_KEY]) if isinstance(r.extra.get(TEACHER_PARAMS_KEY), (int, float))
                       else r.student_params for r in recs]
                st = index.probe_acc(groups[0], ts)
                if st is None or not any(tps):
                    continue
                x = max(set(tps), key=tps.count)
                ax.errorbar([x], [st.mean * 100], yerr=[(st.se or 0.0) * 100], marker="s", color="gray", capsize=2,
                            label="teacher probe" if "probe" not in seen else None)
                seen.add("probe")
                ax.annotate(teachers_label(ts), (x, st.mean * 100), fontsize=7, xytext=(-6, 4), ha="right",
                            textcoords="offset points")  # left of the point: stays inside the panel
        ax.set_xscale("log")
        ax.margins(x=0.12)
        for x, label in student_marks:
            ax.annotate(label, (x, ax.get_ylim()[0]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("parameters (log)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{dataset} n={n}" + (f", views={views}" if views != 1 else ""), fontsize=9)
    legend_outside(fig, axes)
    suptitle(fig, "Test accuracy vs model size (students: main teacher set; squares: teacher linear probes)")
    return [Plot("acc_vs_params.png", "Test accuracy vs parameter count: students (per method, with the setting's "
                 "main teacher set) and the teachers' linear probes as references.", _png(fig))]


def all_plots(index: RecordIndex, h: Headline, notes: list[str]) -> list[Plot]:
    """Every figure of the report (skipped ones leave a note)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        notes.append("plots skipped: matplotlib is not installed (pip install 'aft[report]')")
        return []
    from aft.report.run_plots import learning_curve_plots, per_class_plots, rho_sorted_plot

    builders: Sequence = (
        lambda: normalized_error_plot(h, notes),
        lambda: beta_curve_plots(index, notes),
        lambda: learning_curve_plots(index, notes),
        lambda: rho_sorted_plot(index, notes),
        lambda: per_class_plots(index, notes),
        lambda: acc_vs_params_plot(index, notes),
    )
    out: list[Plot] = []
    for build in builders:
        out.extend(build())
    return out
