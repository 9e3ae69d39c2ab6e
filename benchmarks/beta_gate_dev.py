"""The beta warm-up rules and the training budget, judged on a DEV set (never the test split).

Fashion-MNIST, 100 labels (stratified, one draw per seed) from a pool of 1,100 training images; the
other 1,000 pool images are the dev set. cnn-small (width 16) from scratch, EfficientNet-Lite0
teacher, batch 64, lr 2e-3, cosine schedule. Arms: STL; AFT at beta 1 and 10 with constant beta
(``beta_warmup: 0``, the paper's schedule), the task gate (``loss`` = ``auto``) and the feature
gate (``spread``); budgets of 150, 300 and 600 steps; seeds 0-2; with ``--auto`` also ``--beta
auto`` (``beta_rule: auto``) at scales 0.3, 1 and 3 and the task gate at beta 0.1, at 600 steps
(appended to the records: the scale of the automatic rule is chosen here, never on test). Writes
``results/beta-gate/records.jsonl`` (one line per run: the dev accuracy at the end and every
100th of the run) and prints the table that docs/training.md quotes:

    .venv/bin/python benchmarks/beta_gate_dev.py            # ~10 min on 2 cores
    .venv/bin/python benchmarks/beta_gate_dev.py --auto     # the --beta auto arms (~5 min)
    .venv/bin/python benchmarks/beta_gate_dev.py --table    # the table from the committed records
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "beta-gate" / "records.jsonl"
GRID = {150: ("stl", "const", "loss", "spread"), 300: ("stl", "loss", "spread"), 600: ("stl", "const", "loss", "spread")}
BETAS = (1.0, 10.0)
SEEDS = (0, 1, 2)
#: the --auto arms: (steps, arm, beta); for "auto" beta is the rule's scale
AUTO_ARMS = [(600, "auto", 0.3), (600, "auto", 1.0), (600, "auto", 3.0), (600, "loss", 0.1)]


def _arms() -> list[tuple[int, str, float]]:
    return [(steps, v, beta) for steps, variants in GRID.items() for v in variants
            for beta in ((0.0,) if v == "stl" else BETAS)]


def run(store: Path, arms: list[tuple[int, str, float]]) -> list[dict]:
    import numpy as np

    from aft.data import load_split, stratified_subsample
    from aft.features import extract, open_features
    from aft.training import TrainConfig, train

    pool = stratified_subsample(load_split("fashion-mnist", "train"), 1100, seed=0)
    extract("efficientnet-lite0", pool, store, progress=False)
    feats = open_features(store, ["efficientnet-lite0"], pool)
    out = []
    for seed in SEEDS:
        lab = stratified_subsample(pool, 100, seed=seed)
        held = set(lab.ids)
        dev = pool.subset(np.array([i for i, x in enumerate(pool.ids) if x not in held]))
        for steps, v, beta in arms:
            aft = v != "stl"
            warmup = 0 if v in ("const", "stl") else ("loss" if v == "auto" else v)
            cfg = TrainConfig(dataset="fashion-mnist", student="cnn-small", student_options={"width": 16},
                              method="aft" if aft else "none", beta=beta, beta_rule="auto" if v == "auto" else "fixed",
                              beta_auto_scale=beta if v == "auto" else 3.0,
                              teachers=["efficientnet-lite0"] if aft else [], steps=steps, batch_size=64,
                              lr=0.002, seed=seed, progress=False, tensorboard=False,
                              eval_every=max(1, steps // 6), beta_warmup=warmup, output=None, threads=1)
            t0 = time.perf_counter()
            r = train(cfg, features=feats if aft else None, train_split=lab, val_split=dev, test_split=None)
            curve = [round(h["val_accuracy"], 4) for h in r.history if "val_accuracy" in h]
            rec = {"steps": steps, "v": v, "beta": beta, "seed": seed, "dev_final": curve[-1], "curve": curve,
                   "collapsed": None if r.collapse is None else bool(r.collapse.collapsed),
                   "wall_s": round(time.perf_counter() - t0, 1)}
            if v == "auto":
                rec["beta_auto"] = r.beta_auto
            print(json.dumps(rec), flush=True)
            out.append(rec)
    return out


def table(records: list[dict]) -> str:
    import numpy as np

    last: dict[tuple, dict] = {}
    for r in records:
        last[(r["steps"], r["v"], r["beta"], r["seed"])] = r  # a rerun replaces the run
    cells: dict[tuple, list[float]] = defaultdict(list)
    coll: dict[tuple, int] = defaultdict(int)
    for (steps, v, beta, _), r in last.items():
        cells[(steps, v, beta)].append(r["dev_final"])
        coll[(steps, v, beta)] += bool(r["collapsed"])
    lines = ["| steps | arm | beta | dev accuracy (mean ± se, 3 seeds) | collapsed runs | measured beta |",
             "|---|---|---|---|---|---|"]
    names = {"stl": "STL", "const": "AFT, constant beta", "loss": "AFT, task gate (auto)", "spread": "AFT, spread gate",
             "auto": "AFT, --beta auto (beta = scale)"}
    measured: dict[tuple, list[float]] = defaultdict(list)
    for (steps, v, beta, _), r in last.items():
        if r.get("beta_auto") is not None:
            measured[(steps, v, beta)].append(r["beta_auto"])
    for key in sorted(cells, key=lambda k: (k[0], list(names).index(k[1]), k[2])):
        a = np.array(cells[key])
        se = a.std(ddof=1) / np.sqrt(len(a)) if len(a) > 1 else float("nan")
        steps, v, beta = key
        got = " / ".join(f"{b:.2g}" for b in measured.get(key, []))
        lines.append(f"| {steps} | {names[v]} | {beta:g} | {100 * a.mean():.1f} ± {100 * se:.1f} | {coll[key]}/{len(a)} "
                     f"| {got} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", action="store_true", help="print the table from the committed records only")
    ap.add_argument("--auto", action="store_true", help="run the --beta auto arms only (appended to the records)")
    args = ap.parse_args()
    if not args.table:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        with tempfile.TemporaryDirectory() as tmp:
            recs = run(Path(tmp) / "features", AUTO_ARMS if args.auto else _arms())
        OUT.parent.mkdir(parents=True, exist_ok=True)
        old = OUT.read_text() if args.auto and OUT.exists() else ""
        OUT.write_text(old + "".join(json.dumps(r) + "\n" for r in recs))
    print(table([json.loads(line) for line in OUT.read_text().splitlines() if line.strip()]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
