"""Why a from-scratch student collapses under AFT at constant beta, and what the beta warm-up changes.

Writes ``results/collapse/records.jsonl`` (one JSON line per measurement) and prints them; the
numbers in docs/regularizers.md ("Why the trainer warms beta up") come from this file:

    .venv/bin/python benchmarks/collapse_diagnosis.py

1. At initialization (digits, cnn-small, seed 0, one batch of 64): the centred and uncentred row
   norms of the student's features, and the gradient norms of the task loss and of R on the
   student's parameters.
2. The getting-started runs of docs/getting-started.md (digits, 300 steps, batch 64, EfficientNet-
   Lite0 at 64 px): STL, and AFT at beta 1 and 10 with the default warm-up and with constant beta.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "collapse" / "records.jsonl"


def at_init(store: Path) -> dict:
    import numpy as np
    import torch
    import torch.nn.functional as F

    from aft.data import load_split
    from aft.features import open_features
    from aft.regularizers import build
    from aft.students.base import build_student
    from aft.training.data import carve_validation

    torch.manual_seed(0)
    full = load_split("digits", "train")
    tr, _ = carve_validation(full, 0.1, 0)
    feats = open_features(store, ["efficientnet-lite0"], full)
    student = build_student("cnn-small", 10)
    x = student.preprocess(tr.inputs[:64])
    student.discover_feature_dim(x[:2])
    reg = build("aft", student.feature_dim, feats.dim)
    logits, phi = student(x)
    task = F.cross_entropy(logits, torch.as_tensor(tr.labels[:64]))
    psi = torch.from_numpy(np.asarray(feats.get(list(tr.ids[:64])), dtype=np.float32))
    r = reg(phi, psi)
    params = list(student.parameters())
    norm = lambda gs: math.sqrt(sum(float((g**2).sum()) for g in gs if g is not None))  # noqa: E731
    g_task = norm(torch.autograd.grad(task, params, retain_graph=True, allow_unused=True))
    g_r = norm(torch.autograd.grad(r, params, allow_unused=True))
    ph = phi.detach()
    return {"what": "init", "centred_norm": float((ph - ph.mean(0)).norm(dim=1).mean()),
            "norm": float(ph.norm(dim=1).mean()), "grad_task": g_task, "grad_R": g_r, "ratio": g_r / g_task}


def getting_started(tmp: Path) -> list[dict]:
    from aft.cli.main import main

    out = []
    runs = {"stl": ("none", 0, "auto"), "aft-1": ("aft", 1, "auto"), "aft-10": ("aft", 10, "auto"),
            "aft-1-constant": ("aft", 1, 0), "aft-10-constant": ("aft", 10, 0)}
    for name, (method, beta, warmup) in runs.items():
        args = ["train", "--dataset", "digits", "--method", method, "--beta", str(beta), "--steps", "300",
                "--batch-size", "64", "--no-progress", "--output", str(tmp / name), "--set", f"beta_warmup={warmup}"]
        if method != "none":
            args += ["--teachers", "efficientnet-lite0", "--features", str(tmp / "features")]
        assert main(args) == 0, name
        res = json.loads((tmp / name / "result.json").read_text())
        out.append({"what": "getting-started", "run": name, "beta": beta, "beta_warmup": warmup,
                    "test_accuracy": res["test_accuracy"], "collapsed": res["collapsed"],
                    "beta_opened_at": res.get("beta_opened_at"),
                    "dead_features": res["collapse"]["dead_features"]})
    return out


def main() -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    from aft.cli.main import main as aft

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        assert aft(["extract", "--teacher", "efficientnet-lite0", "--dataset", "digits", "--split", "train",
                    "--resolution", "64", "--store", str(tmp / "features"), "--no-progress"]) == 0
        records = [at_init(tmp / "features"), *getting_started(tmp)]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("".join(json.dumps(r) + "\n" for r in records))
    for r in records:
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
