"""How much of each teacher's batch kernel is about the task: kernel alignment with the labels.

AFT matches the student's batch kernel to the teacher's (features centred over the batch, rows
normalised; `aft.regularizers.kernels`), re-weighted by the learned rho. A linear probe needs only
*some* directions of the teacher's features to separate the classes; the kernel that AFT transfers
is dominated by the directions of largest variance. This script measures, on each suite's labeled
training subsamples (the same seeded pool and draws as `aft compare`; test is never read), per
teacher:

* CKA between the teacher's AFT kernel (uniform rho) and the label kernel (one-hot labels through the
  same centring and normalisation): 1 = the kernel is the class structure, 0 = unrelated;
* the between-class share of the variance of the centred, row-normalised features
  (trace S_b / trace S_t), the share of the kernel's "energy" a perfect rho could keep for the task.

    .venv/bin/python benchmarks/teacher_alignment.py          # writes results/alignment/records.jsonl
    .venv/bin/python benchmarks/teacher_alignment.py --table  # the table from the records

Reads the cached feature stores of earlier `aft compare` runs (<asset cache>/features).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "alignment" / "records.jsonl"
SUITES = {"demo": ROOT / "benchmarks" / "suites" / "demo-regret.yaml", "digits": "digits", "austen": "austen"}
SEEDS = (0, 1, 2, 3, 4)


def _aft_rows(x: np.ndarray) -> np.ndarray:
    """AFT's transform of a batch: centre each column, divide each row by its norm (+1e-8)."""
    xc = x - x.mean(axis=0, keepdims=True)
    return xc / (np.linalg.norm(xc, axis=1, keepdims=True) + 1e-8)


def cka(a: np.ndarray, b: np.ndarray) -> float:
    """Linear CKA of the kernels a a^T and b b^T (double-centred)."""
    ka, kb = a @ a.T, b @ b.T
    n = len(ka)
    h = np.eye(n) - 1.0 / n
    ka, kb = h @ ka @ h, h @ kb @ h
    return float((ka * kb).sum() / (np.linalg.norm(ka) * np.linalg.norm(kb) + 1e-12))


def between_share(z: np.ndarray, y: np.ndarray) -> float:
    """trace(S_between) / trace(S_total) of rows z (already centred) by class y."""
    total = float((z ** 2).sum())
    between = sum(float((y == c).sum()) * float((z[y == c].mean(axis=0) ** 2).sum()) for c in np.unique(y))
    return between / total if total > 0 else float("nan")


def run() -> list[dict]:
    from aft.assets import cache_dir
    from aft.data import stratified_subsample
    from aft.experiments.compare import load_suite
    from aft.experiments.executor import TrainingExecutor

    out = []
    for label, spec in SUITES.items():
        suite = load_suite(spec)
        ex = TrainingExecutor(suite, cache_dir() / "features", progress=False)
        pool = ex.data().pool
        teachers = ex.teachers()
        for teacher in teachers:
            feats = ex.features((teacher,))[0]
            for n in suite.train_sizes:
                for seed in SEEDS:
                    lab = stratified_subsample(pool, n, seed=seed) if n < len(pool) else pool
                    y = np.asarray(lab.labels)
                    z = _aft_rows(np.asarray(feats.get(lab.ids), dtype=np.float64))
                    onehot = _aft_rows(np.eye(int(y.max()) + 1)[y])
                    out.append({"suite": label, "dataset": suite.dataset, "teacher": teacher, "train_size": n,
                                "seed": seed, "dims": int(z.shape[1]), "cka_labels": cka(z, onehot),
                                "between_share": between_share(z, y)})
                    print(json.dumps(out[-1]), flush=True)
    return out


def table(records: list[dict]) -> str:
    cells: dict[tuple, list[dict]] = defaultdict(list)
    for r in records:
        cells[(r["suite"], r["teacher"], r["train_size"])].append(r)
    lines = ["| suite | teacher | dims | labels | CKA(teacher kernel, labels) | between-class share of variance |",
             "|---|---|---:|---:|---:|---:|"]
    for (suite, teacher, n), rs in sorted(cells.items()):
        c = np.array([r["cka_labels"] for r in rs])
        b = np.array([r["between_share"] for r in rs])
        se = lambda a: a.std(ddof=1) / np.sqrt(len(a)) if len(a) > 1 else float("nan")  # noqa: E731
        lines.append(f"| {suite} | {teacher} | {rs[0]['dims']} | {n} | {c.mean():.3f} ± {se(c):.3f} | "
                     f"{b.mean():.3f} ± {se(b):.3f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--table", action="store_true", help="print the table from the committed records only")
    args = ap.parse_args()
    if not args.table:
        recs = run()
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text("".join(json.dumps(r) + "\n" for r in recs))
    sys.stdout.write(table([json.loads(line) for line in OUT.read_text().splitlines() if line.strip()]) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
