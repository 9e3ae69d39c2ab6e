"""STL's training budget per suite, chosen by k-fold cross-validation over the training labels.

BENCHMARKS.md: "choose steps/lr for STL on each suite (its curve must plateau), use the same for
every method; an under-trained STL flatters every method". For every (student, train size) of a
suite this trains STL on a grid of (steps, lr) with k-fold CV over the run's own labeled samples
(the same seeded pool and subsample as `aft compare`; test is never read) and writes one JSON line
per fold to ``results/budget/records.jsonl``; ``--render`` prints the table (mean +- SE over folds)
and marks the chosen budget and whether the curve plateaued (the next larger budget gains less
than one standard error).

    .venv/bin/python benchmarks/stl_budget.py fashion-mnist spam-assassin      # runs (resumable)
    .venv/bin/python benchmarks/stl_budget.py digits                          # (the suite's own budget joins the grid)
    .venv/bin/python benchmarks/stl_budget.py austen --max-steps 1500         # without the 3000-step budgets
    .venv/bin/python benchmarks/stl_budget.py --render > results/budget/BUDGET.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "results" / "budget" / "records.jsonl"
NOTES = ROOT / "results" / "budget" / "NOTES.md"  # written by hand from the table; appended by --render
GRID = {"steps": [600, 1500, 3000], "lr": [0.002, 0.005]}


def _folds(labels: np.ndarray, k: int, seed: int) -> list[np.ndarray]:
    """Stratified fold index of every sample (round robin within each class, seeded)."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(labels), dtype=np.int64)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        rng.shuffle(idx)
        fold[idx] = (np.arange(len(idx)) + rng.integers(k)) % k
    return [np.flatnonzero(fold == f) for f in range(k)]


def _done() -> set[str]:
    if not RECORDS.exists():
        return set()
    return {json.loads(line)["key"] for line in RECORDS.read_text().splitlines() if line.strip()}


def run(suites: list[str], folds: int, max_steps: int | None = None) -> None:
    import torch

    from aft.data import load_split, stratified_subsample
    from aft.experiments.compare import load_suite
    from aft.training import TrainConfig, train

    torch.set_num_threads(1)
    RECORDS.parent.mkdir(parents=True, exist_ok=True)
    done = _done()
    for name in suites:
        suite = load_suite(name)
        train_full = load_split(suite.dataset, "train", **dict(suite.dataset_options))
        pool = stratified_subsample(train_full, suite.pool_size, seed=0) if suite.pool_size < len(train_full) else train_full
        base = dict(suite.train)
        for student in suite.students:
            for n in suite.train_sizes:
                labeled = stratified_subsample(pool, n, seed=0) if n < len(pool) else pool
                labels = np.asarray(labeled.labels)
                parts = _folds(labels, folds, seed=0)
                # the suite's own budget is always in the grid (so the table says what it costs)
                for steps in sorted(s for s in {*GRID["steps"], int(base.get("steps", 600))}
                                    if max_steps is None or s <= max_steps):
                    for lr in sorted({*GRID["lr"], float(base.get("lr", 0.002))}):
                        for f, held in enumerate(parts):
                            key = f"{name}|{student}|{n}|{steps}|{lr}|{f}/{folds}"
                            if key in done:
                                continue
                            keep = np.setdiff1d(np.arange(len(labeled)), held)
                            cfg = TrainConfig(student=student, student_options=dict(suite.student_options.get(student, {})),
                                              method="none", beta=0.0, steps=steps, lr=lr,
                                              batch_size=int(base.get("batch_size", 64)),
                                              weight_decay=float(base.get("weight_decay", 0.0)), val_fraction=0.0,
                                              progress=False, tensorboard=False, test_split=None, seed=f)
                            t0 = time.perf_counter()
                            res = train(cfg, train_split=labeled.subset(keep), test_split=labeled.subset(held, "val"))
                            rec = {"key": key, "suite": name, "student": student, "train_size": n, "steps": steps,
                                   "lr": lr, "fold": f, "folds": folds, "val_accuracy": res.test_accuracy,
                                   "collapsed": bool(res.collapse and res.collapse.collapsed),
                                   "wall_s": round(time.perf_counter() - t0, 2)}
                            with open(RECORDS, "a") as fh:
                                fh.write(json.dumps(rec) + "\n")
                            print(json.dumps(rec), flush=True)


def render() -> str:
    recs = [json.loads(line) for line in RECORDS.read_text().splitlines() if line.strip()]
    groups: dict[tuple, dict[tuple, list[float]]] = {}
    for r in recs:
        groups.setdefault((r["suite"], r["student"], r["train_size"]), {}).setdefault(
            (r["steps"], r["lr"]), []).append(r["val_accuracy"])
    lines = ["# STL budget by cross-validation", "",
             "Generated by `.venv/bin/python benchmarks/stl_budget.py --render` from "
             "[records.jsonl](records.jsonl) (k-fold CV over each run's own training labels; test never read).", "",
             "| suite | student | labels | steps | lr | CV accuracy % (mean ± SE) | |", "|---|---|---:|---:|---:|---:|---|"]
    for (suite, student, n), cells in sorted(groups.items()):
        stats = {c: (100 * np.mean(v), 100 * np.std(v, ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0.0)
                 for c, v in cells.items()}
        best = max(stats, key=lambda c: (round(stats[c][0], 6), -c[0]))
        for c in sorted(stats):
            mean, se = stats[c]
            mark = "**chosen**" if c == best else ""
            lines.append(f"| {suite} | {student} | {n} | {c[0]} | {c[1]:g} | {mean:.1f} ± {se:.1f} | {mark} |")
        longest = max(s for s, _ in stats)
        at_best_lr = {s: stats[(s, best[1])] for s, lr in stats if lr == best[1]}
        plateau = best[0] < longest or (len(at_best_lr) > 1 and at_best_lr[longest][0]
                                        - at_best_lr[sorted(at_best_lr)[-2]][0] < at_best_lr[longest][1])
        lines.append(f"| | | | | | plateau within the grid: {'yes' if plateau else 'NO (extend the grid)'} | |")
    notes = ["", NOTES.read_text(encoding="utf-8").rstrip()] if NOTES.exists() else []
    return "\n".join(lines + notes) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suites", nargs="*", default=[])
    ap.add_argument("--folds", type=int, default=3)
    ap.add_argument("--render", action="store_true")
    ap.add_argument("--max-steps", type=int, default=None, help="leave out the longer budgets of the grid (compute)")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if args.render:
        sys.stdout.write(render())
        return 0
    run(args.suites, args.folds, args.max_steps)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
