"""`ft`: factor transfer (Kim et al. 2018): a paraphraser compresses psi, a translator maps phi to it.

`prepare` trains the paraphraser (an MLP autoencoder psi -> factor -> psi, squared reconstruction
error, Adam) on the training split's teacher features and freezes it. During training a 3-layer
MLP translator maps phi into the factor space; loss = mean L1 distance between the L2-normalized
translator output and the L2-normalized teacher factor. The translator uses the student's lr and
weight decay. The trainer must call ``prepare(PrepareContext(...))`` once before training (labels
are not used) and pass ``reg(phi, psi)`` as for any method; on resume, loading the state dict
restores the trained paraphraser (prepare may be skipped then).
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from aft.errors import ConfigError
from aft.regularizers.base import REGULARIZERS, PrepareContext, Regularizer
from aft.regularizers.inputs import validate_pair

logger = logging.getLogger(__name__)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(len(sizes) - 1):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < len(sizes) - 2:
            layers.append(nn.LeakyReLU(0.1))
    return nn.Sequential(*layers)


@REGULARIZERS.register("ft")
class FactorTransfer(Regularizer):
    """Factor transfer.

    Args:
        factor_dim: size of the teacher factor (default: min(d_psi, 128)).
        hidden_dim: hidden width of paraphraser and translator (default: 256).
        paraphraser_steps / paraphraser_lr / paraphraser_batch_size: autoencoder training
            (default 500 steps of Adam at 1e-3 on random batches of 256).
        seed: seed of the paraphraser's batch sampling.
        check_finite: raise on NaN/Inf inputs.
    """

    name = "ft"
    needs_prepare = True

    def __init__(
        self,
        student_dim: int,
        teacher_dim: int,
        factor_dim: int | None = None,
        hidden_dim: int = 256,
        paraphraser_steps: int = 500,
        paraphraser_lr: float = 1e-3,
        paraphraser_batch_size: int = 256,
        seed: int = 0,
        check_finite: bool = True,
    ) -> None:
        super().__init__(student_dim, teacher_dim)
        f = int(factor_dim or min(self.teacher_dim, 128))
        self.factor_dim = f
        self.paraphraser_steps = int(paraphraser_steps)
        self.paraphraser_lr = float(paraphraser_lr)
        self.paraphraser_batch_size = int(paraphraser_batch_size)
        self.seed = int(seed)
        self.check_finite = check_finite
        self.encoder = _mlp([self.teacher_dim, hidden_dim, f])
        self.decoder = _mlp([f, hidden_dim, self.teacher_dim])
        self.translator = _mlp([self.student_dim, hidden_dim, hidden_dim, f])
        for p in [*self.encoder.parameters(), *self.decoder.parameters()]:
            p.requires_grad_(False)
        self.register_buffer("prepared", torch.tensor(False))

    def prepare(self, context: PrepareContext) -> None:
        """Train the paraphraser on the training teacher features, then freeze it."""
        feats = context.teacher_features
        if feats.ndim != 2 or feats.shape[1] != self.teacher_dim:
            raise ConfigError(f"ft was built for teacher_dim={self.teacher_dim} but prepare got features of shape {tuple(feats.shape)}")
        device = self.prepared.device
        params = [*self.encoder.parameters(), *self.decoder.parameters()]
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=self.paraphraser_lr)
        gen = torch.Generator().manual_seed(self.seed)
        n = feats.shape[0]
        loss = torch.zeros(())
        with torch.enable_grad():
            for _ in range(self.paraphraser_steps):
                idx = torch.randint(0, n, (min(self.paraphraser_batch_size, n),), generator=gen)
                x = feats[idx].to(device=device, dtype=torch.float32)
                loss = F.mse_loss(self.decoder(self.encoder(x)), x)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        for p in params:
            p.requires_grad_(False)
            p.grad = None
        self.prepared.fill_(True)
        logger.info("ft paraphraser trained for %d steps, reconstruction mse %.4g", self.paraphraser_steps, float(loss.detach()))

    def loss_term(self, student_features: torch.Tensor, teacher_features: torch.Tensor, labels: Any = None) -> torch.Tensor:
        if not bool(self.prepared):
            raise ConfigError("ft needs prepare(context) on the training features before training; the trainer calls it when reg.needs_prepare")
        phi, psi = validate_pair(student_features, teacher_features, self.student_dim, self.teacher_dim, self.check_finite)
        assert psi is not None
        dtype = next(self.translator.parameters()).dtype
        with torch.no_grad():
            factor = self.encoder(psi.to(dtype))
        out = self.translator(phi.to(dtype))
        return (F.normalize(out, dim=1) - F.normalize(factor, dim=1)).abs().mean()
