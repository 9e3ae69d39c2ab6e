"""One rank of the 2-process DDP test: trains a tiny student and rank 0 saves the final weights.

Usage (env from torchrun or set by the test): python _ddp_worker.py SPEC[,SPEC...] OUT_DIR, where
SPEC is METHOD or METHOD:DDP_KERNEL (``aft:full``); writes OUT_DIR/<METHOD>[-<DDP_KERNEL>].safetensors.
Under DDP the worker also checks which path ran: ``local`` must call the method's `partial_sum`,
``full`` must not.
"""

from __future__ import annotations

import sys

import torch
from _training_helpers import TinyNet, digits_features, digits_splits
from safetensors.torch import save_file

from aft.regularizers.base import REGULARIZERS
from aft.regularizers.kernel_alignment import KernelAlignmentRegularizer
from aft.training import TrainConfig, train

DDP_CONFIG = dict(batch_size=32, steps=4, lr=1e-2, beta=1.0, progress=False, tensorboard=False, seed=5,
                  val_fraction=0.1, eval_every=2, device="cpu")

PARTIAL_SUM_CALLS = [0]
_partial_sum = KernelAlignmentRegularizer.partial_sum


def _counting_partial_sum(self, *args, **kwargs):  # type: ignore[no-untyped-def]
    PARTIAL_SUM_CALLS[0] += 1
    return _partial_sum(self, *args, **kwargs)


KernelAlignmentRegularizer.partial_sum = _counting_partial_sum  # type: ignore[method-assign]


def output_name(spec: str) -> str:
    return spec.replace(":", "-")


def run(spec: str) -> dict[str, torch.Tensor]:
    method, _, rest = spec.partition(":")
    ddp_kernel, _, accum = rest.partition(":")  # METHOD[:DDP_KERNEL[:GRAD_ACCUM_STEPS]]
    tr, te = digits_splits()
    torch.manual_seed(0)
    res = train(TrainConfig(method=method, ddp_kernel=ddp_kernel or "local", grad_accum_steps=int(accum or 1),
                            **DDP_CONFIG),
                features=digits_features(tr), train_split=tr, test_split=te, student_module=TinyNet())
    state = {f"student.{k}": v.detach().clone() for k, v in res.student.state_dict().items()}
    state.update({f"reg.{k}": v.detach().clone() for k, v in res.regularizer.state_dict().items()})
    state["val_accuracy"] = torch.tensor(res.val_accuracy or 0.0)
    state["test_accuracy"] = torch.tensor(res.test_accuracy or 0.0)
    return state


if __name__ == "__main__":
    torch.set_num_threads(1)
    import torch.distributed as dist

    for spec in sys.argv[1].split(","):
        before = PARTIAL_SUM_CALLS[0]
        result = run(spec)
        calls = PARTIAL_SUM_CALLS[0] - before
        if dist.is_initialized():
            has_partial_sum = hasattr(REGULARIZERS.get(spec.split(":")[0]), "partial_sum")
            expected_local = has_partial_sum and not spec.endswith(":full")
            assert (calls > 0) == expected_local, f"{spec}: partial_sum called {calls} times"
        if not dist.is_initialized() or dist.get_rank() == 0:
            save_file({k: v.contiguous() for k, v in result.items()}, f"{sys.argv[2]}/{output_name(spec)}.safetensors")
    if dist.is_initialized():
        dist.destroy_process_group()
