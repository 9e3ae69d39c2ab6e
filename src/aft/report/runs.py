"""The report's run list: one row per final run with its flags and links to the run's configuration
(``runs.html#run-N``, written next to index.html) and, when `aft compare --keep` saved it, the
student folder (record field or ``extra['student_dir']``) and its ``config.yaml``."""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass
from html import escape
from pathlib import Path
from typing import Any

from aft.experiments.records import RunRecord, finite_or_null
from aft.report.aggregate import RecordIndex, Setting, method_sort_key

RUNS_PAGE = "runs.html"
#: bulky `extra` entries left out of the run page (they feed the figures)
BULKY_EXTRA = ("confusion", "rho_sorted", "fold_val_ids", "class_names")


@dataclass(frozen=True)
class RunLink:
    """One final run as the page lists it.

    Attributes:
        anchor: its id on the runs page (``run-3``).
        cells: dataset, student, train size, teachers, method, beta, seed, test accuracy (formatted).
        flag: ``"collapsed: ..."`` for a run that never left chance, else ``""``.
        student_href: link to the saved student folder (relative to the report folder), or None.
        config_href: link to the saved run's ``config.yaml``, or None.
        record: the run's configuration as shown on the runs page (bulky figure data left out).
    """

    anchor: str
    cells: tuple[str, ...]
    flag: str
    student_href: str | None
    config_href: str | None
    record: dict[str, Any]


HEADER = ("Dataset", "Student", "Train size", "Teachers", "Method", "β", "Seed", "Test acc %", "Flag", "Config",
          "Saved student")


def student_dir(r: RunRecord) -> str | None:
    """Where `aft compare --keep` saved the run's student (record field or ``extra['student_dir']``)."""
    v = getattr(r, "student_dir", None) or r.extra.get("student_dir")
    return str(v) if isinstance(v, (str, os.PathLike)) and str(v) else None


def _href(target: str, out_dir: Path) -> str:
    """`target` relative to the report folder (POSIX separators), as a link from index.html."""
    rel = os.path.relpath(Path(target).absolute(), out_dir.absolute())
    return Path(rel).as_posix()


def run_links(index: RecordIndex, out_dir: Path) -> list[RunLink]:
    """Every final run, in table order (setting, method, seed)."""
    recs = sorted(index.final, key=lambda r: (Setting.of(r).group, len(r.teachers), tuple(r.teachers),
                                              method_sort_key(r.method), r.seed))
    out = []
    for i, r in enumerate(recs, start=1):
        sd = student_dir(r)
        cfg = Path(sd) / "config.yaml" if sd else None
        shown = asdict(r)
        shown.pop("curve", None)
        shown["extra"] = {k: v for k, v in r.extra.items() if k not in BULKY_EXTRA}
        acc = "—" if r.test_acc is None or not math.isfinite(r.test_acc) else f"{100 * r.test_acc:.2f}"
        flag = f"collapsed: {r.extra.get('collapse_reason', 'never left chance')}" if r.extra.get("collapsed") else ""
        out.append(RunLink(
            f"run-{i}",
            (r.dataset, r.student, Setting.of(r).group.size_label(), "+".join(r.teachers) or "—", r.method,
             f"{r.beta:g}", str(r.seed), acc),
            flag,
            _href(sd, out_dir) if sd else None,
            _href(str(cfg), out_dir) if cfg is not None and cfg.is_file() else None,
            finite_or_null(shown),
        ))
    return out


def runs_table_html(runs: list[RunLink]) -> str:
    """The run list of index.html (collapsed runs flagged in red), in a horizontal scroll box."""
    if not runs:
        return '<p class="empty">No final runs.</p>\n'
    head = "".join(f"<th>{escape(h)}</th>" for h in HEADER)
    rows = []
    for run in runs:
        cells = "".join(f"<td>{escape(c)}</td>" for c in run.cells)
        flag = f'<td class="flag">⚠ {escape(run.flag)}</td>' if run.flag else "<td></td>"
        cfg = f'<a href="{escape(RUNS_PAGE)}#{run.anchor}">run</a>'
        if run.config_href:
            cfg += f' · <a href="{escape(run.config_href)}">config.yaml</a>'
        student = f'<a href="{escape(run.student_href)}">student</a>' if run.student_href else "—"
        rows.append(f'<tr id="{run.anchor}">{cells}{flag}<td>{cfg}</td><td>{student}</td></tr>')
    return (f'<div class="scroll"><table class="runs">\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
            + "\n".join(rows) + "\n</tbody>\n</table></div>\n")


def render_runs_page(runs: list[RunLink], css: str) -> str:
    """runs.html: each final run's configuration (the record's fields), one anchored block per run."""
    parts = ["<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>aft runs</title>\n"
             f"<style>{css}</style>\n</head>\n<body>\n<h1>aft runs: configurations</h1>\n"
             '<p><a href="index.html#runs">back to the report</a></p>\n']
    for run in runs:
        title = " / ".join(run.cells[:7])
        parts.append(f'<h2 id="{run.anchor}">{escape(title)}</h2>\n')
        if run.flag:
            parts.append(f'<p class="flag">⚠ {escape(run.flag)}</p>\n')
        parts.append("<pre>" + escape(json.dumps(run.record, indent=2, sort_keys=True, default=str), quote=False)
                     + "</pre>\n")
    parts.append("</body>\n</html>\n")
    return "".join(parts)
