"""No figure of the report has a title or legend drawn over another title, legend or panel."""

from __future__ import annotations

from itertools import combinations
from typing import Any

import pytest
from _report_fixtures import make_records

from aft.report import build_report


def _boxes(fig: Any) -> tuple[list[tuple[str, Any]], list[tuple[str, Any]]]:
    """(texts: suptitle, panel titles, legends; panels: the axes' plot areas) in display coordinates."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    r = fig.canvas.get_renderer()
    texts = []
    if fig._suptitle is not None and fig._suptitle.get_text():
        texts.append(("suptitle", fig._suptitle.get_window_extent(r)))
    panels = []
    for i, ax in enumerate(fig.axes):
        if not ax.axison:
            continue
        panels.append((f"axes {i}", ax.get_window_extent(r)))
        if ax.get_title():
            texts.append((f"title of axes {i} {ax.get_title()!r}", ax.title.get_window_extent(r)))
        if ax.get_legend() is not None:
            texts.append((f"legend of axes {i}", ax.get_legend().get_window_extent(r)))
    texts += [(f"figure legend {i}", lg.get_window_extent(r)) for i, lg in enumerate(fig.legends)]
    return texts, panels


def overlaps(fig: Any) -> list[str]:
    """Pairs of titles/legends that intersect, and titles or figure legends drawn over a panel."""
    texts, panels = _boxes(fig)
    out = [f"{a} overlaps {b}" for (a, ba), (b, bb) in combinations(texts, 2)
           if not (a.startswith("legend of axes") and b.startswith("legend of axes")) and ba.overlaps(bb)]
    for name, box in texts:
        if name.startswith("legend of axes"):
            continue  # a panel's own legend sits inside it by design
        out += [f"{name} overlaps {p}" for p, pb in panels if box.overlaps(pb)]
    return out


def _long_names() -> list:
    """The fixture records with real-length dataset names and four training sizes: long titles and tall
    many-panel figures are where crowding shows (the old two-line suptitle hit the first row's titles)."""
    import dataclasses

    names = {"fmnist": "fashion-mnist", "spam": "spam-assassin"}
    base = [dataclasses.replace(r, dataset=names[r.dataset]) for r in make_records()]
    return base + [dataclasses.replace(r, train_size=r.train_size * 5) for r in base]


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    from aft.report import plots, run_plots

    seen: dict[str, Any] = {}
    mp = pytest.MonkeyPatch()

    def capture(fig: Any, tight: bool = True) -> bytes:
        title = fig._suptitle.get_text() if fig._suptitle else fig.axes[0].get_title()
        seen[f"fig{len(seen)}: {title}"] = fig
        return b"\x89PNG\r\n\x1a\n" + b"0" * 2000

    mp.setattr(plots, "_png", capture)
    mp.setattr(run_plots, "png", capture)
    try:
        build_report(_long_names(), tmp_path_factory.mktemp("figs") / "out")
    finally:
        mp.undo()
    return seen


def test_every_figure_kind_was_checked(figures: dict[str, Any]) -> None:
    names = " ".join(figures)
    for what in ("Normalized error", "validation accuracy vs β", "learning curves", "feature weights",
                 "per-class accuracy", "model size"):
        assert what in names, what


def test_no_title_or_legend_overlaps(figures: dict[str, Any]) -> None:
    bad = {name: found for name, fig in figures.items() if (found := overlaps(fig))}
    assert not bad, bad
