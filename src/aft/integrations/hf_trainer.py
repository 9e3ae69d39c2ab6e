"""AFT inside a Hugging Face `Trainer`: adds beta * R to the loss with teacher features looked up by sample id.

Three things make this work without surprises:

* `TeacherFeatureCollator` wraps the user's collator: it removes the ``sample_id`` strings from each
  example, collates the rest, and adds a ``teacher_features`` tensor looked up *by id* in a
  `TeacherFeatureSource` (a `FeatureStore` or `InMemoryFeatures`).
* `AFTTrainer` keeps ``sample_id`` through `remove_unused_columns` (the Trainer would otherwise drop
  the column because the model's ``forward`` does not take it), pops ``teacher_features`` before
  calling the model, and adds the regularizer's parameters to the optimizer as their own groups
  (AFT's scales with their own learning rate and no weight decay).
* The regularizer's metrics are averaged between logging steps and logged with the Trainer's own.

Example:
    >>> from aft.integrations.hf_trainer import AFTTrainer, TeacherFeatureCollator  # doctest: +SKIP
    >>> trainer = AFTTrainer(model=model, args=args, train_dataset=ds,           # doctest: +SKIP
    ...     data_collator=TeacherFeatureCollator(features, base_collator),
    ...     regularizer=aft.regularizers.build("aft", student_dim=384, teacher_dim=features.dim),
    ...     beta=10.0)
    >>> trainer.train()                                                            # doctest: +SKIP
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from aft.errors import ConfigError
from aft.features.source import TeacherFeatureSource
from aft.regularizers.base import Regularizer

try:
    from transformers import Trainer
except ImportError as exc:  # pragma: no cover - exercised only without transformers
    raise ImportError("aft.integrations.hf_trainer needs `pip install aft[text]` (transformers, accelerate)") from exc

SAMPLE_ID = "sample_id"
TEACHER_FEATURES = "teacher_features"


def mean_pooled_features(outputs: Any, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Default student features: the last hidden state averaged over non-padding tokens."""
    hidden = outputs.hidden_states[-1]
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
    """

    def __init__(
        self,
        features: TeacherFeatureSource,
        base_collator: Callable[[list[dict[str, Any]]], dict[str, Any]] | None = None,
    ) -> None:
        self.features = features
        self.base_collator = base_collator or _default_collate

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
        batch[TEACHER_FEATURES] = torch.from_numpy(np.ascontiguousarray(self.features.get(ids)))
        return batch


def _default_collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in examples[0]:
        values = [ex[key] for ex in examples]
        out[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else torch.tensor(values)
    return out


class AFTTrainer(Trainer):
    """A `transformers.Trainer` whose loss is the model's loss + beta * regularizer(phi, psi).

    Args:
        regularizer: a `Regularizer` (e.g. ``aft.regularizers.build("aft", ...)``).
        beta: weight of the regularizer (>= 0).
        feature_fn: maps (model outputs, inputs) to student features phi; default mean-pools
            the last hidden state (the model is called with ``output_hidden_states=True``).
        regularizer_lr: learning rate of the regularizer's groups that do not set their own;
            default the Trainer's learning rate.
        *args, **kwargs: passed to `transformers.Trainer`; use `TeacherFeatureCollator` as
            ``data_collator``.
    """

    def __init__(
        self,
        *args: Any,
        regularizer: Regularizer,
        beta: float = 1.0,
        feature_fn: Callable[[Any, Mapping[str, torch.Tensor]], torch.Tensor] = mean_pooled_features,
        regularizer_lr: float | None = None,
        **kwargs: Any,
    ) -> None:
        if not isinstance(beta, (int, float)) or beta < 0:
            raise ConfigError(f"beta must be a number >= 0, got {beta!r}")
        super().__init__(*args, **kwargs)
        self.regularizer = regularizer.to(self.args.device)
        self.beta = float(beta)
        self.feature_fn = feature_fn
        self.regularizer_lr = regularizer_lr
        self._reg_metrics: dict[str, list[float]] = defaultdict(list)

    def _set_signature_columns_if_needed(self) -> None:
        super()._set_signature_columns_if_needed()
        if self._signature_columns is not None and SAMPLE_ID not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, SAMPLE_ID]

    def create_optimizer(self, model: Any = None) -> torch.optim.Optimizer:
        optimizer = super().create_optimizer(model) if model is not None else super().create_optimizer()
        if not getattr(optimizer, "_aft_groups_added", False):
            lr = self.regularizer_lr if self.regularizer_lr is not None else self.args.learning_rate
            for group in self.regularizer.param_groups(lr, self.args.weight_decay):
                optimizer.add_param_group({k: v for k, v in group.items() if k != "name"})
            optimizer._aft_groups_added = True  # type: ignore[attr-defined]
        return optimizer

    def compute_loss(
        self,
        model: torch.nn.Module,
        inputs: dict[str, Any],
        return_outputs: bool = False,
        num_items_in_batch: Any = None,
    ) -> Any:
        psi = inputs.pop(TEACHER_FEATURES, None)
        if psi is None:
            raise ConfigError(f"batch has no {TEACHER_FEATURES!r}; use TeacherFeatureCollator as data_collator")
        outputs = model(**inputs, output_hidden_states=True)
        task_loss = outputs["loss"] if isinstance(outputs, Mapping) else outputs[0]
        phi = self.feature_fn(outputs, inputs)
        if self.regularizer.needs_labels:
            out = self.regularizer.compute(phi.float(), psi.to(phi.device).float(), inputs.get("labels"))
        else:
            out = self.regularizer.compute(phi.float(), psi.to(phi.device).float())
        for name, value in out.metrics.items():
            self._reg_metrics[name].append(float(value))
        self._reg_metrics["task_loss"].append(float(task_loss.detach()))
        loss = task_loss + self.beta * out.loss
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        if self._reg_metrics and "loss" in logs:
            for name, values in self._reg_metrics.items():
                logs[f"aft/{name}"] = float(np.mean(values))
            self._reg_metrics.clear()
        super().log(logs, start_time)
