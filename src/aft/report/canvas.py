"""What every report figure shares: the `Plot` (file name, caption, PNG), PNG encoding, file-name slugs
and the fixed colour of each method."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Plot:
    """One PNG of the report."""

    name: str
    caption: str
    png: bytes


def png(fig: Any, tight: bool = True) -> bytes:
    """The figure as PNG bytes (Agg canvas, no pyplot state). `tight` crops to the drawn artists
    (keeps legends outside the axes) at the cost of a second draw; fixed-margin grids pass False."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight" if tight else None, dpi=110)
    return buf.getvalue()


def slug(*parts: str) -> str:
    """A file-name-safe slug of the parts (``fashion-mnist`` -> ``fashion-mnist``)."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", "_".join(parts)).strip("_") or "x"


#: fixed colours so a method looks the same in every figure
COLORS = {"none": "#333333", "probe": "#888888", "aft": "#d62728", "kd": "#2ca02c", "rkd": "#1f77b4",
          "ft": "#ff7f0e", "btuning": "#9467bd", "kkd": "#8c564b"}
SPARE_COLORS = ("#e377c2", "#17becf", "#bcbd22", "#7f7f7f", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896")


def color(method: str) -> str:
    """The method's colour (unknown methods: a spare colour chosen by name, stable across runs)."""
    if method in COLORS:
        return COLORS[method]
    return SPARE_COLORS[sum(method.encode()) % len(SPARE_COLORS)]


def legend_outside(fig: Any, axes: Sequence[Any]) -> None:
    """One legend for the figure, outside the panels (right), from the labelled lines of all axes."""
    handles: dict[str, Any] = {}
    for ax in axes:
        for h, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, h)
    if handles:
        # anchored just outside the panels' right edge; the tight bounding box of the PNG keeps it
        right = max(ax.get_position().x1 for ax in axes)
        top = max(ax.get_position().y1 for ax in axes)
        fig.legend(list(handles.values()), list(handles), loc="upper left", bbox_to_anchor=(right + 0.005, top),
                   fontsize=8, frameon=False)


def suptitle(fig: Any, text: str) -> None:
    """The figure title 0.15 in below the top edge: above the panels' (two-line) titles, never on them."""
    fig.suptitle(text, fontsize=10, y=1 - 0.15 / fig.get_figheight(), va="top")
