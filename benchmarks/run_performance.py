"""The performance suite: fresh measurements -> docs/PERFORMANCE.md + benchmarks/results/performance.jsonl.

    .venv/bin/python benchmarks/run_performance.py --end-to-end  # everything, ~25 minutes on 2 CPU cores
    .venv/bin/python benchmarks/run_performance.py               # without the end-to-end timings
    .venv/bin/python benchmarks/run_performance.py --quick       # ~2 minutes, fewer configs and repeats

Parts (every ratio is measured inside this one run, interleaved, as medians of repeats):

1. step overhead: the real training loop (`aft.training.train`, `beta_warmup: 0`) with AFT vs STL
   (method none) and a second STL arm (A/A control), for every built-in student at batch 128,
   with teacher features read per step by id from float16 FeatureStores of the suite teachers'
   dims (1280; 768, 384, 256 and the 1408 concatenation). The arms run lock-stepped, one step
   each in turn, in many short runs (benchmarks/overhead.py says why); ratios are medians of
   per-pair ratios with 95 % bootstrap intervals, beside the FLOP floor (1 + regularizer FLOPs /
   student-step FLOPs, torch's FlopCounterMode) and the time floor (the kernel products alone);
   a ratio below 1, wholly below the floor, or with a too-wide interval is printed as a defect.
   Threads are pinned (`--threads`, default 1; OMP/MKL_NUM_THREADS for subprocesses).
2. store vs RAM: the AFT step of cnn-small with features from a memory-mapped store (float16 and
   float32, 40x more rows than the training set) vs an in-RAM float32 array (`InMemoryFeatures`).
3. resident memory: RSS (anonymous and file-backed) while reading random batches of 128 ids from
   a float16 store of ~1 GiB written to /tmp (deleted afterwards).
4. data-parallel gather: `all_gather` of the per-rank B/2 x d float32 blocks with 2 gloo
   processes, for the student dim the loop gathers (128) and for d_phi + d_psi.
5. extraction and kernel forms: the latest records of benchmarks/extraction.py and
   benchmarks/kernel_forms.py (re-run those scripts to refresh them).
6. end to end (``--end-to-end``): wall time of ``aft demo`` from a cache with the assets but no
   features (extraction + every run), then again warm, and of ``aft compare fashion-mnist --quick``
   from such a cache; outputs go to a temporary folder.

Every record is appended to benchmarks/results/performance.jsonl with the machine and a run id;
docs/PERFORMANCE.md is regenerated from this run's records (``--render ID,ID`` merges runs, later
parts replacing earlier ones). Blocks of the page fenced by ``<!-- BEGIN kept: NAME -->`` /
``<!-- END kept: NAME -->`` belong to other scripts and are carried over verbatim. The "GPU"
section renders the newest run in benchmarks/results/gpu.jsonl (benchmarks/gpu_check.py).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "PERFORMANCE.md"
sys.path.insert(0, str(Path(__file__).parent))

BATCH = 128
DIMS_IMAGE = {"efficientnet-lite0": 1280}
DIMS_TEXT = {"mpnet": 768, "minilm": 384, "wordllama": 256}


# ---------------------------------------------------------------------------------------------- helpers
def machine() -> str:
    from extraction import machine as m

    return m()


def write_store(path: Path, ids: list[str], dim: int, dtype: str, name: str, seed: int = 0) -> Path:
    from aft.features import FeatureStoreWriter

    rng = np.random.default_rng(seed)
    w = FeatureStoreWriter(path, {"bench": name}, count=len(ids), num_views=1, dim=dim, dtype=dtype)
    step = 8192
    for s in range(0, len(ids), step):
        e = min(s + step, len(ids))
        w.write(np.arange(s, e), rng.standard_normal((e - s, dim), dtype=np.float32))
    w.finalize(ids, {"teacher": {"name": name, "version": "1"}, "dataset": {"name": "bench", "split": "train"}})
    return path


def synthetic_split(modality: str, n: int, seed: int = 0):
    from aft.data.split import DatasetSplit

    rng = np.random.default_rng(seed)
    ids = [f"s{i:07d}" for i in range(n)]
    labels = rng.integers(0, 10, size=n)
    if modality == "image":
        inputs = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    else:
        words = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "markets", "rally",
                 "and", "spam", "arrives", "free", "offer", "click", "now", "meeting", "notes", "please", "review"]
        inputs = [" ".join(rng.choice(words, size=int(k))) for k in rng.integers(20, 200, size=n)]
    return DatasetSplit("bench", "train", ids, inputs, labels, [str(c) for c in range(10)], modality)


def step_times(student: str, options: dict, method: str, split, features, steps: int) -> list[float]:
    """Per-step wall times (s) of `steps` optimizer steps of the real loop (first 3 dropped)."""
    from aft.training import TrainConfig, train

    stamps: list[float] = []
    cfg = TrainConfig(dataset="bench", student=student, student_options=options, method=method,
                      teachers=list(getattr(features, "column_ranges", {})) if method != "none" else [],
                      batch_size=BATCH, steps=steps + 3, val_fraction=0.0, test_split=None, device="cpu",
                      progress=False, tensorboard=False, checkpoint_every=0, output=None, seed=0)
    stamps.append(time.perf_counter())
    train(cfg, features=features if method != "none" else None, train_split=split,
          on_step=lambda step, rec: stamps.append(time.perf_counter()))
    diffs = np.diff(stamps[1:])  # stamps[0] is before setup
    return [float(x) for x in diffs[2:]]


def step_flops(student: str, options: dict, split, d_psi: int) -> dict:
    """Matmul/conv FLOPs (torch's FlopCounterMode) of one STL step and of the AFT regularizer, batch 128.

    Machine-independent: the floor of AFT / STL if both ran at the same FLOP rate.
    """
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from aft.regularizers.base import build
    from aft.students.base import build_student

    torch.manual_seed(0)
    model = build_student(student, 10, **options)
    x = model.preprocess(split.inputs[:BATCH])
    d_phi = model.discover_feature_dim(x[:2])
    y = torch.as_tensor(np.asarray(split.labels[:BATCH]))
    reg = build("aft", d_phi, d_psi)
    phi, psi = torch.randn(BATCH, d_phi, requires_grad=True), torch.randn(BATCH, d_psi)
    counts = {}
    for key, fn in (("student", lambda: F.cross_entropy(model(x)[0], y).backward()),
                    ("regularizer", lambda: reg(phi, psi).backward())):
        with FlopCounterMode(display=False) as fc:
            fn()
        counts[key] = int(fc.get_total_flops())
    return {"d_phi": d_phi, "gflop_per_step": {k: round(v / 1e9, 4) for k, v in counts.items()},
            "flop_ratio": round(1 + counts["regularizer"] / counts["student"], 4)}


def part_regularizer_call(args, emit) -> None:
    """Forward + backward of one AFT call, as shipped vs the straightforward form it replaced.

    ``as shipped``: ``aft`` (rho handed to the kernel, one autograd node with a hand-written
    backward, NaN/Inf check on the scalar loss).
    ``weighted, autograd``: the same weighted formulation composed of torch ops (autograd records
    each one).
    ``pre-multiplied``: Psi * rho through center_normalize (autograd through the B x d_psi
    normalization) plus the NaN/Inf scan of both inputs, i.e. the previous implementation.
    ``products only``: the two B x B kernel products and their gradients (to Phi and to the
    weights) on precomputed normalized features: the floor of any exact explicit form.
    """
    import torch

    from aft.regularizers.base import build
    from aft.regularizers.inputs import check_finite
    from aft.regularizers.kernels import center_normalize, kernel_sq_diff_sum

    torch.manual_seed(0)
    d_phi, d_psi = 128, 1280
    phi = torch.randn(BATCH, d_phi, requires_grad=True)
    psi = torch.randn(BATCH, d_psi)
    reg = build("aft", d_phi, d_psi, kernel_form="explicit")
    a = center_normalize(phi.detach()).requires_grad_()
    c, w = center_normalize(psi), torch.full((d_psi,), 0.25, requires_grad=True)

    def shipped() -> None:
        reg(phi, psi).backward()

    def composed() -> None:
        # the weighted formulation written with torch ops: autograd records each one
        a_, pc, w2 = center_normalize(phi), psi - psi.mean(dim=0, keepdim=True), reg.rho() ** 2
        raw = (pc * w2) @ pc.T
        norms = torch.sqrt(torch.diagonal(raw).clamp_min(1e-30)) + 1e-8
        diff = a_ @ a_.T - raw / (norms[:, None] * norms[None, :])
        torch.sqrt((diff * diff).sum() / BATCH**2 + 1e-8).backward()

    def premultiplied() -> None:
        check_finite(True, phi=phi, psi=psi)
        torch.sqrt(kernel_sq_diff_sum(phi, psi * reg.rho(), form="explicit") / BATCH**2 + 1e-8).backward()

    def products() -> None:
        ((a @ a.T - (c * w) @ c.T) ** 2).sum().backward()

    fns = {"as shipped": shipped, "weighted, autograd": composed, "pre-multiplied + input scan (before)": premultiplied,
           "kernel products only": products}
    times: dict[str, list[float]] = {k: [] for k in fns}
    n = 40 if args.quick else 200
    for _ in range(5):
        for key, fn in fns.items():
            for _ in range(5):
                fn()
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            times[key].append((time.perf_counter() - t0) / n)
    emit({"part": "regularizer_call", "batch": BATCH, "d_phi": d_phi, "d_psi": d_psi, "calls_per_rep": n,
          "median_ms": {k: round(1000 * statistics.median(v), 3) for k, v in times.items()}})


#: glibc malloc told to keep freed memory instead of unmapping/trimming it after every step
TUNED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 36)}
#: environment that pins the thread count of this process and of the subprocesses it starts
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")
_STL_STEP = """
import json, statistics, sys
sys.path.insert(0, {bench!r})
import run_performance as rp
split = rp.synthetic_split({modality!r}, 1024)
print(json.dumps(statistics.median(rp.step_times({student!r}, {options!r}, "none", split, None, {steps}))))
"""


def part_allocator(args, emit) -> None:
    """STL step time of each student in a fresh process with glibc's default malloc vs TUNED_MALLOC."""
    configs = [("cnn-small", {"width": 16}, "image"), ("text-cnn", {}, "text"), ("wordllama-bag", {}, "text")]
    base = {k: v for k, v in os.environ.items() if k not in TUNED_MALLOC}
    envs = {"default": base, "tuned": {**base, **TUNED_MALLOC}}
    for student, options, modality in configs:
        code = _STL_STEP.format(bench=str(Path(__file__).parent), modality=modality, student=student,
                                options=options, steps=args.steps)
        got: dict[str, list[float]] = {k: [] for k in envs}
        for r in range(args.reps):
            for key in (("default", "tuned") if r % 2 == 0 else ("tuned", "default")):
                proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=envs[key], capture_output=True, text=True)
                if proc.returncode:
                    emit({"part": "allocator", "student": student, "skipped": proc.stderr[-200:]})
                    break
                got[key].append(json.loads(proc.stdout.strip().splitlines()[-1]))
            else:
                continue
            break
        else:
            med = {k: round(1000 * statistics.median(v), 3) for k, v in got.items()}
            emit({"part": "allocator", "student": student, "options": options, "steps_per_run": args.steps,
                  "reps": args.reps, "median_stl_step_ms": med, "tuned_env": TUNED_MALLOC,
                  "speedup": round(med["default"] / med["tuned"], 3),
                  "runs_ms": {k: [round(1000 * x, 1) for x in v] for k, v in got.items()}})


