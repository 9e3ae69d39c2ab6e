"""Teacher-extraction cost of a comparison suite, read from the feature stores' manifests.

    .venv/bin/python benchmarks/extraction_costs.py fashion-mnist-views [--store DIR]

For every teacher of the suite and every store the suite uses (the training pool, the test split,
and the pool's augmented views when the suite has views > 1), writes one JSON line with the
number of encoded inputs, the seconds of the extraction run that finished the store, and inputs/s,
to results/<suite>/extraction.jsonl. The stores must exist (run `aft compare <suite>` first).
Seconds are those of the last run that wrote the store (`seconds_last_run` in its manifest); a
store finished by a resumed run reports only that run's part.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import torch

from aft.assets import cache_dir
from aft.augment.views import policy_tag, resolve_policy
from aft.experiments.compare import load_suite
from aft.experiments.executor import TrainingExecutor
from aft.features import FeatureStore, store_path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite")
    parser.add_argument("--store", default=None, help="feature-store root (default: <asset cache>/features)")
    args = parser.parse_args()
    suite = load_suite(args.suite)
    root = Path(args.store) if args.store else cache_dir() / "features"
    ex = TrainingExecutor(suite, root, progress=False)
    data = ex.data()
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} (the machine that read the manifests)"
    out = Path("results") / suite.name / "extraction.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    max_views = max(suite.views)
    for teacher in ex.teachers():
        targets = [("pool", data.pool, None), ("test", data.test, None)]
        if max_views > 1:
            policy = resolve_policy(suite.augmentation, data.pool.modality)
            targets.append((f"pool, {max_views} views", data.pool, policy_tag(policy, max_views)))
        for what, split, tag in targets:
            path = store_path(root, teacher, split.dataset, split.split, split.fingerprint(), tag)
            if not (path / "manifest.json").is_file():
                continue
            store = FeatureStore.open(path, check_finite=False)
            run = store.manifest.get("extraction", {})
            seconds = float(run.get("seconds_last_run", 0.0))
            inputs = store.count * store.num_views
            lines.append({"suite": suite.name, "teacher": teacher, "store": what, "samples": store.count,
                          "views": store.num_views, "inputs_encoded": inputs, "seconds": round(seconds, 1),
                          "inputs_per_s": round(inputs / seconds, 1) if seconds else None,
                          "resumed_from_batch": run.get("resumed_from_batch"), "finished": run.get("finished"),
                          "machine": machine})
    out.write_text("".join(json.dumps(x, sort_keys=True) + "\n" for x in lines))
    for x in lines:
        print(json.dumps(x))


if __name__ == "__main__":
    main()
