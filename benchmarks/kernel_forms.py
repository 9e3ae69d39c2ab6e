"""Time the two exact forms of the AFT kernel discrepancy (and the automatic choice) on this machine.

Forward + backward of `aft_kernel_distance` w.r.t. the student features and rho, median over
repeats, for B in {64, 256, 1024, 4096} x d_psi in {384, 1280, 4096} at d_phi = 128. Writes raw
records to benchmarks/results/kernel_forms.jsonl and a table to benchmarks/results/kernel_forms.md.

Usage: .venv/bin/python benchmarks/kernel_forms.py [--device cpu] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from aft.regularizers.kernels import aft_kernel_distance, choose_form

BATCHES = (64, 256, 1024, 4096)
TEACHER_DIMS = (384, 1280, 4096)
STUDENT_DIM = 128


def _time_one(batch: int, d_psi: int, form: str, device: str, repeats: int) -> float:
    gen = torch.Generator().manual_seed(0)
    phi = torch.randn(batch, STUDENT_DIM, generator=gen).to(device).requires_grad_(True)
    psi = torch.randn(batch, d_psi, generator=gen).to(device)
    s = torch.zeros(d_psi, device=device, requires_grad=True)
    times = []
    for i in range(repeats + 1):  # first call is a warm-up
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss = aft_kernel_distance(phi, psi, torch.sigmoid(s), form=form)  # type: ignore[arg-type]
        loss.backward()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
        phi.grad = s.grad = None
    return statistics.median(times)


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    parser.add_argument("--suffix", default="", help="file name suffix, e.g. _h100")
    args = parser.parse_args()
    machine = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "cpu",
    }
    records = []
    for batch in BATCHES:
        for d_psi in TEACHER_DIMS:
            work = batch * batch * (STUDENT_DIM + d_psi)
            repeats = 7 if work < 5e8 else 3 if work < 5e9 else 1
            auto = choose_form(batch, STUDENT_DIM, d_psi)
            row = {"batch": batch, "d_phi": STUDENT_DIM, "d_psi": d_psi, "auto_choice": auto, "repeats": repeats, **machine}
            for form in ("explicit", "gram"):
                row[f"{form}_ms"] = 1e3 * _time_one(batch, d_psi, form, args.device, repeats)
            row["auto_ms"] = row[f"{auto}_ms"]
            row["auto_is_fastest"] = row["auto_ms"] <= min(row["explicit_ms"], row["gram_ms"])
            records.append(row)
            print(json.dumps({k: row[k] for k in ("batch", "d_psi", "explicit_ms", "gram_ms", "auto_choice")}), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    _atomic_write(args.out / f"kernel_forms{args.suffix}.jsonl", "".join(json.dumps(r) + "\n" for r in records))
    lines = [
        "# AFT kernel forms: forward+backward time per call (median, ms)\n",
        f"Machine: {machine['platform']}, {machine['processor']}, {machine['cpu_count']} CPUs "
        f"({machine['torch_threads']} torch threads), torch {machine['torch']}, device {machine['device']}; d_phi = {STUDENT_DIM}.\n",
        "| B | d_psi | explicit (ms) | gram (ms) | auto picks | auto is fastest |",
        "|---:|---:|---:|---:|:---|:---|",
    ]
    for r in records:
        lines.append(
            f"| {r['batch']} | {r['d_psi']} | {r['explicit_ms']:.2f} | {r['gram_ms']:.2f} | {r['auto_choice']} | {'yes' if r['auto_is_fastest'] else 'no'} |"
        )
    _atomic_write(args.out / f"kernel_forms{args.suffix}.md", "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
