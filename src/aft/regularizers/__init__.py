"""Transfer regularizers (AFT and the paper's baselines), chosen by name from a registry.

Importing this package registers every method: ``aft``, ``aft-dense``, ``aft-rbf``,
``aft-no-kernel``, ``aft-fixed``, ``aft-product``, ``kd``, ``kd-fields``, ``rkd``, ``ft``, ``btune``, ``kernel-kd``, ``none``.

Example (your own training loop):
    >>> import torch
    >>> import torch.nn.functional as F
    >>> import aft.regularizers
    >>> model = torch.nn.Linear(16, 8)                 # stands in for the student backbone
    >>> head = torch.nn.Linear(8, 3)
    >>> reg = aft.regularizers.build("aft", student_dim=8, teacher_dim=32)
    >>> opt = torch.optim.Adam([{"params": [*model.parameters(), *head.parameters()]},
    ...                         *reg.param_groups(lr=1e-3, weight_decay=1e-4)], lr=1e-3, weight_decay=1e-4)
    >>> x, y, psi = torch.randn(4, 16), torch.tensor([0, 1, 2, 0]), torch.randn(4, 32)
    >>> phi = model(x)
    >>> loss = F.cross_entropy(head(phi), y) + 10.0 * reg(phi, psi)
    >>> loss.backward(); opt.step()
"""

from aft.regularizers import (  # noqa: F401 - imported to register the methods
    aft,
    aft_dense,
    aft_fixed,
    aft_no_kernel,
    aft_rbf,
    btune,
    ft,
    kd,
    kernel_kd,
    none,
    rkd,
)
from aft.regularizers.base import REGULARIZERS, PrepareContext, Regularizer, RegularizerOutput, build
from aft.regularizers.kernel_alignment import KernelAlignmentRegularizer
from aft.regularizers.kernels import aft_kernel_distance, kernel_distance, kernel_sq_diff_sum, rank_surrogate
from aft.regularizers.logme import LogMEResult, logme_evidence

__all__ = [
    "REGULARIZERS",
    "KernelAlignmentRegularizer",
    "LogMEResult",
    "PrepareContext",
    "Regularizer",
    "RegularizerOutput",
    "aft_kernel_distance",
    "build",
    "kernel_distance",
    "kernel_sq_diff_sum",
    "logme_evidence",
    "rank_surrogate",
]
