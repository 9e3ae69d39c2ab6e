"""AFT inside a Hugging Face `Trainer`: adds beta * R to the loss with teacher features looked up by sample id.

Three things make this work without surprises:

* `TeacherFeatureCollator` wraps the user's collator: it removes the ``sample_id`` strings from each
  example, collates the rest, and adds a ``teacher_features`` tensor looked up *by id* in a
  `TeacherFeatureSource` (a `FeatureStore`, `ConcatenatedFeatures` or `InMemoryFeatures`).
* `AFTTrainer` keeps ``sample_id`` through `remove_unused_columns` (the Trainer would otherwise drop
  the column because the model's ``forward`` does not take it), pops ``teacher_features`` before
  calling the model, and adds the regularizer's parameters to the optimizer as their own groups
  (AFT's scales with their own learning rate ``prior_lr`` and no weight decay).
* The regularizer's metrics are averaged between logging steps and logged as ``aft/<name>`` with
  the Trainer's own (``aft/loss``, ``aft/rho_mean``, ..., ``aft/task_loss``).

Evaluation (``trainer.evaluate()``) reports the model's own task loss: the regularizer is a
training-time term, and teacher features are not needed for evaluation batches (build the collator
with ``on_missing="omit"`` when the evaluation ids have no features). The regularizer's state is
saved next to the model as ``aft_regularizer.safetensors`` and restored on
``train(resume_from_checkpoint=...)``. With several processes the kernel is computed on each
process's own batch and the regularizer's gradients are averaged over processes.

Example:
    >>> from aft.integrations.hf_trainer import AFTTrainer, TeacherFeatureCollator  # doctest: +SKIP
    >>> trainer = AFTTrainer(model=model, args=args, train_dataset=ds,           # doctest: +SKIP
    ...     data_collator=TeacherFeatureCollator(features, base_collator),
    ...     regularizer=aft.regularizers.build("aft", student_dim=384, teacher_dim=features.dim),
    ...     beta=10.0)
    >>> trainer.train()                                                            # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from aft.errors import CheckpointError, ConfigError, FeatureStoreError
from aft.features.source import TeacherFeatureSource
from aft.regularizers.base import Regularizer
from aft.training.beta_schedule import BetaSchedule

try:
    from transformers import Trainer
except ImportError as exc:  # pragma: no cover - exercised only without transformers
    raise ImportError("aft.integrations.hf_trainer needs `pip install aft[text]` (transformers, accelerate)") from exc

log = logging.getLogger(__name__)

SAMPLE_ID = "sample_id"
TEACHER_FEATURES = "teacher_features"
REGULARIZER_WEIGHTS = "aft_regularizer.safetensors"

__all__ = [
    "REGULARIZER_WEIGHTS",
    "SAMPLE_ID",
    "TEACHER_FEATURES",
    "AFTTrainer",
    "TeacherFeatureCollator",
    "mean_pooled_features",
]


def mean_pooled_features(outputs: Any, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Default student features: the last hidden state averaged over non-padding tokens."""
    hidden_states = getattr(outputs, "hidden_states", None)
    if hidden_states is None and isinstance(outputs, Mapping):
        hidden_states = outputs.get("hidden_states")
    if hidden_states is None:
        raise ConfigError(
            "the model returned no hidden_states; pass AFTTrainer(feature_fn=...) that returns the student features"
        )
    hidden = hidden_states[-1]
    mask = inputs.get("attention_mask")
    if mask is None:
        return hidden.mean(dim=1)
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(dim=1) / m.sum(dim=1).clamp_min(1.0)


