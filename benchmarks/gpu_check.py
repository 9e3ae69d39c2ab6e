"""GPU performance check: AFT / STL step ratio of a ViT-S student and bf16 extraction throughput.

    .venv/bin/python benchmarks/gpu_check.py                 # on a CUDA machine: appends benchmarks/results/gpu.jsonl
    .venv/bin/python benchmarks/gpu_check.py --smoke --out X  # tiny sizes, any device (the test suite runs this)

Then `benchmarks/run_performance.py --render RUN_IDS` (or any run of it) renders the records in
docs/PERFORMANCE.md, section "GPU".

1. step ratio: the real training loop (``aft.training.train`` with ``student_module``,
   ``precision: bf16`` autocast, ``beta_warmup: 0``) for a ViT-S/16-sized student
   (``transformers.ViTModel`` from a config, random init: 384 dims, 12 layers, 6 heads, 224 px) with
   a 1,536-dim teacher (random features in RAM), at batch 128 and 512; STL, AFT and an A/A STL arm
   lock-stepped (``benchmarks/overhead.py``; CUDA synchronized before each clock read), median of
   per-pair ratios with a 95 % bootstrap interval, FLOP floor beside it.
2. extraction: images/s of a ViT-B/14 DINOv2-sized teacher (``transformers.Dinov2Model`` from a
   config, random init: 768 dims, 12 layers, 224 px) forward under bf16 autocast vs fp32, same
   batches, interleaved; peak device memory.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "gpu.jsonl"
sys.path.insert(0, str(Path(__file__).parent))

#: full and smoke sizes
SIZES: dict[str, dict[str, Any]] = {
    "full": {"student": {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6,
                         "intermediate_size": 1536, "image_size": 224, "patch_size": 16},
             "teacher": {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                         "intermediate_size": 3072, "image_size": 224, "patch_size": 14},
             "teacher_dim": 1536, "batches": [128, 512], "n": 1024, "classes": 100, "steps": 20, "warmup": 5,
             "runs": 6, "extract_batch": 256, "extract_batches": 10},
    "smoke": {"student": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                          "intermediate_size": 64, "image_size": 32, "patch_size": 16},
              "teacher": {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                          "intermediate_size": 64, "image_size": 28, "patch_size": 14},
              "teacher_dim": 48, "batches": [8, 16], "n": 32, "classes": 4, "steps": 2, "warmup": 1, "runs": 3,
              "extract_batch": 8, "extract_batches": 2},
}


def _vit_student(cfg: dict, classes: int) -> Any:
    """A ViT (transformers, random init) returning (logits, CLS features), inputs uint8 NHWC -> float NCHW."""
    import torch
    from torch import nn
    from transformers import ViTConfig, ViTModel

    class ViTStudent(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.vit = ViTModel(ViTConfig(**cfg), add_pooling_layer=False)
            self.head = nn.Linear(cfg["hidden_size"], classes)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            z = self.vit(pixel_values=x).last_hidden_state[:, 0]
            return self.head(z), z

        @staticmethod
        def preprocess(raw: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(raw.transpose(0, 3, 1, 2))).float().div_(255.0)

    return ViTStudent()


def _flop_floor(sizes: dict, batch: int, device: Any) -> dict:
    """FLOPs (FlopCounterMode) of one STL step of the student and of the AFT regularizer, at `batch`."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from aft.regularizers.base import build

    torch.manual_seed(0)
    model = _vit_student(sizes["student"], sizes["classes"]).to(device)
    s = sizes["student"]["image_size"]
    x = torch.rand(batch, 3, s, s, device=device)
    y = torch.zeros(batch, dtype=torch.long, device=device)
    d_phi, d_psi = sizes["student"]["hidden_size"], sizes["teacher_dim"]
    reg = build("aft", d_phi, d_psi).to(device)
    phi = torch.randn(batch, d_phi, device=device, requires_grad=True)
    psi = torch.randn(batch, d_psi, device=device)
    counts = {}
    for key, fn in (("student", lambda: F.cross_entropy(model(x)[0], y).backward()),
                    ("regularizer", lambda: reg(phi, psi).backward())):
        with FlopCounterMode(display=False) as fc:
            fn()
        counts[key] = int(fc.get_total_flops())
    return {"gflop_per_step": {k: round(v / 1e9, 3) for k, v in counts.items()},
            "flop_ratio": round(1 + counts["regularizer"] / counts["student"], 5)}


