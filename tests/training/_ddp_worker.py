"""One rank of the 2-process DDP test: trains a tiny student and rank 0 saves the final weights.

Usage (env from torchrun or set by the test): python _ddp_worker.py METHOD[,METHOD...] OUT_DIR
writes OUT_DIR/<method>.safetensors.
"""

from __future__ import annotations

import sys

import torch
from _training_helpers import TinyNet, digits_features, digits_splits
from safetensors.torch import save_file

from aft.training import TrainConfig, train

DDP_CONFIG = dict(batch_size=32, steps=4, lr=1e-2, beta=1.0, progress=False, tensorboard=False, seed=5,
                  val_fraction=0.1, eval_every=2, device="cpu")


def run(method: str) -> dict[str, torch.Tensor]:
    tr, te = digits_splits()
    torch.manual_seed(0)
    res = train(TrainConfig(method=method, **DDP_CONFIG), features=digits_features(tr), train_split=tr,
                test_split=te, student_module=TinyNet())
    state = {f"student.{k}": v.detach().clone() for k, v in res.student.state_dict().items()}
    state.update({f"reg.{k}": v.detach().clone() for k, v in res.regularizer.state_dict().items()})
    state["val_accuracy"] = torch.tensor(res.val_accuracy or 0.0)
    state["test_accuracy"] = torch.tensor(res.test_accuracy or 0.0)
    return state


if __name__ == "__main__":
    torch.set_num_threads(1)
    import torch.distributed as dist

    for method in sys.argv[1].split(","):
        result = run(method)
        if not dist.is_initialized() or dist.get_rank() == 0:
            save_file({k: v.contiguous() for k, v in result.items()}, f"{sys.argv[2]}/{method}.safetensors")
    if dist.is_initialized():
        dist.destroy_process_group()
