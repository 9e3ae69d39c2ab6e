"""What both pages (RESULTS.md and index.html) say: the tables in order, the commands, the totals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from aft.report.aggregate import RecordIndex
from aft.report.plots import Plot
from aft.report.runs import RunLink
from aft.report.tables import Table


def fmt_wall(seconds: float) -> str:
    """``3723.4 s (1 h 02 min)``."""
    minutes = int(round(seconds / 60.0))
    return f"{seconds:.1f} s ({minutes // 60} h {minutes % 60:02d} min)"


@dataclass
class ReportContent:
    """Everything a page renders.

    Attributes:
        tables: the tables in page order.
        plots: the figures (PNG files next to index.html).
        commands: the commands that regenerate every table (records command, then `aft report`).
        n_records: records read (after removing duplicates); n_final / n_select by phase.
        wall_s: total wall time of all runs (sum of `wall_s`).
        notes: one line per table, plot or record that was skipped, and why.
        runs: every final run with its flags and links (index.html's run list).
    """

    tables: list[Table]
    plots: list[Plot]
    commands: list[str]
    n_records: int
    n_final: int
    n_select: int
    wall_s: float
    notes: list[str] = field(default_factory=list)
    runs: list[RunLink] = field(default_factory=list)

    @classmethod
    def of(cls, index: RecordIndex, tables: Sequence[Table], plots: Sequence[Plot], commands: Sequence[str],
           notes: Sequence[str], runs: Sequence[RunLink] = ()) -> ReportContent:
        return cls(list(tables), list(plots), list(commands), len(index.records), len(index.final),
                   len(index.select), index.wall_s(), list(notes), list(runs))

    def totals_line(self, table: Table | None = None) -> str:
        """``Records: 144 (this table uses 60); total wall time of all runs: ...``."""
        uses = f" (this table uses {table.n_records})" if table is not None else ""
        return (f"Records: {self.n_records}{uses}; total wall time of all runs: {fmt_wall(self.wall_s)}.")