# ---------------------------------------------------------------------------------------------- parts
#: the overhead rows: (student, options, modality, teachers, (timed steps, runs) in the full suite); many
#: short runs rather than a few long ones: a run has a speed of its own (see OVERHEAD_NOTES)
OVERHEAD_CONFIGS = [("cnn-small", {"width": 16}, "image", ["efficientnet-lite0"], (20, 12)),
                    ("cnn-small", {"width": 32}, "image", ["efficientnet-lite0"], (12, 12)),
                    ("text-cnn", {}, "text", ["mpnet"], (5, 9)), ("text-cnn", {}, "text", ["minilm"], (5, 9)),
                    ("text-cnn", {}, "text", ["wordllama"], (5, 9)),
                    ("text-cnn", {}, "text", ["mpnet", "minilm", "wordllama"], (5, 9)),
                    ("wordllama-bag", {}, "text", ["wordllama"], (12, 12)),
                    ("wordllama-bag", {}, "text", ["mpnet", "minilm", "wordllama"], (12, 12))]


def kernel_products_ms(d_phi: int, d_psi: int, calls: int, reps: int = 5) -> float:
    """Thread-CPU ms of the exact kernel's matmul arithmetic alone (forward + backward, B = 128).

    The two B x B kernel products and their gradients on precomputed normalized features, the
    part any exact explicit implementation must do: the measured-time floor of the regularizer.
    """
    import torch

    from aft.regularizers.kernels import center_normalize

    torch.manual_seed(0)
    a = center_normalize(torch.randn(BATCH, d_phi)).requires_grad_()
    c, w = center_normalize(torch.randn(BATCH, d_psi)), torch.full((d_psi,), 0.25, requires_grad=True)

    def products() -> None:
        ((a @ a.T - (c * w) @ c.T) ** 2).sum().backward()

    times = []
    for _ in range(reps):
        for _ in range(3):
            products()
        t0 = time.thread_time()
        for _ in range(calls):
            products()
        times.append((time.thread_time() - t0) / calls)
    return 1000 * statistics.median(times)


