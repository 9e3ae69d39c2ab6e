"""Report generator: committed run records -> tables (normalized error...), PNG plots, index.html, RESULTS.md.

    >>> from aft.experiments.records import read_records
    >>> from aft.report import build_report
    >>> paths = build_report(read_records("results/records.jsonl"), "results/report",
    ...                      markdown_path="docs/RESULTS.md", command="aft compare --suite fashion-mnist")

Semantics: ../../../shared/BENCHMARKS.md and `aft.report.aggregate`.
"""

from __future__ import annotations

import logging
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aft.atomic_io import atomic_write_bytes
from aft.errors import DataError
from aft.experiments.records import RunRecord
from aft.report.aggregate import RecordIndex, headline
from aft.report.html import CSS, render_html
from aft.report.plots import all_plots
from aft.report.results_page import render_results_md
from aft.report.runs import RUNS_PAGE, render_runs_page, run_links
from aft.report.sections import ReportContent
from aft.report.selection import collapse_notes, edge_notes, regret_table, selection_table
from aft.report.tables import (
    Table,
    accuracy_table,
    cost_table,
    headline_table,
    ladder_table,
    multi_teacher_table,
    rho_table,
)

log = logging.getLogger(__name__)

__all__ = ["ReportPaths", "build_report", "build_tables", "report_command"]

NO_COMMAND = "# (the command that wrote these records was not given: pass `aft report --command ...`)"


@dataclass
class ReportPaths:
    """Files written by `build_report`.

    Attributes:
        out_dir: the output folder.
        index_html: the HTML page (tables + figures).
        plots: the PNG files, in page order.
        markdown: RESULTS.md, when asked for.
        notes: one line per table or plot that was skipped and why.
        runs_html: runs.html, each final run's configuration (linked from index.html's run list).
    """

    out_dir: Path
    index_html: Path
    plots: list[Path] = field(default_factory=list)
    markdown: Path | None = None
    notes: list[str] = field(default_factory=list)
    runs_html: Path | None = None


def report_command(record_files: Sequence[str | Path], out_dir: str | Path, markdown_path: str | Path | None = None,
                   command: str | None = None, findings: str | Path | None = None) -> str:
    """The `aft report` command line that regenerates a report (paths as given)."""
    argv = ["aft", "report", "--records", *[str(p) for p in record_files], "--out", str(out_dir)]
    if markdown_path is not None:
        argv += ["--markdown", str(markdown_path)]
    if findings is not None:
        argv += ["--findings", str(findings)]
    if command:
        argv += ["--command", command]
    return shlex.join(argv)


def build_tables(index: RecordIndex, ladder_methods: Sequence[str] = ("aft", "kd")) -> list[Table]:
    """Every table of the report, in page order (the regret table only when regret runs exist)."""
    tables = [
        headline_table(headline(index), index),
        accuracy_table(index),
        ladder_table(index, ladder_methods),
        multi_teacher_table(index),
        selection_table(index),
        rho_table(index),
        cost_table(index),
    ]
    if index.regret:
        tables.insert(5, regret_table(index))
    if index.auto:
        from aft.report.beta_auto import beta_auto_table

        tables.insert(5, beta_auto_table(index))
    from aft.report.kept import kept_students_table

    kept = kept_students_table(index)  # only when `aft compare --keep` saved students
    return tables + ([kept] if kept is not None else [])


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


#: per record field, its check and what it must be (what the tables and plots compute with)
_RECORD_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "suite": (lambda v: isinstance(v, str), "a string"),
    "dataset": (lambda v: isinstance(v, str), "a string"),
    "student": (lambda v: isinstance(v, str), "a string"),
    "method": (lambda v: isinstance(v, str), "a string"),
    "phase": (lambda v: isinstance(v, str), "a string"),
    "config": (lambda v: isinstance(v, str), "a string"),
    "teachers": (lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v), "a list of names"),
    "beta": (_is_number, "a number"),
    "val_acc": (lambda v: v is None or _is_number(v), "a number"),
    "test_acc": (lambda v: v is None or _is_number(v), "a number or null"),
    "wall_s": (_is_number, "a number"),
    "train_size": (_is_int, "an integer"),
    "seed": (_is_int, "an integer"),
    "student_params": (_is_int, "an integer"),
    "views": (_is_int, "an integer"),
    "rho": (lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()), "a mapping of mappings"),
    "curve": (lambda v: isinstance(v, list) and all(isinstance(x, dict) for x in v), "a list of mappings"),
    "extra": (lambda v: isinstance(v, dict), "a mapping"),
}


