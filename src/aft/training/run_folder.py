"""The run folder of `aft train`: what a run writes, refusing or clearing an existing folder, the
config hash a resumed run must share with its checkpoint, and the metrics log."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from aft.errors import CheckpointError, ConfigError, OutputExistsError, UnsafePathError
from aft.paths import safe_join
from aft.training import distributed as D
from aft.training.atomic import atomic_write_bytes
from aft.training.config import TrainConfig
from aft.training.runlock import LOCK_NAME

logger = logging.getLogger("aft.training.loop")  # the loop's logger: messages keep their source name


#: files and folders a run writes (the only things ``overwrite`` removes)
RUN_OUTPUTS = ("config.yaml", "metrics.jsonl", "result.json", "student.safetensors", "student.json",
               "regularizer.safetensors", "checkpoints", "tensorboard")

def _check_output(cfg: TrainConfig) -> tuple[Path | None, bool]:
    """Check the run folder without changing anything; returns (run_dir, resuming_from_checkpoint).

    With ``overwrite``, also checks that every output it would remove is inside the run folder
    (a symlinked ``checkpoints/`` pointing elsewhere is refused before anything is deleted).
    """
    if cfg.output is None:
        if cfg.resume:
            raise ConfigError("resume needs an output folder holding checkpoints; set `output`")
        return None, False
    run = Path(cfg.output)
    try:
        is_file = run.exists() and not run.is_dir()
    except OSError as exc:  # e.g. ENAMETOOLONG
        raise ConfigError(f"output path {_shorten(str(run))!r} is unusable ({exc.strerror or exc}); choose a "
                          "shorter or valid --output") from None
    if is_file:
        raise ConfigError(f"output {str(run)!r} is a file, not a folder; choose a folder for --output")
    ckpt = run / "checkpoints"
    has_ckpt = (ckpt / "checkpoint.pt").exists() or (ckpt / "checkpoint.prev.pt").exists()
    non_empty = _run_non_empty(run)
    if cfg.resume:
        if not has_ckpt:
            if non_empty and not cfg.overwrite:
                raise CheckpointError(f"{str(run)!r} holds no checkpoint to resume from; use --overwrite to start over")
            logger.warning("no checkpoint in %s; starting from scratch", run)
        return run, has_ckpt
    if non_empty:
        if not cfg.overwrite:
            raise OutputExistsError(f"output folder {str(run)!r} exists; pass --overwrite to replace it or --resume")
        for name in RUN_OUTPUTS:
            if (run / name).is_symlink():
                try:
                    safe_join(run, name)
                except UnsafePathError:
                    raise UnsafePathError(
                        f"--overwrite refuses to clear {str(run / name)!r}: it is a symlink to "
                        f"{os.path.realpath(run / name)!r}, outside the run folder; remove the link or choose "
                        "another --output") from None
    return run, False


def _shorten(text: str, limit: int = 120) -> str:
    return text if len(text) <= limit else f"{text[:60]}...{text[-40:]} ({len(text)} characters)"


def _run_non_empty(run: Path) -> bool:
    """True if `run` holds anything but the lock file of a (possibly finished) run."""
    try:
        return run.is_dir() and any(p.name != LOCK_NAME for p in run.iterdir())
    except OSError as exc:
        raise ConfigError(f"cannot read output folder {str(run)!r} ({exc.strerror or exc}); "
                          "choose a readable --output folder") from None


def _clear_output(run: Path, info: D.DistInfo) -> None:
    """Remove the outputs of a previous run (``overwrite``): only `RUN_OUTPUTS`, never what a symlink points to."""
    if info.is_main:
        for name in RUN_OUTPUTS:
            p = run / name
            if p.is_symlink():
                p.unlink()
            elif p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    D.barrier(info)


def _prepare_output(cfg: TrainConfig, info: D.DistInfo) -> tuple[Path | None, bool]:
    """Check/clear the run folder; returns (run_dir, resuming_from_checkpoint)."""
    run, resuming = _check_output(cfg)
    if run is not None and not cfg.resume and cfg.overwrite and _run_non_empty(run):
        _clear_output(run, info)
    else:
        D.barrier(info)
    return run, resuming


def _log_jsonl(path: Path | None, record: dict[str, Any]) -> None:
    if path is None:
        return
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def _truncate_metrics(path: Path, keep_until: int) -> None:
    """Drop records written after the checkpoint we resume from (a fresh run keeps none)."""
    kept = []
    if keep_until > 0:
        for line in path.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if int(rec.get("step", 0)) <= keep_until and not rec.get("final"):
                kept.append(line)
    atomic_write_bytes(path, "".join(k + "\n" for k in kept).encode())


def _config_hash(cfg: TrainConfig, legacy: bool = False) -> str:
    """What a resumed run must share with its checkpoint. Paths do not count by their spelling:
    ``output`` is where the checkpoint is (a moved or respelled run folder resumes), and
    ``feature_store`` is compared normalized (the stores themselves are fingerprint-checked).
    `legacy`: the hash of checkpoints written before paths were normalized."""
    import hashlib

    d = cfg.to_dict()
    if not legacy:
        d.pop("output", None)
        if d.get("feature_store"):
            d["feature_store"] = os.path.normpath(d["feature_store"])
    # ddp_kernel: both forms are exact, and a run may resume with either; deterministic: same math
    for k in ("resume", "overwrite", "progress", "tensorboard", "log_every", "checkpoint_every", "device", "ddp_kernel",
              "deterministic", "threads", "report_to", "workers"):
        d.pop(k, None)
    for k, default in _HASH_NEUTRAL_DEFAULTS.items():  # keys added later: at their default, old hashes hold
        if d.get(k) == default:
            d.pop(k, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


#: config keys added after checkpoints existed: left out of the hash at these values
_HASH_NEUTRAL_DEFAULTS: dict[str, Any] = {"grad_accum_steps": 1, "early_stopping_patience": 0, "dataset_options": {},
                                          "beta_rule": "fixed", "beta_auto_scale": 3.0}