class TeacherFeatureCollator:
    """Collate examples and attach their teacher features, looked up by ``sample_id``.

    Args:
        features: where teacher features come from (by sample id).
        base_collator: the collator for the remaining fields (e.g. `DataCollatorWithPadding`);
            default stacks tensors / converts lists of numbers with `torch.tensor`.
        on_missing: ``"error"`` (default) raises when an id has no features; ``"omit"`` returns
            such a batch without ``teacher_features`` (fine for evaluation batches; a training
            batch without them still raises in `AFTTrainer`).

    Example:
        >>> import numpy as np
        >>> from aft.features import InMemoryFeatures
        >>> collate = TeacherFeatureCollator(InMemoryFeatures(["a", "b"], np.eye(2, dtype=np.float32)))
        >>> batch = collate([{"sample_id": "b", "x": [1.0]}, {"sample_id": "a", "x": [2.0]}])
        >>> batch["teacher_features"].tolist(), batch["x"].tolist()
        ([[0.0, 1.0], [1.0, 0.0]], [[1.0], [2.0]])
    """

    def __init__(
        self,
        features: TeacherFeatureSource,
        base_collator: Callable[[list[dict[str, Any]]], Mapping[str, Any]] | None = None,
        on_missing: Literal["error", "omit"] = "error",
    ) -> None:
        if on_missing not in ("error", "omit"):
            raise ConfigError(f"on_missing must be 'error' or 'omit', got {on_missing!r}")
        self.features = features
        self.base_collator = base_collator or _default_collate
        self.on_missing = on_missing

    def __call__(self, examples: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        ids, rest = [], []
        for ex in examples:
            if SAMPLE_ID not in ex:
                raise ConfigError(
                    f"example without {SAMPLE_ID!r}; give every training example its sample id so teacher "
                    "features can be looked up (and keep the column: AFTTrainer does)"
                )
            ids.append(str(ex[SAMPLE_ID]))
            rest.append({k: v for k, v in ex.items() if k != SAMPLE_ID})
        batch = dict(self.base_collator(rest))
        try:
            psi = self.features.get(ids)
        except FeatureStoreError:
            if self.on_missing == "error":
                raise
            return batch
        batch[TEACHER_FEATURES] = torch.from_numpy(np.ascontiguousarray(psi, dtype=np.float32))
        return batch


def _default_collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors, turn numbers (and equal-length lists of numbers) into tensors, keep strings as lists."""
    out: dict[str, Any] = {}
    for key in examples[0]:
        values = [ex[key] for ex in examples]
        if isinstance(values[0], torch.Tensor):
            out[key] = torch.stack(values)
        elif isinstance(values[0], str):
            out[key] = values
        else:
            out[key] = torch.tensor(values)
    return out


class AFTTrainer(Trainer):
    """A `transformers.Trainer` whose training loss is the model's loss + beta * regularizer(phi, psi).

    Args:
        regularizer: a `Regularizer` (e.g. ``aft.regularizers.build("aft", ...)``); call its
            ``prepare`` first when ``regularizer.needs_prepare`` (``ft``, ``btune``).
        beta: weight of the regularizer (>= 0).
        feature_fn: maps (model outputs, inputs) to student features phi; default mean-pools
            the last hidden state (the model is called with ``output_hidden_states=True``).
        regularizer_lr: the learning rate given to ``regularizer.param_groups`` (methods that
            follow the student's lr, e.g. ``kd``, use it; AFT uses its own ``prior_lr``);
            default the Trainer's learning rate.
        beta_warmup: ``"auto"`` (default): beta is 0 until the model's task loss has left chance
            (ln of ``model.config.num_labels``, else the first training losses), then ramps up over
            10 % of the steps, as in `aft.training.train` (docs/regularizers.md); ``N``: linear
            warm-up over N optimizer steps; ``0``: constant beta. The gate is not checkpointed: a
            resumed run past 30 % of its steps opens it at once.
        *args, **kwargs: passed to `transformers.Trainer`; use `TeacherFeatureCollator` as
            ``data_collator``.
    """

    # compute_loss returns a per-batch mean: the Trainer must divide it by the accumulation steps
    loss_is_scaled_for_ga = False

    def __init__(
        self,
        *args: Any,
        regularizer: Regularizer,
        beta: float = 1.0,
        feature_fn: Callable[[Any, Mapping[str, torch.Tensor]], torch.Tensor] = mean_pooled_features,
        regularizer_lr: float | None = None,
        beta_warmup: str | int = "auto",
        **kwargs: Any,
    ) -> None:
        if not isinstance(regularizer, Regularizer):
            raise ConfigError(
                f"regularizer must be an aft Regularizer, got {type(regularizer).__name__}; "
                "use aft.regularizers.build(name, student_dim=..., teacher_dim=...)"
            )
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
            raise ConfigError(f"beta must be a number >= 0, got {beta!r}")
        if not (beta_warmup == "auto" or (isinstance(beta_warmup, int) and not isinstance(beta_warmup, bool)
                                          and beta_warmup >= 0)):
            raise ConfigError(f"beta_warmup must be 'auto' or a number of steps >= 0, got {beta_warmup!r}")
        if regularizer_lr is not None and not regularizer_lr > 0:
            raise ConfigError(f"regularizer_lr must be > 0, got {regularizer_lr!r}")
        super().__init__(*args, **kwargs)
        self.regularizer = regularizer.to(self.args.device)
        self.beta = float(beta)
        self.feature_fn = feature_fn
        self.regularizer_lr = regularizer_lr
        self.beta_warmup = beta_warmup
        self._beta_schedule: BetaSchedule | None = None
        self._first_losses: list[float] = []
        self._reg_metrics: dict[str, list[float]] = defaultdict(list)

    # ------------------------------------------------------------------ data
    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self._signature_columns is not None and SAMPLE_ID not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, SAMPLE_ID]

    # ------------------------------------------------------------------ optimizer
    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        """The Trainer's optimizer plus the regularizer's parameter groups (added once)."""
        optimizer = super().create_optimizer(model) if model is not None else super().create_optimizer()
        if not getattr(optimizer, "_aft_groups_added", False):
            lr = self.regularizer_lr if self.regularizer_lr is not None else self.args.learning_rate
            for group in self.regularizer.param_groups(lr, self.args.weight_decay):
                optimizer.add_param_group(dict(group))
            optimizer._aft_groups_added = True  # type: ignore[attr-defined]
        return optimizer

    # ------------------------------------------------------------------ loss
    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        psi = inputs.pop(TEACHER_FEATURES, None)
        if not model.training:  # evaluation: the model's own task loss
            outputs = model(**inputs)
            loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs[0]
            return (loss, outputs) if return_outputs else loss
        if psi is None and self.regularizer.uses_teacher:
            raise ConfigError(f"batch has no {TEACHER_FEATURES!r}; use TeacherFeatureCollator as data_collator")
        outputs = model(**inputs, output_hidden_states=True)
        task_loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs[0]
        if task_loss is None:
            raise ConfigError("the model returned no loss; pass labels in the batch (column 'labels' or 'label')")
        phi = self.feature_fn(outputs, inputs)
        if psi is None:  # a regularizer that reads no teacher (`none`)
            psi = phi.new_zeros(phi.shape[0], self.regularizer.teacher_dim)
        labels = inputs.get("labels") if self.regularizer.needs_labels else None
        out = self.regularizer.compute(phi.float(), psi.to(phi.device).float(), labels)
        for name, value in out.metrics.items():
            self._reg_metrics[name].append(float(value))
        self._reg_metrics["task_loss"].append(float(task_loss.detach()))
        beta = self._current_beta(model, task_loss)
        self._reg_metrics["beta"].append(beta)
        loss = task_loss + beta * out.loss
        return (loss, outputs) if return_outputs else loss

    def _current_beta(self, model: torch.nn.Module, task_loss: torch.Tensor) -> float:
        """beta of this step from the warm-up (`aft.training.beta_schedule`), gated on the mean task loss."""
        if self._beta_schedule is None:
            num_labels = getattr(getattr(model, "config", None), "num_labels", None)
            chance = math.log(num_labels) if isinstance(num_labels, int) and num_labels > 1 else None
            if chance is None and self.beta_warmup == "auto":
                self._first_losses.append(float(task_loss.detach()))
                if len(self._first_losses) < 5:
                    return 0.0
                chance = float(np.mean(self._first_losses))
            self._beta_schedule = BetaSchedule(self.beta, self.beta_warmup, max(1, int(self.state.max_steps or 1)),
                                               chance_loss=chance or math.log(2.0))
        schedule, step = self._beta_schedule, int(self.state.global_step)
        if schedule.gated:
            value = task_loss.detach().float().reshape(1).clone()
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(value)  # every process opens the gate at the same step
                value /= torch.distributed.get_world_size()
            schedule.observe(step, float(value))
        return schedule.value(step)

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> torch.Tensor:
        loss = super().training_step(model, inputs, *args, **kwargs)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            if world > 1:  # the regularizer is not inside DDP: average its gradients by hand
                for p in self.regularizer.parameters():
                    if p.grad is not None:
                        torch.distributed.all_reduce(p.grad)
                        p.grad.div_(world)
        return loss

    def prediction_step(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> Any:
        inputs = {k: v for k, v in inputs.items() if k != TEACHER_FEATURES}
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    # ------------------------------------------------------------------ logging
    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._reg_metrics and "loss" in logs:
            for name, values in self._reg_metrics.items():
                logs[f"aft/{name}"] = float(np.mean(values))
            self._reg_metrics.clear()
        # transformers < 4.47 has Trainer.log(logs) and never passes start_time
        super().log(logs) if start_time is None else super().log(logs, start_time)

    # ------------------------------------------------------------------ checkpoints
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the model (Trainer) and the regularizer's state as ``aft_regularizer.safetensors``."""
        super().save_model(output_dir, _internal_call)
        if self.args.should_save:
            from safetensors.torch import save_file

            from aft.students.io import state_for_safetensors
            from aft.training.atomic import atomic_write_with

            folder = Path(output_dir if output_dir is not None else self.args.output_dir)
            folder.mkdir(parents=True, exist_ok=True)
            tensors = state_for_safetensors(self.regularizer)
            if tensors:
                atomic_write_with(folder / REGULARIZER_WEIGHTS, lambda p: save_file(tensors, str(p)))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: Any = None) -> None:
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        path = Path(resume_from_checkpoint) / REGULARIZER_WEIGHTS
        if path.is_file():
            from safetensors.torch import load_file

            try:
                self.regularizer.load_state_dict(load_file(str(path), device=str(self.args.device)))
            except (OSError, RuntimeError, ValueError) as exc:
                raise CheckpointError(f"{path} does not fit this regularizer ({exc}); resume with the same method") from None
        elif any(True for _ in self.regularizer.parameters()):
            log.warning("%s has no %s: the regularizer restarts from its initial state", resume_from_checkpoint,
                        REGULARIZER_WEIGHTS)
