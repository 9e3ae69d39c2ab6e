"""Peak memory of reading Parquet, Hugging Face `datasets` and WebDataset splits lazily, at two sizes.

    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/lazy_formats.py               # 20k vs 200k, ~3 min
    OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python benchmarks/lazy_formats.py --sizes 2000,20000

Generates (in a temporary folder, never committed) at each size: a Parquet file of ~500-character
texts (row groups of 1,000 rows), the same table saved with ``Dataset.save_to_disk``, and
WebDataset shards of 16x16 gray PNGs (10,000 samples a shard). Each measurement is a fresh
subprocess that loads the split (`aft.data.load_split`), reads every input once in stored order
(batches of 512, as extraction does) and then 200 shuffled batches of 64 (as training does); it
prints the file size, the peak RSS of the process (``VmHWM``) after loading and at the end, the
peak anonymous RSS (``RssAnon`` sampled after every batch: memory-mapped file pages, which the
kernel can drop, are not in it) and the read time. A flat peak from the small to the large size (while the files grow 10x) means
memory does not grow with the data: what grows is the index (ids, labels, lengths: ~40 bytes a
sample).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}


def _texts(n: int) -> tuple[list[str], list[int]]:
    """`n` texts of 500 random letters and spaces (barely compressible: the file is as big as the data)."""
    rng = np.random.default_rng(0)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz ", dtype=np.uint8)
    texts = [letters[rng.integers(0, 27, 500)].tobytes().decode() for _ in range(n)]
    return texts, [i % 10 for i in range(n)]


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def _hwm_mb() -> float:
    """The process's peak RSS (VmHWM; unlike ru_maxrss it is not inherited across fork + exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def generate(root: Path, n: int) -> dict[str, str]:
    """Write the three formats with `n` samples under `root`; returns format -> path option."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    texts, labels = _texts(n)
    table = pa.table({"text": texts, "label": labels})
    pq.write_table(table, root / "train.parquet", row_group_size=1000)
    import datasets

    datasets.disable_progress_bars()
    datasets.Dataset(table).save_to_disk(str(root / "hf"))
    del texts, table
    rng = np.random.default_rng(1)
    shard, tf = -1, None
    for i in range(n):
        if i % 10_000 == 0:
            if tf is not None:
                tf.close()
            shard += 1
            tf = tarfile.open(root / f"train-{shard:06d}.tar", "w")  # noqa: SIM115 - closed above/below
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8), mode="L").save(buf, format="PNG")
        for ext, data in (("png", buf.getvalue()), ("cls", str(i % 10).encode())):
            info = tarfile.TarInfo(f"{i:07d}.{ext}")
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))  # type: ignore[union-attr]
    tf.close()  # type: ignore[union-attr]
    return {"parquet": str(root / "train.parquet"), "hf": str(root / "hf"), "webdataset": str(root)}


def _size_of(fmt: str, path: str) -> int:
    p = Path(path)
    if fmt == "webdataset":
        return sum(f.stat().st_size for f in p.glob("train-*.tar"))
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) if p.is_dir() else p.stat().st_size


def child(fmt: str, path: str) -> None:
    from aft.data import load_split

    t0 = time.perf_counter()
    split = load_split(fmt, "train", path=path)
    t_load = time.perf_counter() - t0
    rss_load = _hwm_mb()
    anon = _status_mb("RssAnon")
    n = len(split)
    t0 = time.perf_counter()
    for s in range(0, n, 512):
        split.take(np.arange(s, min(s + 512, n)))
        anon = max(anon, _status_mb("RssAnon"))
    rng = np.random.default_rng(0)
    for _ in range(200):
        split.take(rng.choice(n, 64, replace=False))
        anon = max(anon, _status_mb("RssAnon"))
    t_read = time.perf_counter() - t0
    print(json.dumps({"format": fmt, "samples": n, "bytes": _size_of(fmt, path), "load_s": round(t_load, 2),
                      "read_s": round(t_read, 2), "rss_after_load_mb": rss_load,
                      "peak_rss_mb": _hwm_mb(),
                      "peak_anon_mb": anon}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,200000", help="comma-separated sample counts")
    ap.add_argument("--out", default="results/lazy-formats/records.jsonl", help="records file (rewritten)")
    ap.add_argument("--child", nargs=2, metavar=("FORMAT", "PATH"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    env = {**os.environ, **ENV}
    rows = []
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix="aft-lazy-formats-") as tmp:
            paths = generate(Path(tmp), n)
            for fmt, path in paths.items():
                out = subprocess.run([sys.executable, __file__, "--child", fmt, path], env=env, check=True,
                                     capture_output=True, text=True).stdout
                rows.append(json.loads(out.strip().splitlines()[-1]))
                print(out.strip(), flush=True)
    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    out_path.write_text("".join(json.dumps({**r, "run": stamp, "load_avg": os.getloadavg()[0]}) + "\n" for r in rows),
                        encoding="utf-8")
    print("\n| format | samples | data size | load s | read s | RSS after load | peak RSS | peak anonymous RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['format']} | {r['samples']:,} | {r['bytes'] / 2**20:.0f} MB | {r['load_s']} | {r['read_s']} | "
              f"{r['rss_after_load_mb']} MB | {r['peak_rss_mb']} MB | {r['peak_anon_mb']} MB |")


if __name__ == "__main__":
    main()