def part_step_ratio(sizes: dict, device: Any, emit) -> None:
    import overhead as ov
    import torch

    from aft.data.split import DatasetSplit
    from aft.features import InMemoryFeatures
    from aft.training import TrainConfig, train

    n, s = sizes["n"], sizes["student"]["image_size"]
    rng = np.random.default_rng(0)
    ids = [f"g{i:06d}" for i in range(n)]
    split = DatasetSplit("gpu-bench", "train", ids, rng.integers(0, 256, size=(n, s, s, 3), dtype=np.uint8),
                         rng.integers(0, sizes["classes"], size=n), [str(c) for c in range(sizes["classes"])], "image")
    feats = InMemoryFeatures(ids, rng.standard_normal((n, sizes["teacher_dim"]), dtype=np.float32),
                             {"teacher-1536": (0, sizes["teacher_dim"])})
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    for batch in sizes["batches"]:
        def make_config(method: str, batch=batch) -> TrainConfig:
            return TrainConfig(dataset="gpu-bench", student="module", method=method,
                               teachers=["teacher-1536"] if method != "none" else [], batch_size=batch,
                               steps=sizes["warmup"] + sizes["steps"], val_fraction=0.0, test_split=None,
                               device=device.type, precision="bf16", progress=False, tensorboard=False,
                               checkpoint_every=0, output=None, seed=0, beta_warmup=0, log_every=10)

        def run_arm(cfg: TrainConfig, on_step) -> Any:
            torch.manual_seed(0)  # the same student init in every arm
            module = _vit_student(sizes["student"], sizes["classes"])
            return train(cfg, features=feats if cfg.method != "none" else None, train_split=split,
                         student_module=module, on_step=on_step)

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        res = ov.measure(make_config, run_arm, sizes["steps"], sizes["warmup"], sizes["runs"], sync=sync)
        flops = _flop_floor(sizes, batch, device)
        checks = {"wall": ov.verdict(res["aft_wall"]["ratio"], res["aft_wall"]["ci95"], None),
                  "aa": ov.aa_verdict(res["aa_wall"]["ci95"])}
        emit({"part": "gpu_step_ratio", "student": "vit-s (transformers ViTModel, random init)",
              "student_config": sizes["student"], "teacher_dim": sizes["teacher_dim"], "batch": batch,
              "precision": "bf16", "beta_warmup": 0, **res, **flops, "checks": checks,
              "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None})


def part_extraction(sizes: dict, device: Any, emit) -> None:
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    model = Dinov2Model(Dinov2Config(**sizes["teacher"])).to(device).eval()
    s, bs = sizes["teacher"]["image_size"], sizes["extract_batch"]
    batches = [torch.rand(bs, 3, s, s, device=device) for _ in range(sizes["extract_batches"])]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    def run(dtype: torch.dtype | None) -> float:
        ctx = torch.autocast(device.type, dtype=dtype) if dtype is not None else torch.autocast(device.type, enabled=False)
        with torch.no_grad(), ctx:
            sync()
            t0 = time.perf_counter()
            for x in batches:
                model(pixel_values=x).pooler_output.float()
            sync()
        return len(batches) * bs / (time.perf_counter() - t0)

    run(torch.bfloat16)
    run(None)  # warm-up of both paths
    got: dict[str, list[float]] = {"bf16": [], "fp32": []}
    for r in range(3 if sizes is SIZES["smoke"] else 5):
        for key in (("bf16", "fp32") if r % 2 == 0 else ("fp32", "bf16")):
            got[key].append(run(torch.bfloat16 if key == "bf16" else None))
    med = {k: round(statistics.median(v), 1) for k, v in got.items()}
    emit({"part": "gpu_extraction", "teacher": "dinov2 vit-b/14 sized (transformers Dinov2Model, random init)",
          "teacher_config": sizes["teacher"], "batch": bs, "batches": len(batches), "images_per_s": med,
          "runs": {k: [round(x, 1) for x in v] for k, v in got.items()},
          "bf16_speedup": round(med["bf16"] / med["fp32"], 3),
          "peak_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if device.type == "cuda" else None})


def device_name(device: Any) -> str:
    import platform

    import torch

    if device.type == "cuda":
        return f"{platform.node()}: {torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    return f"{platform.node()}: {device.type}, torch {torch.__version__} (smoke only)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on any device (checks the script runs)")
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto (default: cuda if available)")
    parser.add_argument("--out", default=None, help=f"JSON-lines file to append to (default {DEFAULT_OUT}; "
                        "--smoke writes nowhere unless given)")
    parser.add_argument("--only", default="step,extraction", help="comma-separated parts: step,extraction")
    args = parser.parse_args(argv)
    import logging

    import torch

    logging.disable(logging.WARNING)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if not args.smoke and device.type != "cuda":
        print("gpu_check: no CUDA device; run with --smoke for the CPU check", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    sizes = SIZES["smoke" if args.smoke else "full"]
    out = Path(args.out) if args.out else (None if args.smoke else DEFAULT_OUT)
    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    mach = device_name(device)
    records: list[dict] = []

    def emit(rec: dict) -> None:
        rec = {"run_id": run_id, "date": time.strftime("%Y-%m-%d"), "machine": mach, "smoke": args.smoke, **rec}
        records.append(rec)
        print(json.dumps(rec), flush=True)
        if out is not None:  # appended one by one: a run cut short keeps what it measured
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "a") as f:
                f.write(json.dumps(rec, sort_keys=True) + "\n")

    parts = set(args.only.split(","))
    if "step" in parts:
        part_step_ratio(sizes, device, emit)
    if "extraction" in parts:
        part_extraction(sizes, device, emit)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
