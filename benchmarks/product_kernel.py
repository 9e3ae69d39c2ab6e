"""Time the tensor-product AFT loss two ways as the block dimensions d1, d2 grow.

- ``explicit``: build the product features ``einsum('bi,bj->bij')`` (B x d1 x d2, flattened), then
  the ordinary AFT loss on them (`kernel_distance`, auto form), as the research code does;
- ``kernel``: `aft-product`, whose B x B teacher kernel is the elementwise product of the two
  block kernels, centred and row-normalized on the kernel: O(B^2 (d1 + d2)).

One call = forward + backward w.r.t. the student features and s; median of `--repeats` calls
after one warm-up, both forms interleaved at each size; threads pinned (``torch.set_num_threads``,
default 1). Each record also holds the two losses, to show they agree. Writes
``results/product-kernel/records.jsonl`` (one line per size) and ``results/product-kernel/table.md``.

Usage: PYTHONPATH=src .venv/bin/python benchmarks/product_kernel.py [--threads 1] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

from aft.regularizers import build
from aft.regularizers.kernels import kernel_distance

BATCH = 128
STUDENT_DIM = 128
DIMS = ((16, 16), (32, 32), (64, 64), (128, 128), (256, 256), (384, 512), (512, 768))
ROOT = Path(__file__).resolve().parent.parent


def _explicit_loss(phi: torch.Tensor, psi: torch.Tensor, s: torch.Tensor, d1: int) -> torch.Tensor:
    w = psi * torch.sigmoid(s)
    z = torch.einsum("bi,bj->bij", w[:, :d1], w[:, d1:]).reshape(psi.shape[0], -1)
    return kernel_distance(phi, z)


def _time(fn: Callable[[], torch.Tensor], leaves: list[torch.Tensor]) -> float:
    start = time.perf_counter()
    fn().backward()
    took = time.perf_counter() - start
    for t in leaves:
        t.grad = None
    return took


def measure(d1: int, d2: int, repeats: int) -> dict[str, float | int]:
    """Median ms per call of both forms at one size, and their losses."""
    gen = torch.Generator().manual_seed(0)
    phi = torch.randn(BATCH, STUDENT_DIM, generator=gen).requires_grad_(True)
    psi = torch.randn(BATCH, d1 + d2, generator=gen).abs()  # post-ReLU-like features
    reg = build("aft-product", STUDENT_DIM, d1 + d2, blocks=[d1, d2])
    with torch.no_grad():
        reg.s.copy_(torch.randn(d1 + d2, generator=gen))
    s = reg.s
    forms: dict[str, Callable[[], torch.Tensor]] = {
        "explicit": lambda: _explicit_loss(phi, psi, s, d1),
        "kernel": lambda: reg(phi, psi),
    }
    times: dict[str, list[float]] = {k: [] for k in forms}
    for i in range(repeats + 1):
        order = list(forms) if i % 2 == 0 else list(reversed(forms))  # interleaved, order flipped
        for name in order:
            took = _time(forms[name], [phi, s])
            if i:
                times[name].append(took)
    with torch.no_grad():
        losses = {k: float(f()) for k, f in forms.items()}
    explicit_ms, kernel_ms = (1e3 * statistics.median(times[k]) for k in ("explicit", "kernel"))
    return {
        "batch": BATCH, "d_phi": STUDENT_DIM, "d1": d1, "d2": d2, "product_dim": d1 * d2, "repeats": repeats,
        "explicit_ms": round(explicit_ms, 3), "kernel_ms": round(kernel_ms, 3),
        "speedup": round(explicit_ms / kernel_ms, 2),
        "explicit_loss": losses["explicit"], "kernel_loss": losses["kernel"],
        "loss_abs_diff": abs(losses["explicit"] - losses["kernel"]),
    }


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def render(records: list[dict]) -> str:
    """The markdown table of a run (also pasted in docs/PERFORMANCE.md)."""
    m = records[0]
    lines = [
        f"B = {m['batch']}, d_phi = {m['d_phi']}, forward + backward (student features and s), median of "
        f"{m['repeats']} calls after a warm-up, both forms interleaved; {m['machine']}, "
        f"{m['torch_threads']} torch thread(s), torch {m['torch']}.",
        "",
        "| d1 | d2 | d1*d2 | explicit einsum (ms) | kernel product (ms) | explicit / kernel | abs loss diff |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        lines.append(f"| {r['d1']} | {r['d2']} | {r['product_dim']} | {r['explicit_ms']:.2f} | {r['kernel_ms']:.2f} | "
                     f"**{r['speedup']:.1f}x** | {r['loss_abs_diff']:.1e} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "product-kernel")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    machine = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "load_before": round(os.getloadavg()[0], 2),
    }
    records = []
    for d1, d2 in DIMS:
        row = {**measure(d1, d2, args.repeats), **machine}
        records.append(row)
        print(json.dumps({k: row[k] for k in ("d1", "d2", "explicit_ms", "kernel_ms", "speedup", "loss_abs_diff")}), flush=True)
    for r in records:
        r["load_after"] = round(os.getloadavg()[0], 2)
    args.out.mkdir(parents=True, exist_ok=True)
    _atomic_write(args.out / "records.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    _atomic_write(args.out / "table.md", render(records))


if __name__ == "__main__":
    main()
