"""`aft demo`: the bundled offline end-to-end example (fetch, extract, train STL/KD/AFT, compare, report)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `demo` sub-command."""
    p = subparsers.add_parser(
        "demo",
        help="run the offline demo: Fashion-MNIST, 100 labels, EfficientNet-Lite0 teacher, STL vs KD vs AFT",
        description="Fetch the offline assets, extract EfficientNet-Lite0 features once (cached), train a "
        "20k-parameter CNN with STL, KD and AFT (beta chosen on validation, 3 seeds), print the comparison and "
        "write an HTML report. A second run reuses the cached assets, features and finished runs.",
    )
    p.add_argument("--out", default="runs/demo", metavar="DIR", help="output folder (default: runs/demo)")
    p.add_argument("--fresh", action="store_true", help="retrain every run (keeps the cached features)")
    p.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    p.add_argument("--jobs", default="auto", metavar="N|auto",
                   help="runs in parallel worker processes (default auto: one per CPU core / GPU), as aft compare")
    p.add_argument("--cache-dir", default=None, help="asset cache directory (default: $AFT_CACHE_DIR or ~/.cache/aft)")
    p.set_defaults(func=handler)
    return p


def handler(args: argparse.Namespace) -> int:
    from aft.assets import cache_dir, ensure
    from aft.experiments.compare import compare, load_suite
    from aft.experiments.parallel import resolve_jobs
    from aft.experiments.summary import summary_table
    from aft.report import build_report

    t0 = time.perf_counter()
    jobs = resolve_jobs(args.jobs, args.device)  # a bad value is refused before anything is removed
    out = Path(args.out)
    records = out / "records.jsonl"
    if args.fresh and records.exists():
        records.unlink()
    suite = load_suite("demo")
    print("aft demo: Fashion-MNIST, 100 labels (10 per class), EfficientNet-Lite0 teacher (4.65M params) -> "
          "cnn-small student (20k params)")
    print("[1/4] assets: fashion-mnist, efficientnet-lite0")
    for name in ("fashion-mnist", "efficientnet-lite0"):
        print(f"      {name}: {ensure(name, args.cache_dir)}")
    store = cache_dir(args.cache_dir) / "features"
    print(f"[2/4] teacher features -> {store} (extracted once, reused afterwards)")
    betas = ", ".join(f"{b:g}" for b in suite.beta_grid)
    how = (f"{suite.folds}-fold cross-validation on the training labels" if suite.selection == "cv"
           else "a validation split")
    print(f"[3/4] training STL, KD and AFT ({suite.train.get('steps')} steps, {jobs} job(s)): beta in {{{betas}}} "
          f"and the stopping step chosen by {how}, then {len(suite.seeds)} seeds on test")
    result = compare(suite, records, store, device=args.device, cache_dir=args.cache_dir, progress=True,
                     jobs=jobs)
    print()
    print(summary_table(result.records))
    print("[4/4] report")
    paths = build_report(result.records, out / "report", command="aft demo", record_files=[records])
    print(f"\ndone in {time.perf_counter() - t0:.0f} s ({result.progress.ran} run(s) trained, "
          f"{result.progress.skipped} reused)")
    print(f"records: {records}")
    print(f"report:  {paths.index_html}")
    return 0