def check_record_types(records: Sequence[RunRecord]) -> None:
    """Raise a one-line `DataError` naming the first record field of the wrong type (e.g. a hand-edited
    ``"test_acc": "0.9"``), instead of a TypeError deep inside a table or plot."""
    for i, r in enumerate(records, start=1):
        for name, (ok, what) in _RECORD_TYPES.items():
            value = getattr(r, name, None)
            if not ok(value):
                shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
                raise DataError(f"run record {i} ({getattr(r, 'method', '?')}, seed {getattr(r, 'seed', '?')!r}): "
                                f"field {name!r} is {shown}, expected {what}; fix or remove that record")


def build_report(
    records: list[RunRecord],
    out_dir: str | Path,
    markdown_path: str | Path | None = None,
    command: str | None = None,
    *,
    record_files: Sequence[str | Path] | None = None,
    ladder_methods: Sequence[str] = ("aft", "kd"),
    findings: str | Path | None = None,
) -> ReportPaths:
    """Turn run records into `out_dir/index.html` + PNG plots and, optionally, a RESULTS.md.

    Args:
        records: run records (duplicates of a run: the last one wins).
        out_dir: folder for index.html and the PNGs (created).
        markdown_path: where to write the markdown page (e.g. ``docs/RESULTS.md``); None = no markdown.
        command: the exact command that regenerates the records; printed before every table.
        record_files: the records files, to print the exact `aft report` command (else ``RECORDS.jsonl``).
        ladder_methods: methods shown in the teacher-ladder table.
        findings: a hand-written markdown file (what the numbers mean, why a method wins or
            loses) placed after the summary of RESULTS.md; the tables stay generated.

    Raises:
        DataError: `records` is empty.
    """
    if not records:
        raise DataError("no run records to report on; run `aft compare` first or pass the right --records file")
    check_record_types(records)
    out = Path(out_dir)
    md = Path(markdown_path) if markdown_path is not None else None
    index = RecordIndex.build(records)
    h = headline(index)
    tables = build_tables(index, ladder_methods)
    edges = edge_notes(index)
    for warning in edges:
        log.warning("report: %s", warning)
    notes = collapse_notes(index) + edges + list(index.notes)
    notes += [f"{t.title}: {t.empty_note}" for t in tables if not t.rows]
    notes = list(dict.fromkeys(notes))
    plots = all_plots(index, h, notes)
    findings_text = None
    if findings is not None:
        fp = Path(findings)
        if not fp.is_file():
            raise DataError(f"findings file {fp} does not exist; pass a markdown file or leave --findings out")
        findings_text = fp.read_text(encoding="utf-8")
    commands = [command or NO_COMMAND,
                report_command(record_files or ["RECORDS.jsonl"], out_dir, markdown_path, command, findings)]
    runs = run_links(index, out)
    content = ReportContent.of(index, tables, plots, commands, notes, runs)

    paths = ReportPaths(out_dir=out, index_html=out / "index.html", notes=notes)
    for p in plots:
        atomic_write_bytes(out / p.name, p.png)
        paths.plots.append(out / p.name)
    if runs:
        atomic_write_bytes(out / RUNS_PAGE, render_runs_page(runs, CSS).encode("utf-8"))
        paths.runs_html = out / RUNS_PAGE
    atomic_write_bytes(paths.index_html, render_html(content).encode("utf-8"))
    if md is not None:
        atomic_write_bytes(md, render_results_md(content, md, out, findings_text).encode("utf-8"))
        paths.markdown = md
    for n in notes:
        log.info("report: %s", n)
    return paths