def part_overhead(args, tmp: Path, emit) -> None:
    """AFT / STL step ratio of the real loop, lock-stepped with an A/A control (see benchmarks/overhead.py)."""
    import overhead as ov

    from aft.features import ConcatenatedFeatures, FeatureStore
    from aft.training import TrainConfig, train

    n = 1024
    configs = OVERHEAD_CONFIGS
    if args.configs:
        configs = [configs[int(i)] for i in args.configs.split(",")]
    elif args.quick:
        configs = [configs[0], configs[5], configs[7]]
    splits = {m: synthetic_split(m, n) for m in ("image", "text")}
    stores = {}
    for name, dim in {**DIMS_IMAGE, **DIMS_TEXT}.items():
        # 4x more rows than the training split: lookups go through the id index of a larger store
        ids = splits["image" if name in DIMS_IMAGE else "text"].ids + [f"extra{i}" for i in range(3 * n)]
        stores[name] = FeatureStore.open(write_store(tmp / f"ov-{name}", ids, dim, "float16", name))
    for student, options, modality, teachers, (full_steps, full_runs) in configs:
        feats = ConcatenatedFeatures({t: stores[t] for t in teachers})
        split = splits[modality]
        steps = args.overhead_steps or (max(4, full_steps // 2) if args.quick else full_steps)
        runs = args.overhead_reps or (3 if args.quick else full_runs)
        warmup = 3

        def make_config(method: str, student=student, options=options, feats=feats, steps=steps, warmup=warmup):
            return TrainConfig(dataset="bench", student=student, student_options=options, method=method,
                               teachers=list(feats.column_ranges) if method != "none" else [],
                               batch_size=BATCH, steps=warmup + steps, val_fraction=0.0, test_split=None,
                               device="cpu", progress=False, tensorboard=False, checkpoint_every=0, output=None,
                               seed=0, beta_warmup=0)

        def run_arm(cfg, on_step, feats=feats, split=split):
            return train(cfg, features=feats if cfg.method != "none" else None, train_split=split, on_step=on_step)

        try:
            res = ov.measure(make_config, run_arm, steps, warmup, runs)
            flops = step_flops(student, options, split, feats.dim)
        except Exception as exc:  # noqa: BLE001 - e.g. the wordllama asset missing: report and go on
            emit({"part": "overhead", "student": student, "options": options, "teachers": teachers,
                  "skipped": repr(exc)[:200]})
            continue
        prod_ms = kernel_products_ms(flops["d_phi"], feats.dim, 20 if args.quick else 100)
        stl_cpu = res["median_step_ms"]["stl"]["cpu"]
        time_floor = round(1 + prod_ms / stl_cpu, 4)
        floor = min(flops["flop_ratio"], time_floor)
        checks = {clock: ov.verdict(res[f"aft_{clock}"]["ratio"], res[f"aft_{clock}"]["ci95"], floor)
                  for clock in ("wall", "cpu")}
        if "aa_cpu" in res:
            checks["aa"] = ov.aa_verdict(res["aa_cpu"]["ci95"])
        # issue 21's target: within 3 % of the FLOP floor (judged on the wall ratio, only when it is a result)
        # judged on thread CPU time with one thread (all the step's work, none of the waiting for a core
        # that other processes cause), else on wall time
        clock = "cpu" if args.threads == 1 else "wall"
        checks["target"] = ("n/a: no result" if checks[clock] != "ok" else
                            "met" if res[f"aft_{clock}"]["ratio"] <= 1.03 * flops["flop_ratio"] else "missed")
        checks["judged_on"] = clock
        emit({"part": "overhead", "version": 2, "student": student, "options": options, "teachers": teachers,
              "d_psi": feats.dim, "batch": BATCH, "store_dtype": "float16", "beta_warmup": 0, **res, **flops,
              "kernel_products_ms": round(prod_ms, 3), "time_floor": time_floor, "floor": floor, "checks": checks})


def part_store_vs_ram(args, tmp: Path, emit) -> None:
    from aft.features import FeatureStore, InMemoryFeatures

    n, dim = 1024, 1280
    split = synthetic_split("image", n, seed=1)
    ids = split.ids + [f"extra{i}" for i in range(39 * n)]  # store 40x the training set
    f16 = FeatureStore.open(write_store(tmp / "sr16", ids, dim, "float16", "efficientnet-lite0"))
    f32 = FeatureStore.open(write_store(tmp / "sr32", ids, dim, "float32", "efficientnet-lite0"))
    ram = InMemoryFeatures(ids, np.asarray(f32.array).reshape(len(ids), dim).copy())
    ram.column_ranges = {"efficientnet-lite0": (0, dim)}  # type: ignore[attr-defined]
    for name, store in (("float16", f16), ("float32", f32)):
        meds = {"ram": [], name: []}
        ratios = []
        for r in range(args.reps):
            got = {}
            for key in (("ram", name) if r % 2 == 0 else (name, "ram")):
                src = ram if key == "ram" else store
                got[key] = statistics.median(step_times("cnn-small", {"width": 16}, "aft", split, src, args.steps))
                meds[key].append(got[key])
            ratios.append(got["ram"] / got[name])  # throughput ratio store / RAM
        res = {"median_step_ms": {k: round(1000 * statistics.median(v), 3) for k, v in meds.items()},
               "throughput_ratio_store_vs_ram": round(statistics.median(ratios), 4),
               "pair_ratios": [round(x, 4) for x in ratios]}
        # the read alone, same ids, interleaved
        rng = np.random.default_rng(0)
        batches = [[split.ids[i] for i in rng.choice(n, BATCH, replace=False)] for _ in range(100)]
        rd = {"ram": [], name: []}
        for _ in range(5):
            for key, src in (("ram", ram), (name, store)):
                t0 = time.perf_counter()
                for b in batches:
                    src.get(b)
                rd[key].append(len(batches) / (time.perf_counter() - t0))
        emit({"part": "store_vs_ram", "store_dtype": name, "store_rows": len(ids), "dim": dim, "batch": BATCH,
              "student": "cnn-small", "options": {"width": 16}, **res,
              "read_batches_per_s": {k: round(statistics.median(v), 1) for k, v in rd.items()},
              "read_ratio": round(statistics.median(rd[name]) / statistics.median(rd["ram"]), 4)})


def _rss() -> dict:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key = line.split(":")[0]
        if key in ("VmRSS", "RssAnon", "RssFile"):
            out[key] = int(line.split()[1]) / 1024
    return out


def part_rss(args, tmp: Path, emit) -> None:
    from aft.features import FeatureStore

    dim = 1280
    gib = 0.25 if args.quick else 1.0
    rows = int(gib * 2**30 / (dim * 2))
    ids = [f"r{i:08d}" for i in range(rows)]
    path = write_store(tmp / "rss", ids, dim, "float16", "rss")
    store = FeatureStore.open(path, check_finite=False)
    rng = np.random.default_rng(0)
    nb = 200 if args.quick else 600
    before = _rss()
    t0 = time.perf_counter()
    for _ in range(nb):
        store.get([ids[i] for i in rng.choice(rows, BATCH, replace=False)])
    dt = time.perf_counter() - t0
    after = _rss()
    emit({"part": "rss", "store_mib": round(rows * dim * 2 / 2**20, 1), "rows": rows, "dim": dim,
          "batches": nb, "batch": BATCH, "rows_read": nb * BATCH, "batches_per_s": round(nb / dt, 1),
          "rss_before_mib": {k: round(v, 1) for k, v in before.items()},
          "rss_after_mib": {k: round(v, 1) for k, v in after.items()},
          "anon_growth_mib": round(after["RssAnon"] - before["RssAnon"], 1),
          "file_growth_mib": round(after["RssFile"] - before["RssFile"], 1)})
    store.close()
    del store
    shutil.rmtree(path)


def _gather_worker(rank: int, port: int, dims: list[int], iters: int, out: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    res = {}
    for d in dims:
        x = torch.randn(BATCH // 2, d)
        parts = [torch.empty_like(x) for _ in range(2)]
        for _ in range(5):
            dist.all_gather(parts, x)
        ts = []
        for _ in range(iters):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_gather(parts, x)
            torch.cat(parts)
            ts.append(time.perf_counter() - t0)
        res[d] = statistics.median(ts)
    if rank == 0:
        Path(out).write_text(json.dumps(res))
    dist.destroy_process_group()


def part_gather(args, tmp: Path, emit, step_ms: dict) -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dims = [128, 128 + 256, 128 + 768, 128 + 1280, 128 + 1408]
    out = tmp / "gather.json"
    mp.spawn(_gather_worker, args=(port, dims, 20 if args.quick else 60, str(out)), nprocs=2, join=True)
    res = json.loads(out.read_text())
    for d in dims:
        ms = 1000 * res[str(d)]
        emit({"part": "gather", "world_size": 2, "backend": "gloo", "global_batch": BATCH, "dim": d,
              "bytes_per_rank": BATCH // 2 * d * 4, "median_ms": round(ms, 3),
              "what": "phi (d_phi=128, what the loop gathers)" if d == 128 else "phi + psi (d_phi + d_psi)",
              "vs_step": {k: round(ms / v, 4) for k, v in step_ms.items()}})


def part_reused(emit) -> None:
    for name in ("extraction", "kernel_forms"):
        f = RESULTS / f"{name}.jsonl"
        if f.exists():
            lines = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
            emit({"part": f"reused_{name}", "source": f"benchmarks/results/{name}.jsonl", "records": lines[-14:]})


def _cold_cache(tmp: Path, name: str) -> Path:
    """A fresh asset cache that links the fetched assets but holds no extracted features."""
    from aft.assets.core import resolve_cache_dir

    src, dst = resolve_cache_dir(), tmp / name
    dst.mkdir()
    for entry in src.iterdir() if src.is_dir() else []:
        if entry.name != "features":
            (dst / entry.name).symlink_to(entry.resolve())
    return dst


def _timed(cmd: list[str]) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    rec = {"wall_s": round(time.perf_counter() - t0, 1), "rc": proc.returncode,
           "command": " ".join(cmd[2:])}
    if proc.returncode:
        rec["stderr_tail"] = proc.stderr[-400:]
    return rec


def part_end_to_end(args, tmp: Path, emit) -> None:
    """Wall time of the demo (cold: features extracted, every run trained; then warm) and the quick suite (cold)."""
    py = [sys.executable, "-m", "aft"]
    demo_cache = _cold_cache(tmp, "demo-cache")
    demo_cmd = [*py, "demo", "--out", str(tmp / "demo"), "--cache-dir", str(demo_cache)]
    emit({"part": "end_to_end", "what": "aft demo (cold: extract features, train every run)", **_timed(demo_cmd)})
    emit({"part": "end_to_end", "what": "aft demo (warm: second run, everything reused)", **_timed(demo_cmd)})
    quick_cache = _cold_cache(tmp, "quick-cache")
    emit({"part": "end_to_end", "what": "aft compare fashion-mnist --quick (cold: extract features, train every run)",
          **_timed([*py, "compare", "fashion-mnist", "--quick", "--no-progress", "--cache-dir", str(quick_cache),
                    "--records", str(tmp / "quick" / "records.jsonl"), "--report", str(tmp / "quick" / "report")])})


# ---------------------------------------------------------------------------------------------- report
SCALING = """## Scaling out (worked on paper)

ImageNet-1k train (N = 1.28M images) with two ViT-G-class teachers (d_psi = 1536 + 1280 = 2816),
a ResNet-50 student (d_phi = 2048), global batch B = 1024 on 8 GPUs (b = 128 per GPU).
Assumptions are stated; the arithmetic is exact.

**Store size.** N x d_psi x 2 bytes (float16) = 1.28e6 x 2816 x 2 = **7.21 GB** (6.7 GiB); float32
doubles it. Ids: ~20 MB of JSON. The store is memory-mapped, so a node needs the 7.2 GB in page
cache (or on fast local disk), not in process memory; ranks on one node share one cached copy.

**Extraction.** Forward FLOPs assumed (2 x multiply-adds, 224 px, from the model papers/timm tables):
ViT-g/14 ~ 267 GFLOPs per image (1536 dims, e.g. DINOv2 ViT-g/14 at 224 px), ViT-G/14 ~ 1000 GFLOPs
per image (used here for the second teacher; taking its 1280-dim head as the second teacher is an
upper bound on cost). Total = 1.28e6 x (267 + 1000) GFLOPs = **1.62e18 FLOPs** per pass.
At 40 % of dense bf16 peak (A100 312 TFLOP/s -> 125 TFLOP/s; H100 SXM 989 TFLOP/s -> 396 TFLOP/s):
**3.6 A100-hours** or **1.1 H100-hours** (8 GPUs: ~27 min / ~9 min of wall time), plus JPEG decode,
which at ~1000-2000 images/s per 16-core node is a comparable ~10-20 min per node: data loading,
not FLOPs, is the usual bottleneck. Extraction is one pass over the data, done once per teacher
and reused by every training run, sweep point and seed. Augmented views multiply it by K.

**Regularizer overhead in training** (per step, global batch, per GPU each rank computes its rows
against all B columns, i.e. 1/8 of the kernel):
- explicit form: B^2 (d_phi + d_psi) = 1024^2 x 4864 = 5.1e9 multiply-adds forward, ~3x that
  forward+backward = **~3.1e10 FLOPs** for the global batch (~3.8e9 per GPU);
- gram form: B (d_phi^2 + d_psi^2 + d_phi d_psi) = 1024 x (4.19e6 + 7.93e6 + 5.77e6) = 1.83e10
  multiply-adds: larger here (d > B per rank), so `auto` picks explicit;
- student step: ResNet-50 at 224 px is ~4.1 G multiply-adds per image forward (the usual
  "4.1 GFLOPs" counts MACs), forward+backward ~3 x 4.1 = 12.3 GMACs per image, x 1024 =
  **1.26e13 MACs** per global step.
- ratio: 1.5e10 MACs (explicit, fwd+bwd, ~3 x 5.1e9) / 1.26e13 = **0.12 %** of the student step;
  even at B = 8192 (1.0e12) it stays under 10 %. The kernel is matmul-shaped (GPU-friendly).

**Communication per step.** The loop gathers the student features with gradient: B x d_phi x 4
bytes = 1024 x 2048 x 4 = **8.4 MB** gathered per step (1 MB per rank), and the same volume again
in the backward reduce; teacher features are read locally by id (no traffic). If psi were
gathered too: B x (d_phi + d_psi) x 4 = **19.9 MB** per step. ResNet-50's gradient all-reduce is
25.6M params x 4 bytes = 102 MB per step, so the regularizer adds ~8 % (~20 % with psi) to the
traffic DDP already does, on an 8-GPU NVLink node well under a millisecond at ~200 GB/s.

**Per-step feature lookup.** Each rank reads B x d_psi x 2 bytes = 1024 x 2816 x 2 = 5.8 MB of
float16 per step from the page cache (the loop reads the global batch's psi on every rank):
at ~5 GB/s for random 5.6 KB rows that is ~1 ms, against a ResNet-50 step of ~100+ ms.

**What keeps each part linear.**
- Extraction streams: fixed-size batches written in place into a preallocated file; memory does
  not grow with N (measured: 0 % RSS growth from 300 to 3,000 images, `extraction.md`), and it
  resumes from the last checkpoint after a failure.
- Sharding: `--nproc N` / torchrun splits the batches over ranks, each rank writes its own shard
  with its own progress, so extraction scales with the number of GPUs/nodes and a lost rank redoes
  only its own unfinished batches; the manifest lists shards with their sha256 and row ranges.
- Memory-mapped store: training reads only the rows of the current batch by id; the store never
  needs to fit in process memory (measured below: anonymous RSS does not grow while reading a
  1 GiB store at random; only the page cache holds touched pages).
- Per-step cost is O(B^2 (d_phi + d_psi)) or O(B (d_phi + d_psi)^2), independent of N; the
  gather is O(B d_phi) per step.
"""


def _ci(x: dict) -> str:
    return f"{x['ratio']:.4f} [{x['ci95'][0]:.4f}, {x['ci95'][1]:.4f}]"


def _result_or_defect(x: dict, check: str) -> str:
    """The ratio in bold when it passed its checks; otherwise the defect, with the number struck out."""
    return f"**{_ci(x)}**" if check == "ok" else f"~~{_ci(x)}~~ {check}"


def render_overhead(ov: list[dict]) -> list[str]:
    """The lock-step overhead table (records of version 2; older records are listed as such)."""
    r0 = next((r for r in ov if "runs" in r), None)
    L = []
    if r0 is not None:
        L += [f"The real training loop (`aft.training.train`, CPU, fp32, {r0.get('torch_threads', '?')} torch thread(s) "
              "pinned), batch 128, `beta_warmup: 0` (constant beta: every AFT step is a steady-state step), teacher "
              "features looked up per step by sample id from float16 FeatureStores (several teachers: their id-aligned "
              "concatenation). Step = forward, CE, feature lookup, regularizer (metrics only on logging steps), "
              f"backward, Adam. STL, AFT and a second STL arm (A/A control) run lock-stepped, {r0['runs']} runs per "
              f"row (arm order rotated), {r0['warmup_steps']} warm-up steps dropped per arm, then the timed steps "
              "(column *pairs*). Ratios: median of the per-pair ratios (step i of one arm / step i of STL, the same "
              "batch) with its 95 % two-level bootstrap interval (runs, then pairs), in thread CPU time (the "
              "judged clock: with one thread it holds all of a step's work and none of the waiting for a core that "
              "other processes cause) and wall time.",
              "",
              "| student | teachers | d_psi | FLOP floor | time floor | STL ms/step (CPU / wall) | "
              "AFT ms/step (CPU / wall) | AFT / STL, CPU [95 % CI] | AFT / STL, wall [95 % CI] | "
              "A/A STL / STL, CPU [95 % CI] | within 3 % of FLOP floor | pairs | step CV (CPU / wall) | "
              "load avg (1 min) |",
              "|---|---|---:|---:|---:|---:|---:|---|---|---|---|---:|---:|---|"]
    for r in ov:
        name = r["student"] + (f" (width {r['options']['width']})" if r.get("options", {}).get("width") else "")
        teachers = " + ".join(r.get("teachers", []))
        if "skipped" in r:
            L.append(f"| {name} | {teachers} | skipped: {r['skipped']} | | | | | | | | | | | |")
            continue
        if r.get("version", 1) < 2:
            L.append(f"| {name} | {teachers} | {r['d_psi']} | {r.get('flop_ratio', '')} | | | | old protocol (not "
                     "lock-stepped, no interval): re-run `--only overhead` | | | | | | |")
            continue
        ms, ck = r["median_step_ms"], r["checks"]
        aa = r.get("aa_cpu") or r.get("aa_wall")
        aa_txt = "" if aa is None else (_ci(aa) if ck.get("aa") == "ok" else f"{_ci(aa)} **{ck['aa']}**")
        cv = r["step_cv"]["stl"]
        L.append(f"| {name} | {teachers} | {r['d_psi']} | {r['flop_ratio']} | {r['time_floor']} | "
                 f"{ms['stl']['cpu']} / {ms['stl']['wall']} | {ms['aft']['cpu']} / {ms['aft']['wall']} | "
                 f"{_result_or_defect(r['aft_cpu'], ck['cpu'])} | {_result_or_defect(r['aft_wall'], ck['wall'])} | "
                 f"{aa_txt} | {ck.get('target', '')} | {r['runs'] * r['steps_per_run']} | {cv['cpu']} / {cv['wall']} | "
                 f"{r['loadavg_1min'][0]} -> {r['loadavg_1min'][1]} |")
    L += ["", OVERHEAD_NOTES, ""]
    return L


GPU_NOTES = """Host syncs to watch on a GPU (read from the code, not yet measured): the kernel methods'
NaN/Inf check reads the scalar loss back every step (`check_finite_output`), and while the gate of
`beta_warmup: auto` is closed the loop reads the task loss back every step (STL's too, since its
beta is positive); each read makes the host wait for the device before it queues the next step.
The benchmark uses `beta_warmup: 0`, so only the first is in its AFT arm; a ratio well above
the FLOP floor at batch 128 that shrinks at 512 points at it."""


def render(records: list[dict], mach: str, run_id: str, args: argparse.Namespace, wall_s: float) -> str:
    quick = args.quick
    flags = "".join(f" {f}" for f, on in (("--quick", quick), ("--end-to-end", args.end_to_end),
                                          ("--default-malloc", args.default_malloc)) if on)
    malloc = ("glibc's default malloc settings" if args.default_malloc else
              "glibc malloc told to keep freed memory (" + ", ".join(f"`{k}={v}`" for k, v in TUNED_MALLOC.items()) +
              "; the script re-runs itself with them, `--default-malloc` to not), the same for STL and AFT")
    L = ["# Performance", "",
         f"Generated by `.venv/bin/python benchmarks/run_performance.py{flags}` (raw records: "
         f"`benchmarks/results/performance.jsonl`, run id `{run_id}`)"
         + (f"; merged with `--render {run_id.replace(', ', ',')}`: each part comes from the last of these runs that "
            "measured it" if ", " in run_id else "") + ".", "",
         f"Machine: {mach}. Shared VM: every ratio is measured inside one run, runs interleaved "
         f"(order flipped each repetition), medians of repeats; {malloc}. No GPU was used.", ""]
    al = [r for r in records if r["part"] == "allocator"]
    if al:
        L += ["## CPU allocator: STL step with glibc's default malloc vs tuned", "",
              "Each student's STL step (batch 128) in fresh processes, default malloc vs the environment "
              f"{', '.join(f'`{k}={v}`' for k, v in TUNED_MALLOC.items())}, interleaved, median of runs.", "",
              "| student | default ms/step | tuned ms/step | speedup | runs (ms) |", "|---|---:|---:|---:|---|"]
        for r in al:
            name = r["student"] + (f" (width {r['options']['width']})" if r.get("options", {}).get("width") else "")
            if "skipped" in r:
                L.append(f"| {name} | skipped | | | |")
                continue
            m = r["median_stl_step_ms"]
            L.append(f"| {name} | {m['default']} | {m['tuned']} | **{r['speedup']}** | {r['runs_ms']} |")
        L += ["", ALLOCATOR_NOTES, ""]
    rc = [r for r in records if r["part"] == "regularizer_call"]
    ov = [r for r in records if r["part"] == "overhead"]
    if ov or rc:
        L += ["## Regularizer overhead: AFT step / STL step (target: within 3 % of the FLOP floor)", ""]
    for r in rc:
        L += [f"One AFT call, forward + backward, B = {r['batch']}, d_phi = {r['d_phi']}, d_psi = {r['d_psi']}, "
              f"explicit form, median of 5 x {r['calls_per_rep']} calls:", "",
              "| implementation | ms per call |", "|---|---:|"]
        L += [f"| {k} | {v} |" for k, v in r["median_ms"].items()]
        L += ["", CALL_NOTES, ""]
    if ov:
        L += render_overhead(ov)
    sr = [r for r in records if r["part"] == "store_vs_ram"]
    if sr:
        L += ["## Training from a memory-mapped store vs in RAM (target >= 0.9)", "",
              "AFT steps of cnn-small (width 16), batch 128, d_psi 1280; the store holds 40x the training set's "
              "rows. Throughput ratio = RAM step time / store step time (interleaved pairs). The read alone: "
              "`get()` of 128 random ids, batches/s.", "",
              "| store dtype | rows | RAM ms/step | store ms/step | step throughput store/RAM | read batches/s "
              "RAM | read batches/s store | read ratio |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in sr:
            d = r["store_dtype"]
            L.append(f"| {d} | {r['store_rows']} | {r['median_step_ms']['ram']} | {r['median_step_ms'][d]} | "
                     f"**{r['throughput_ratio_store_vs_ram']}** | {r['read_batches_per_s']['ram']} | "
                     f"{r['read_batches_per_s'][d]} | {r['read_ratio']} |")
        L += ["", "The read itself is slower than RAM (float16 needs a half -> float conversion; a gather from a "
              "memory map costs page lookups), but it is well under a millisecond per batch, so the step "
              "throughput stays within a few percent. `FeatureStore.get` gathers the rows with numpy and converts "
              "float16 to float32 with torch (numpy's half conversion is ~20x slower; see "
              "benchmarks/results/store_reads.md for the read alone against the same code over RAM).", ""]
    rs = [r for r in records if r["part"] == "rss"]
    for r in rs:
        L += ["## Resident memory with a store much larger than the working set", "",
              f"{r['batches']} random batches of {r['batch']} ids ({r['rows_read']} rows, "
              f"{r['rows_read'] * r['dim'] * 2 / 2**20:.0f} MiB of rows) from a {r['store_mib']} MiB float16 store "
              f"({r['rows']} x {r['dim']}) in /tmp (deleted afterwards), {r['batches_per_s']} batches/s (cold pages).", "",
              "| | before MiB | after MiB | growth MiB |", "|---|---:|---:|---:|",
              f"| anonymous (process memory) | {r['rss_before_mib'].get('RssAnon')} | {r['rss_after_mib'].get('RssAnon')} "
              f"| **{r['anon_growth_mib']}** |",
              f"| file-backed (mapped store pages, reclaimable) | {r['rss_before_mib'].get('RssFile')} | "
              f"{r['rss_after_mib'].get('RssFile')} | {r['file_growth_mib']} |", "",
              "Process memory does not grow with the store; the mapped pages that were touched count as "
              "file-backed RSS, which the kernel reclaims under pressure and shares between processes.", ""]
    ga = [r for r in records if r["part"] == "gather"]
    if ga:
        steps = ga[0]["vs_step"]
        L += ["## Data-parallel gather per step (2 gloo processes, CPU)", "",
              "`all_gather` of each rank's B/2 x d float32 block into the global B x d batch (B = 128), median "
              "over iterations; compared with the single-process AFT step times measured above.", "",
              "| d | what | bytes per rank | ms | " + " | ".join(f"/ step of {k}" for k in steps) + " |",
              "|---:|---|---:|---:|" + "---:|" * len(steps)]
        for r in ga:
            L.append(f"| {r['dim']} | {r['what']} | {r['bytes_per_rank']} | {r['median_ms']} | " +
                     " | ".join(f"{v:.3f}" for v in r["vs_step"].values()) + " |")
        L += ["", "The loop gathers only phi (with gradient); psi is read locally by every rank.", ""]
    for r in records:
        if r["part"] == "reused_extraction":
            latest: dict = {}
            for x in r["records"]:  # the newest record of each teacher and kind
                latest[(x.get("part"), x.get("teacher"))] = x
            thr = [x for (kind, _), x in latest.items() if kind == "throughput"]
            mem = [x for (kind, _), x in latest.items() if kind == "memory"]
            L += ["## Extraction", "", "From `benchmarks/results/extraction.md` (`benchmarks/extraction.py`; re-run it "
                  "to refresh), newest record per teacher. Throughput ratio = extractor items/s / bare "
                  "`teacher.encode` items/s on the same batches (target >= 0.95); encode share = the part of the "
                  "extractor's time spent inside `teacher.encode`.", "",
                  "| teacher | machine | n | extractor items/s | bare items/s | ratio | encode share |",
                  "|---|---|---:|---:|---:|---:|---:|"]
            for x in thr:
                L.append(f"| {x['teacher']} | {x['machine']} | {x['n']} | {x.get('extract_items_per_s', '')} | "
                         f"{x.get('bare_items_per_s', '')} | **{x['ratio']}** | {x.get('encode_share_of_extract', '')} |")
            for x in mem:
                L += ["", f"Peak RSS of extraction, {x['teacher']}: {x['small']['n']} images "
                      f"{x['small']['peak_rss_mib']} MiB -> {x['large']['n']} images {x['large']['peak_rss_mib']} MiB "
                      f"(**{x['growth_pct']} %** growth; rows stream into a preallocated memory-mapped file)."]
            L.append("")
        if r["part"] == "reused_kernel_forms":
            L += ["## Kernel forms across B and d_psi", "", "From `benchmarks/results/kernel_forms.md` "
                  "(`benchmarks/kernel_forms.py`), forward+backward ms, d_phi = 128.", "",
                  "| B | d_psi | explicit ms | gram ms | auto picks | auto fastest |", "|---:|---:|---:|---:|---|---|"]
            for x in r["records"]:
                L.append(f"| {x['batch']} | {x['d_psi']} | {x['explicit_ms']:.2f} | {x['gram_ms']:.2f} | "
                         f"{x['auto_choice']} | {x['auto_is_fastest']} |")
            L.append("")
    L += ["## End to end", ""]
    e2e = [r for r in records if r["part"] == "end_to_end"]
    if e2e:
        L += ["Wall time of each command in a fresh temporary folder (`<tmp>`), from an asset cache that holds "
              "the fetched assets (datasets, models) but no extracted features:", ""]
    for r in e2e:
        status = "" if r["rc"] == 0 else f" (FAILED, exit code {r['rc']})"
        command = re.sub(r"/tmp/tmp[^/\s]+", "<tmp>", r["command"])
        L.append(f"- {r['what']}: **{r['wall_s']} s**{status} (`{command}`)")
    if not e2e:
        L.append("- `aft demo` and the quick suite: not timed in this run (pass `--end-to-end`).")
    L.append(("- These runs together" if ", " in run_id else "- This suite") + f": {wall_s:.0f} s wall time"
             + (" (--quick)." if quick else "."))
    L += ["", *render_gpu(gpu_records()), SCALING]
    return "\n".join(L) + "\n"


GPU_RECORDS = RESULTS / "gpu.jsonl"


def gpu_records(path: Path | None = None) -> list[dict]:
    """The records of the newest non-smoke run of benchmarks/gpu_check.py (empty: never run on a GPU)."""
    path = path or GPU_RECORDS
    if not path.exists():
        return []
    recs = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    recs = [r for r in recs if not r.get("smoke")]
    return [r for r in recs if r["run_id"] == recs[-1]["run_id"]] if recs else []


def render_gpu(recs: list[dict]) -> list[str]:
    """Section "GPU" from gpu_check.py's records; says so when no GPU run exists."""
    L = ["## GPU: ViT-S student with a 1,536-dim teacher, DINOv2-B-sized extraction (bf16)", ""]
    if not recs:
        return L + ["Not run yet: no GPU was lent to this project's tasks so far. `benchmarks/gpu_check.py` "
                    "measures it on a CUDA machine and appends its records to `benchmarks/results/gpu.jsonl`, "
                    "which this section renders (`--smoke` runs it with tiny sizes on any device; the test "
                    "suite does).", "", GPU_NOTES, ""]
    L += [f"Machine: {recs[0]['machine']}, run id `{recs[0]['run_id']}` ({recs[0]['date']}). "
          "`python benchmarks/gpu_check.py`.", ""]
    st = [r for r in recs if r["part"] == "gpu_step_ratio"]
    if st:
        L += ["The real loop with a ViT-S/16-sized `transformers.ViTModel` (random init) as `student_module`, bf16 "
              "autocast, `beta_warmup: 0`, random 1,536-dim teacher features in RAM; STL, AFT and A/A STL "
              "lock-stepped (CUDA synchronized before each clock read), median of per-pair ratios, 95 % bootstrap "
              "interval.", "",
              "| batch | FLOP floor | STL ms/step | AFT ms/step | AFT / STL [95 % CI] | A/A [95 % CI] | pairs | "
              "peak GiB |", "|---:|---:|---:|---:|---|---|---:|---:|"]
        for r in st:
            ms = r["median_step_ms"]
            aa = r.get("aa_wall")
            L.append(f"| {r['batch']} | {r['flop_ratio']} | {ms['stl']['wall']} | {ms['aft']['wall']} | "
                     f"{_result_or_defect(r['aft_wall'], r['checks']['wall'])} | "
                     f"{'' if aa is None else _ci(aa) + ('' if r['checks'].get('aa') == 'ok' else ' ' + r['checks']['aa'])}"
                     f" | {r['runs'] * r['steps_per_run']} | {r.get('peak_mem_gib')} |")
        L.append("")
    for r in (r for r in recs if r["part"] == "gpu_extraction"):
        ips = r["images_per_s"]
        L += [f"Extraction, {r['teacher']}, batch {r['batch']}, forward only: **{ips['bf16']} images/s** with bf16 "
              f"autocast vs {ips['fp32']} in fp32 (TF32 matmuls allowed): x{r['bf16_speedup']}; peak "
              f"{r.get('peak_mem_gib')} GiB. The bare forward pass, not the project's extractor.", ""]
    return L + [GPU_NOTES, ""]


OVERHEAD_NOTES = """How to read it. *FLOP floor* = 1 + (forward + backward matmul/conv FLOPs of the AFT regularizer)
/ (FLOPs of the student's STL step), both counted by torch's `FlopCounterMode` at batch 128: the
ratio AFT / STL would have if the regularizer ran at the student's FLOP rate. *Time floor* = 1 +
(thread-CPU time of the exact kernel's two B x B products and their gradients alone, measured in
this run) / (STL CPU ms per step): the ratio if the regularizer did nothing but that arithmetic. A
ratio is printed in bold as a result only if it passed every check; otherwise it is struck out
and marked a measurement defect: below 1 (AFT does strictly more work per step than STL), its
whole interval below min(FLOP floor, time floor), or an interval wider than +-0.02 (too noisy to
quote). The A/A column must contain 1; if it does not, the arm order biased the timing. *Step CV*
is the spread of single STL steps (wall): the load the machine was under, with the 1-minute load
average before and after the row (2 CPUs: a load above 2 means other processes waited for a core
and took turns with this one). Target (issue 21): AFT / STL within 3 % of the FLOP floor.

Why the old numbers (one 30-step run per arm, 5 whole-run pairs, 2 threads) could read below 1.
Measured on this machine while other agents loaded it (load 4-6): (1) two torch threads on 2
shared vCPUs: every parallel op waits for its slower thread, so any other process on either core
stalls the whole step; single steps varied by 15-30 % (CV). Now one thread, pinned (also
`OMP_NUM_THREADS`/`MKL_NUM_THREADS` for subprocesses), and the thread's CPU time recorded beside
the wall time. (2) A run has a speed of its own: in lock-step runs of STL against an identical
STL arm (same process, same seed and batches, interleaved step by step, 30-60 pairs per run),
the per-run median A/A ratio ranged from 0.81 to 1.11 in both wall and CPU time, while the
per-step noise alone predicts about +-2 %. The likely cause is the allocator state: with freed
memory kept (the tuned malloc), each arm reuses the same buffer addresses every step, so a bad
placement (cache-set or 4K aliasing between its tensors) lasts the whole run. Five whole-run
pairs cannot resolve a 1-8 % effect against that; the old per-pair spreads (0.95-1.47, 0.85-0.97)
are this effect, and the median of 5 ratios lands below 1 by chance. Now every row is many
short runs, each a fresh set of allocations, and the interval resamples runs (not only steps),
so it carries the run-to-run spread. (3) Order and warm-up: the old pairs ran STL first in 3 of
5 repetitions and dropped only 3 steps, and the first run of a configuration in a process is
slow as a whole (one-time kernel/primitive selection for new shapes, allocator growth): in 12-run
A/A checks the first run's STL arm was 12-16 % slower than its twin (CPU A/A 0.84 and 0.88)
while the other 11 runs stayed within 0.96-1.03, and that first run's AFT / STL read 0.95-0.98.
That is how a ratio below 1 comes about. Now one whole lock-step run is discarded before the
timed ones, every arm drops its own warm-up steps in every run, the order rotates (each arm
first equally often), and the A/A arm shows whether position still matters. (Wall time under
a load of 6-7 kept a per-run spread of several percent, CPU time did not: CPU time is judged.)
(4) Work per step: both arms are the real loop with the same seed, batches and logging schedule;
the `none` method's regularizer is a constant zero, so STL does nothing AFT skips. The lead's
beta warm-up (`beta_warmup: auto`) computes the regularizer at beta 0 and adds a host read of the
task loss per step while its gate is closed, so both arms use `beta_warmup: 0` (constant beta):
every AFT step is a steady-state step.

Where the time goes (item 2; `torch.profiler`, cnn-small width 16, d_psi 1280, one thread): one
AFT call forward + backward is ~1.9 ms of thread CPU time, of which ~70 % is the B x B matmuls
(`aten::mm`/`addmm`); the feature lookup by id (128 ids, float16 -> float32) is ~0.09 ms; the
rest is the B x d_psi element-wise work of centering and of the weight gradient. The regularizer
runs at ~49 GFLOP/s against the cnn-small width-16 step's ~33 GFLOP/s. But the AFT step costs
more than STL + one call: in full run 20261201-222443-95aad7 (in the records), AFT - STL was 3.4 ms of CPU per step for
width 16 and 4.6 ms for width 32, against ~2.0 ms for the call plus the lookup in both (same
d_phi = 128, d_psi = 1280). The remainder grows with the student (1.4 -> 2.6 ms), which points at
the memory hierarchy rather than at the regularizer's own work: the call runs between the
student's forward and backward and touches ~2-3 MB (Psi in float32, its centered copy, the
weighted copy, the saved tensors), about the size of this core's 4 MB L2, so the student's
backward re-reads activations it would otherwise find in cache (an inference from these numbers,
not a measurement of cache misses). Width 32 lands at its target's edge for this reason; moving
the call (e.g. after the backward) is not possible, since its gradient joins the student's
backward, and a smaller footprint would need the weighted copy of Psi saved instead of Psi,
which divides by rho in the backward (not exact when rho underflows). For the embedding
bag (`wordllama-bag`) the FLOP floor is not a bound: its step is the embedding lookup and the
update of an 8.3M-parameter table (memory traffic, not FLOPs), so the time floor is the one that
applies (the "within 3 %" column is met there trivially; compare its ratio with the time floor). Options that lower the floor, with what they cost: (a) fewer teacher dims: the kernel
costs ~6 B^2 (d_phi + d_psi) FLOPs, so a single teacher instead of the 1408-dim concatenation
cuts the regularizer's FLOPs by 30-75 % (mpnet 768, wordllama 256); on SpamAssassin n = 50
(docs/RESULTS.md, AFT on wordllama-bag, 3 seeds) mpnet alone reached 83.82 +- 1.04 % against the
concatenation's 83.79 +- 1.05 % (no cost), wordllama alone 82.35 +- 2.11 % (-1.4 points, within
the seeds' spread); (b) a smaller batch: the kernel is O(B^2) against the student's O(B), so
halving B halves the floor's excess (1 + x -> 1 + x / 2); its accuracy cost was not measured
here (the batch also changes the student's optimization, so it is a tuning choice, not a free
speed-up); (c) `kernel_form: gram` only pays when B exceeds the feature dims (see "Kernel forms"),
not at B = 128."""


ALLOCATOR_NOTES = """Why: with set_to_none gradients, every step frees and re-allocates the same large buffers
(the 8.3M-parameter embedding's gradient is 33 MB). glibc serves allocations above its mmap
threshold (at most 32 MB when adapting) with fresh mappings and trims freed heap memory back to
the system, so such buffers are page-faulted in again on every step: time that swings from step
to step and between runs. Keeping freed memory (the two variables above, or a caching allocator
such as jemalloc or tcmalloc via `LD_PRELOAD`, as PyTorch's CPU performance guide suggests)
removes that cost; the process keeps its peak memory instead of returning it. aft does not change
the allocator of your process; set the variables in the shell that runs `aft train` / `aft
compare` on CPU. The overhead ratios below are measured with them so that page faults, which hit
STL and AFT alike, do not swamp the regularizer's few milliseconds."""

CALL_NOTES = """What was profiled and fixed. Profiling the AFT step showed the regularizer's time going mostly
to element-wise work, not to the kernel products: autograd through the centering and row
normalization of the B x d_psi matrix Psi * rho, and the NaN/Inf scan of both inputs on every call.
Now (1) AFT hands rho to the kernel instead of multiplying Psi: Psi is centered without autograd
(centering commutes with a column scaling), the row norms are the kernel's diagonal, and the
normalization divides the B x B kernel instead of the B x d_psi features (same value and
gradients, tested against the pre-multiplied form in float64, all row blocks); (2) for the full
batch this is one autograd node with a hand-written backward (checked by gradcheck), so far fewer
small ops are dispatched per step; (3) the NaN/Inf
check reads the scalar loss, which every NaN/Inf input reaches through the column centering
(tested for NaN, +Inf and -Inf in either input, every kernel method and form); (4) a single
teacher's features are returned without a second copy. The loop computes the regularizer's
metrics (host reads) only on logging steps, uses the cheaper exact kernel form (`auto`) and
converts float16 features once per batch."""


KEEP_BEGIN = re.compile(r"^<!-- BEGIN kept: (?P<name>[\w.-]+) -->$")


def kept_sections(old: str) -> list[str]:
    """Blocks of the current page that this generator does not own, verbatim, in page order.

    Another script (or engineer) owns a block by fencing it with ``<!-- BEGIN kept: NAME -->`` and
    ``<!-- END kept: NAME -->`` lines; a regenerated page carries every such block over unchanged
    (before "Scaling out"). An unterminated block is kept to the end of the page.
    """
    out, lines, i = [], old.splitlines(), 0
    while i < len(lines):
        m = KEEP_BEGIN.match(lines[i].strip())
        if not m:
            i += 1
            continue
        end = f"<!-- END kept: {m['name']} -->"
        j = next((k for k in range(i + 1, len(lines)) if lines[k].strip() == end), len(lines) - 1)
        out.append("\n".join(lines[i : j + 1]))
        i = j + 1
    return out


def write_doc(page: str) -> None:
    """Write docs/PERFORMANCE.md from `page`, carrying over the kept blocks of the current page."""
    kept = kept_sections(DOC.read_text()) if DOC.exists() else []
    if kept:
        marker = "## Scaling out"
        block = "\n\n".join(kept) + "\n\n"
        page = page.replace(marker, block + marker, 1) if marker in page else page + "\n" + block
    DOC.write_text(page)
    print(f"wrote {DOC}", file=sys.stderr)


def rerender(args: argparse.Namespace) -> None:
    """Rewrite docs/PERFORMANCE.md from the records of run `args.render` (no measurement)."""
    lines = (RESULTS / "performance.jsonl").read_text().splitlines()
    all_records = [json.loads(x) for x in lines if x.strip()]
    run_ids = args.render.split(",")
    records: list[dict] = []
    for run_id in run_ids:
        mine = [r for r in all_records if r.get("run_id") == run_id]
        if not mine:
            raise SystemExit(f"no records of run {run_id!r} in {RESULTS / 'performance.jsonl'}")
        parts = {r["part"] for r in mine if r["part"] != "suite"}
        records = [r for r in records if r["part"] not in parts] + mine
    args.quick = any(r.get("quick") for r in records)
    args.default_malloc = any(r.get("malloc") == "default" for r in records)
    args.end_to_end = any(r["part"] == "end_to_end" for r in records)
    wall = sum(r["wall_s"] for r in records if r["part"] == "suite")
    part_reused(records.append)
    machines = list(dict.fromkeys(r["machine"] for r in records if "machine" in r))
    mach = machines[0] if len(machines) == 1 else "; ".join(
        f"{m} ({', '.join(sorted({r['part'] for r in records if r.get('machine') == m and r['part'] != 'suite'}))})"
        for m in machines)
    write_doc(render(records, mach, ", ".join(run_ids), args, wall))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer configs and repeats (~1-2 min)")
    parser.add_argument("--end-to-end", "--demo", dest="end_to_end", action="store_true",
                        help="also time `aft demo` (cold and warm) and `aft compare fashion-mnist --quick` (~10 min)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per run")
    parser.add_argument("--reps", type=int, default=None, help="interleaved repetitions")
    parser.add_argument("--configs", default=None, metavar="I[,I]",
                        help="overhead part: only these rows of OVERHEAD_CONFIGS (0-based)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads, pinned (also OMP/MKL_NUM_THREADS for subprocesses; default 1)")
    parser.add_argument("--only", default=None, help="comma-separated parts: allocator,overhead,store,rss,gather,end_to_end")
    parser.add_argument("--no-doc", action="store_true", help="do not rewrite docs/PERFORMANCE.md")
    parser.add_argument("--default-malloc", action="store_true",
                        help="measure with glibc's default malloc settings (default: re-run under TUNED_MALLOC)")
    parser.add_argument("--render", default=None, metavar="RUN_ID[,RUN_ID]",
                        help="only rewrite docs/PERFORMANCE.md from the records of earlier run(s); a later "
                        "run's parts replace the same parts of an earlier one")
    args = parser.parse_args()
    if args.render:
        rerender(args)
        return
    pinned = {k: str(args.threads) for k in THREAD_ENV}
    want = {**pinned, **({} if args.default_malloc else TUNED_MALLOC)}
    if sys.platform == "linux" and any(os.environ.get(k) != v for k, v in want.items()):
        # same allocator for STL and AFT, without per-step page-fault noise (see the allocator section),
        # and the thread count pinned for this process and every subprocess it starts
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **want})
    os.environ.update(pinned)
    args.overhead_steps = args.steps  # None: each overhead config's own step count
    args.steps = args.steps or (8 if args.quick else 30)
    args.overhead_reps = args.reps  # None: each overhead row's own number of runs (a multiple of its 3 arms)
    args.reps = args.reps or (3 if args.quick else 5)
    parts = set((args.only or "allocator,overhead,store,rss,gather").split(","))
    if args.end_to_end:
        parts.add("end_to_end")
    args.end_to_end = "end_to_end" in parts
    import logging

    import torch

    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    logging.disable(logging.WARNING)
    t_start = time.perf_counter()
    mach = machine()
    run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
    records: list[dict] = []

    def emit(rec: dict) -> None:
        rec = {"run_id": run_id, "date": time.strftime("%Y-%m-%d"), "machine": mach, "quick": args.quick,
               "torch_threads": torch.get_num_threads(),
               "malloc": "default" if args.default_malloc else "tuned", **rec}
        records.append(rec)
        print(json.dumps(rec), flush=True)

    with tempfile.TemporaryDirectory(dir="/tmp") as t:
        tmp = Path(t)
        if "allocator" in parts:
            part_allocator(args, emit)
        if "overhead" in parts:
            part_regularizer_call(args, emit)
            part_overhead(args, tmp, emit)
        if "store" in parts:
            part_store_vs_ram(args, tmp, emit)
        if "rss" in parts:
            part_rss(args, tmp, emit)
        if "gather" in parts:
            steps = {f"{r['student']}{'-w' + str(r['options']['width']) if r['options'].get('width') else ''} "
                     f"d_psi={r['d_psi']}": r["median_step_ms"]["aft"]["wall"]
                     for r in records if r["part"] == "overhead" and "ratio" in r}
            part_gather(args, tmp, emit, dict(list(steps.items())[:3]))
        if "end_to_end" in parts:
            part_end_to_end(args, tmp, emit)
    part_reused(emit)
    wall = time.perf_counter() - t_start
    emit({"part": "suite", "wall_s": round(wall, 1)})
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "performance.jsonl", "a") as f:
        for r in records:
            if not r["part"].startswith("reused_"):
                f.write(json.dumps(r, sort_keys=True) + "\n")
    if not args.no_doc:
        write_doc(render(records, mach, run_id, args, wall))


if __name__ == "__main__":
    main()
