"""`aft report`: run records (JSON lines) -> index.html + PNG plots (+ docs/RESULTS.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from aft.errors import DataError


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `report` sub-command."""
    p = subparsers.add_parser(
        "report",
        help="turn run records into tables, plots, an HTML page and RESULTS.md",
        description="Build the results report (normalized error, accuracy, teacher ladder, multi-teacher, "
        "rho, cost tables; PNG plots; index.html) from one or more JSON-lines records files.",
    )
    p.add_argument("--records", nargs="+", required=True, metavar="FILE", help="JSON-lines run records file(s)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for index.html and the PNG plots")
    p.add_argument("--markdown", metavar="FILE", default=None, help="also write this markdown page (docs/RESULTS.md)")
    p.add_argument("--command", dest="regen_command", metavar="CMD", default=None,
                   help="the exact command that regenerates these records (printed before every table)")
    p.add_argument("--findings", metavar="FILE", default=None,
                   help="a hand-written markdown file of findings placed after the summary of the markdown page")
    p.set_defaults(func=handler)
    return p


def handler(args: argparse.Namespace) -> int:
    from aft.experiments.records import read_records
    from aft.report import build_report

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {args.out!r} is a file, not a folder; choose a folder for the report")
    records = []
    for f in args.records:
        path = Path(f)
        if not path.is_file():
            raise DataError(f"records file {f} does not exist; pass the JSON-lines file written by `aft compare`")
        recs = read_records(path)
        if not recs:
            raise DataError(f"records file {f} holds no run records; run `aft compare` first")
        records.extend(recs)
    paths = build_report(records, args.out, markdown_path=args.markdown, command=args.regen_command,
                         record_files=args.records, findings=args.findings)
    print(f"wrote {paths.index_html} and {len(paths.plots)} plot(s)"
          + (f", {paths.markdown}" if paths.markdown else ""))
    for note in paths.notes:
        print(f"note: {note}")
    return 0
