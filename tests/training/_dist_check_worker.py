"""One rank of the data-parallel checks (issue 14, item 8). Usage: python _dist_check_worker.py MODE[,MODE...] OUT_DIR.

MODE ``uneven``: rank r gathers a batch of 3 - r rows; every rank must get `UnevenBatchError`
(not a gloo abort) and can still use the process group afterwards.
MODE ``warning``: gathers with warnings turned into errors (no per-call FutureWarning).
MODE ``small``: trains on 7 samples with batch_size 32 over 2 processes and records the warning.
Each rank writes OUT_DIR/<mode>-<rank>.txt with what it saw.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import torch
import torch.distributed as dist

from aft.training import distributed as D


def main(modes: str, out: Path) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    for mode in modes.split(","):
        check(mode, out)
    dist.destroy_process_group()


def check(mode: str, out: Path) -> None:
    info = D.DistInfo(rank=dist.get_rank(), world_size=dist.get_world_size())
    lines: list[str] = []
    if mode == "uneven":
        x = torch.ones(3 - info.rank, 4, requires_grad=True)
        try:
            D.gather_with_grad(x, info)
            lines.append("no error")
        except D.UnevenBatchError as exc:
            lines.append(f"error: {exc}")
        total = D.all_reduce_sum([1.0], info, torch.device("cpu"))  # the group still works
        lines.append(f"after: {total[0]:g}")
    elif mode == "warning":
        x = torch.full((2, 3), float(info.rank), requires_grad=True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            g = D.gather_with_grad(x, info)
        g.sum().backward()
        lines.append(f"rows {g.shape[0]} values {sorted(set(g[:, 0].tolist()))} grad {x.grad.sum().item():g}")
    elif mode == "small":
        sys.path.insert(0, str(Path(__file__).parent))
        from _training_helpers import TinyNet, digits_splits

        from aft.training import TrainConfig, train

        records: list[str] = []

        class Grab(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                records.append(record.getMessage())

        logging.getLogger("aft.training.loop").addHandler(Grab())
        tr, _ = digits_splits(n_train=7, n_test=4)
        torch.manual_seed(0)
        train(TrainConfig(method="none", batch_size=32, steps=2, progress=False, tensorboard=False, device="cpu",
                          val_fraction=0.0, test_split=None), train_split=tr, student_module=TinyNet())
        lines += [r for r in records if "rounded down" in r] or ["no warning"]
    (out / f"{mode}-{info.rank}.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
