"""`aft compare`: run a comparison suite (methods x teachers x students x sizes x seeds) and report it."""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
import time
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `compare` sub-command."""
    p = subparsers.add_parser(
        "compare",
        help="run a comparison suite with beta selected by cross-validation, and write records + report",
        description="Run every method of a suite on the same data: beta (and each baseline's weight) and the "
        "stopping step are chosen by stratified k-fold cross-validation over the training labels (suite keys "
        "`selection: cv|holdout`, `folds`), with the same grid for every method; the chosen configuration is "
        "retrained on all training labels with every seed and evaluated once on test. Teacher features are "
        "extracted once and cached; runs already in the records file are skipped, so an interrupted "
        "comparison continues. One compare at a time may write a records file.",
    )
    from aft.experiments.compare import builtin_suites

    p.add_argument("suite", help=f"a built-in suite ({', '.join(builtin_suites())}) or a suite YAML file")
    p.add_argument("--dataset", default=None, metavar="NAME",
                   help="run the suite on this dataset instead of its own (e.g. csv with --data-option path=...)")
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset loader option, e.g. path=data/{split}.csv, classes=neg,pos, name=news "
                   "(repeatable; overrides the suite's dataset_options)")
    p.add_argument("--quick", action="store_true", help="a reduced grid (one student/teacher set/size, up to 3 seeds, 2 betas, 3 folds; the suite's training budget)")
    p.add_argument("--records", metavar="FILE", default=None,
                   help="JSON-lines records file (default: results/<suite>/records.jsonl)")
    p.add_argument("--store", metavar="DIR", default=None,
                   help="feature-store root (default: <asset cache>/features)")
    p.add_argument("--report", metavar="DIR", default=None,
                   help="write the HTML report here when done (default: next to the records, report/)")
    p.add_argument("--markdown", metavar="FILE", default=None, help="also write a RESULTS.md page there")
    p.add_argument("--device", default="cpu", help="torch device for teachers and students (default: cpu)")
    p.add_argument("--cache-dir", default=None, help="asset cache directory (default: $AFT_CACHE_DIR or ~/.cache/aft)")
    p.add_argument("--jobs", default="auto", metavar="N|auto",
                   help="worker processes for the grid's runs, each with cpus/N threads (default auto: one per "
                   "CPU core, one per GPU on cuda; measured 1.4-2.5x the runs/hour of --jobs 1 on 2 cores, "
                   "docs/performance-compare-jobs.md); 1 runs in this process")
    p.add_argument("--keep", choices=("best", "all"), default=None,
                   help="keep trained students under <records folder>/students/: best = the final runs (each "
                   "method's selected configuration, every seed), all = every trained run; the report links "
                   "them and `aft predict`/`aft export --model` take the folder")
    p.add_argument("--analysis", action="append", default=[], choices=ANALYSES, metavar="|".join(ANALYSES),
                   help="analysis-only runs beside the comparison (repeatable; never used to choose): regret = every "
                   "beta on test and the holdout selector (the selection-regret table; suite key regret_analysis), "
                   "beta-auto = AFT with --beta auto, every seed (the beta-auto table; suite key beta_auto)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=handler)
    return p


def with_data(suite: Any, dataset: str | None, items: list[str]) -> Any:
    """The suite with --dataset / --data-option applied (same vocabulary as train, extract, predict)."""

    from aft.data.options import parse_data_options

    options = parse_data_options(items)
    if dataset is None and not options:
        return suite
    merged = {**({} if dataset is not None and dataset != suite.dataset else suite.dataset_options), **options}
    return dataclasses.replace(suite, dataset=dataset or suite.dataset, dataset_options=merged)


ANALYSES = ("regret", "beta-auto")


def with_analyses(suite: Any, analyses: list[str]) -> Any:
    """`suite` with the `--analysis` runs switched on (they never change the records' keys or choices)."""
    if "regret" in analyses:
        suite = dataclasses.replace(suite, regret_analysis=True)
    if "beta-auto" in analyses:
        if "aft" not in suite.methods:
            from aft.errors import ConfigError

            raise ConfigError(f"--analysis beta-auto runs the suite's method aft; suite {suite.name!r} has "
                              f"{suite.methods}: add aft to its methods or drop the flag")
        suite = dataclasses.replace(suite, beta_auto=list(dict.fromkeys([*suite.beta_auto, "aft"])))
    return suite


def handler(args: argparse.Namespace) -> int:
    from aft.assets import cache_dir
    from aft.experiments.compare import compare, load_suite
    from aft.experiments.parallel import resolve_jobs
    from aft.experiments.summary import summary_table
    from aft.report import build_report

    jobs = resolve_jobs(args.jobs, args.device)
    suite = load_suite(args.suite)
    suite = with_data(suite, args.dataset, args.data_option)
    suite = with_analyses(suite, args.analysis)
    if args.quick:
        suite = suite.quick()
    records = Path(args.records) if args.records else Path("results") / suite.name / "records.jsonl"
    store = Path(args.store) if args.store else cache_dir(args.cache_dir) / "features"
    t0 = time.perf_counter()
    result = compare(suite, records, store, device=args.device, cache_dir=args.cache_dir,
                     progress=not args.no_progress, jobs=jobs, keep=args.keep)
    print(summary_table(result.records))
    for warning in result.progress.warnings:
        print(f"warning: {warning}")
    print(f"\n{result.progress.ran} run(s) done, {result.progress.skipped} already recorded; "
          f"{time.perf_counter() - t0:.0f} s with {jobs} job(s); records: {records}")
    if args.keep:
        kept = [r for r in result.records if (r.extra or {}).get("student_dir")]
        wanted = [r for r in result.records if r.method != "probe" and (args.keep == "all" or r.phase == "final")]
        print(f"kept {len(kept)} trained student(s) under {records.parent / 'students'}")
        if len(kept) < len(wanted):
            print(f"note: {len(wanted) - len(kept)} run(s) were recorded before without --keep and were not "
                  "retrained; use another --records file to keep them")
    report_dir = Path(args.report) if args.report else records.parent / "report"
    command = "aft compare " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if len(sys.argv) > 2 else None
    paths = build_report(result.records, report_dir, markdown_path=args.markdown, command=command,
                         record_files=[records])
    print(f"report: {paths.index_html}")
    return 0
