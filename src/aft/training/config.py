"""`TrainConfig`: every setting of a training run, loaded from YAML and ``key=value`` overrides.

Unknown keys and values of the wrong type raise `ConfigError` naming the key. The resolved config
is saved as ``config.yaml`` in the run folder, so a run can be repeated exactly.
"""

from __future__ import annotations

import dataclasses
import math
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from aft.errors import ConfigError

#: float settings that must be finite (NaN/Inf refused before anything runs), with the valid range
_FLOAT_KEYS = {
    "beta": "beta weights the regularizer (>= 0)",
    "beta_auto_scale": "beta_auto_scale multiplies the measured gradient-norm ratio (> 0)",
    "lr": "the learning rate must be > 0",
    "weight_decay": "weight decay must be >= 0",
    "prior_lr": "the prior learning rate must be > 0",
    "epochs": "give epochs > 0 (or steps)",
    "grad_clip": "give a max gradient norm > 0, or null for no clipping",
    "val_fraction": "the validation share must be in [0, 1)",
}


@dataclass
class TrainConfig:
    """Settings of one training run (see docs/training.md for each key).

    Example:
        >>> cfg = TrainConfig(dataset="digits", method="aft", beta=10.0, steps=100)
        >>> cfg.validate().total_batch_size
        128
    """

    # data
    dataset: str | None = None
    # loader options of the dataset (csv/jsonl/imagefolder: path=..., classes=...; `--data-option k=v`)
    dataset_options: dict[str, Any] = field(default_factory=dict)
    train_split: str = "train"
    test_split: str | None = "test"
    train_limit: int | None = None
    test_limit: int | None = None
    val_fraction: float = 0.1
    seed: int = 0
    # student
    student: str = "cnn-small"
    student_options: dict[str, Any] = field(default_factory=dict)
    # transfer method
    method: str = "aft"
    method_options: dict[str, Any] = field(default_factory=dict)
    beta: float = 1.0
    teachers: list[str] = field(default_factory=list)
    feature_store: str | None = None
    # augmentation-aware transfer (docs/augmentation.md): views > 1 trains on augmented views
    views: int = 1
    augmentation: str | None = None
    # optimization
    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    prior_lr: float = 1e-2
    batch_size: int = 128
    steps: int | None = None
    epochs: float | None = None
    warmup_steps: int = 0
    schedule: Literal["cosine", "constant"] = "cosine"
    grad_clip: float | None = None
    # evaluation / selection
    eval_every: int = 0
    select: Literal["last", "best"] = "last"
    eval_batch_size: int = 512
    # runtime
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    # deterministic kernels only (torch.use_deterministic_algorithms) for bit-identical GPU runs
    deterministic: bool = False
    # data parallel: "local" = each rank its own rows of the global-batch kernel (methods with
    # `partial_sum`), "full" = every rank the whole global-batch regularizer (docs/training.md)
    ddp_kernel: Literal["local", "full"] = "local"
    output: str | None = None
    overwrite: bool = False
    resume: bool = False
    checkpoint_every: int = 500
    log_every: int = 10
    progress: bool = True
    tensorboard: bool = True
    # beta schedule (aft.training.beta_schedule): "auto" holds beta at 0 until the student has left
    # chance, then ramps it up ("loss" is the same gate, "spread" gates on the features' spread);
    # N = linear warm-up over N steps; 0 = constant beta (the paper's)
    beta_warmup: Union[Literal["auto", "loss", "spread"], int] = "auto"
    # "fixed": beta as given; "auto" (`--beta auto`): beta measured from the ratio of the task's and the
    # regularizer's gradient norms when the warm-up starts, times beta_auto_scale (`beta` is then unused;
    # the scale was chosen on a Fashion-MNIST dev set, docs/regularizers.md "beta auto")
    beta_rule: Literal["fixed", "auto"] = "fixed"
    beta_auto_scale: float = 3.0
    # gradient accumulation: each optimizer step sums grad_accum_steps micro-batches of
    # batch_size / grad_accum_steps samples; kernel methods compute their kernel per micro-batch
    # (docs/training.md, "Gradient accumulation")
    grad_accum_steps: int = 1
    # DataLoader worker processes reading (decoding, augmenting) lazy inputs; None: chosen by aft
    # (0 for in-memory data), 0: read in the training process
    workers: int | None = None
    # CPU threads for torch while training (None: leave the process setting alone; the CLI picks a default)
    threads: int | None = None
    # stop when validation accuracy has not improved for this many evaluations (0 = never; needs eval_every)
    early_stopping_patience: int = 0
    # experiment trackers besides metrics.jsonl: tensorboard, wandb, mlflow (each needs its package)
    report_to: list[str] = field(default_factory=list)
    # end the run after this many steps while the lr / beta schedules still span `steps` (epochs):
    # how cross-validation's chosen stopping step is reproduced on all labels (docs/training.md)
    stop_step: int | None = None

    @property
    def total_batch_size(self) -> int:
        return self.batch_size

    def validate(self) -> TrainConfig:
        """Check types and ranges; returns self. Raises `ConfigError` naming the offending key."""
        hints = get_type_hints(TrainConfig)
        for f in dataclasses.fields(self):
            setattr(self, f.name, _coerce(f.name, getattr(self, f.name), hints[f.name]))
        for key in _FLOAT_KEYS:  # NaN passes every comparison below, Inf overflows step counts
            value = getattr(self, key)
            if value is not None and not math.isfinite(value):
                raise ConfigError(f"{key} must be a finite number, got {value}; {_FLOAT_KEYS[key]}")
        if self.beta_auto_scale <= 0:
            raise ConfigError(f"beta_auto_scale must be > 0, got {self.beta_auto_scale}; it multiplies the measured "
                              "ratio of the gradient norms (beta_rule: auto)")
        if self.beta < 0:
            raise ConfigError(f"beta must be >= 0, got {self.beta}; beta weights the regularizer")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"grad_clip must be > 0 (or null for no clipping), got {self.grad_clip}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        for key in ("batch_size", "eval_batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, got {getattr(self, key)}")
        if self.steps is not None and self.epochs is not None:
            raise ConfigError("give either steps or epochs, not both")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError(f"epochs must be > 0, got {self.epochs}")
        for key in ("lr", "prior_lr"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{key} must be > 0, got {getattr(self, key)}")
        for key in ("weight_decay", "warmup_steps", "eval_every", "checkpoint_every"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{key} must be >= 0, got {getattr(self, key)}")
        if (isinstance(self.beta_warmup, str) and self.beta_warmup not in ("auto", "loss", "spread")) or (
                not isinstance(self.beta_warmup, str) and self.beta_warmup < 0):
            raise ConfigError(f"beta_warmup must be 'auto', 'loss', 'spread' or a number of steps >= 0, "
                              f"got {self.beta_warmup!r}")
        if self.grad_accum_steps < 1:
            raise ConfigError(f"grad_accum_steps must be >= 1, got {self.grad_accum_steps}")
        if self.batch_size % self.grad_accum_steps:
            raise ConfigError(f"batch_size {self.batch_size} must be divisible by grad_accum_steps "
                              f"{self.grad_accum_steps} (each micro-batch has batch_size / grad_accum_steps samples)")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"workers must be >= 0 (0 reads in the training process), got {self.workers}")
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1 (or null for the default), got {self.threads}")
        if self.early_stopping_patience < 0:
            raise ConfigError(f"early_stopping_patience must be >= 0, got {self.early_stopping_patience}")
        if self.early_stopping_patience and (not self.eval_every or self.val_fraction <= 0):
            raise ConfigError("early_stopping_patience needs validation during training: set eval_every > 0 "
                              "and val_fraction > 0")
        if self.report_to:
            from aft.training.tracking import TRACKERS

            for name in self.report_to:
                TRACKERS.get(name)  # unknown name -> lists the registered trackers
        if self.stop_step is not None and self.stop_step < 1:
            raise ConfigError(f"stop_step must be >= 1, got {self.stop_step}")
        if self.log_every < 1:
            raise ConfigError(f"log_every must be >= 1, got {self.log_every}")
        if self.views < 1:
            raise ConfigError(f"views must be >= 1, got {self.views}; 1 trains on clean inputs only")
        if self.augmentation is not None:
            from aft.augment import POLICIES

            POLICIES.get(self.augmentation)  # unknown name -> lists the registered policies
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (YAML/JSON-serializable)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict; unknown keys raise `ConfigError` listing the valid ones."""
        if not isinstance(data, dict):
            raise ConfigError("a training config must be a mapping of key: value")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown config key {unknown[0]!r}; valid keys: {', '.join(sorted(names))}")
        return cls(**data).validate()

    def save(self, path: str | Path) -> None:
        """Write the config as YAML (atomically)."""
        from aft.training.atomic import atomic_write_bytes

        atomic_write_bytes(path, yaml.safe_dump(self.to_dict(), sort_keys=False).encode())


def load_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None) -> TrainConfig:
    """Load a YAML config file (optional) and apply overrides.

    Args:
        path: YAML file with TrainConfig keys.
        overrides: ``["key=value", "method_options.rank=4"]`` (values parsed as YAML) or a dict.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"config file {str(p)!r} not found")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {str(p)!r} is not valid YAML: {str(exc).splitlines()[0]}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"config file {str(p)!r} is not valid UTF-8 (byte {exc.object[exc.start]:#04x} at "
                              f"offset {exc.start}); re-save it as UTF-8") from None
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(p)!r} ({exc.strerror or exc}); pass a readable "
                              "YAML file") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(p)!r} must hold a mapping of key: value")
        data.update(loaded)
    items = overrides.items() if isinstance(overrides, dict) else [_split_override(o) for o in overrides or []]
    for key, value in items:
        _set_dotted(data, key, value)
    return TrainConfig.from_dict(data)


def _split_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if not rest:
        data[head] = value
        return
    if head not in ("student_options", "method_options", "dataset_options"):
        raise ConfigError(f"config key {key!r}: only student_options.*, method_options.* and dataset_options.* "
                          "take sub-keys")
    sub = data.setdefault(head, {})
    if not isinstance(sub, dict):
        raise ConfigError(f"config key {head!r} must be a mapping")
    sub[rest] = value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(key: str, value: Any, tp: Any) -> Any:
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, value, arg)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            raise ConfigError(f"config key {key!r}: {value!r} is not one of {', '.join(map(str, choices))}")
        return value
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key {key!r} must be a mapping, got {type(value).__name__}")
        return dict(value)
    if origin is list:
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.split(",")) if v]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"config key {key!r} must be a list of names")
        return list(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key {key!r} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"config key {key!r} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key!r} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"config key {key!r} must be a string, got {value!r}")
        return value
    return value  # pragma: no cover - all field types are handled above
