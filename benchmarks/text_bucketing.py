"""Texts/s of a text teacher on SpamAssassin: batches in stored order vs batches of length-sorted texts.

`aft.features.extract.batch_order` sorts texts by length before batching (the store keeps them by
id, so the order is restored on read). This measures what that buys:

    OMP_NUM_THREADS=1 python benchmarks/text_bucketing.py --teacher minilm --n 256 --batch-size 32
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from aft.data import load_split
from aft.features.extract import batch_order
from aft.teachers import build_teacher


def texts_per_s(teacher, texts: list[str], order: np.ndarray, batch_size: int) -> float:
    t0 = time.perf_counter()
    with torch.inference_mode():
        for b in range(0, len(order), batch_size):
            teacher.encode([texts[i] for i in order[b : b + batch_size]])
    return len(order) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--teacher", default="minilm")
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--reps", type=int, default=2)
    args = ap.parse_args()
    full = load_split("spam-assassin", "train")
    texts = list(full.subset(np.arange(args.n)).inputs)
    teacher = build_teacher(args.teacher)
    stored = np.arange(len(texts))
    by_length = np.argsort([len(t) for t in texts], kind="stable")
    teacher.encode(texts[:4])  # warm-up
    plain, sorted_ = [], []
    for _ in range(args.reps):  # interleaved
        plain.append(texts_per_s(teacher, texts, stored, args.batch_size))
        sorted_.append(texts_per_s(teacher, texts, by_length, args.batch_size))
    p, s = float(np.median(plain)), float(np.median(sorted_))
    print(f"{args.teacher}, {len(texts)} SpamAssassin texts, batch {args.batch_size}, torch threads "
          f"{torch.get_num_threads()}: stored order {p:.1f} texts/s, length-sorted {s:.1f} texts/s, ratio {s / p:.2f}")
    assert (batch_order(full)[:3] == np.argsort([len(t) for t in full.inputs], kind="stable")[:3]).all()


if __name__ == "__main__":
    main()
