"""Save a student as ``student.safetensors`` + ``student.json`` and rebuild it without any teacher."""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from aft.errors import CheckpointError, ConfigError
from aft.students.base import STUDENTS, Student, build_student, resolve_name
from aft.students.schema import check_student_json

WEIGHTS = "student.safetensors"
CONFIG = "student.json"


def state_for_safetensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """Contiguous, de-aliased CPU copy of the state dict (safetensors refuses shared storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """``safetensors.torch.save`` with the metadata keys in sorted order, so equal content gives equal bytes.

    (safetensors serializes metadata from a hash map whose order changes from process to process.)
    """
    from safetensors.torch import save

    data = save(tensors, metadata=metadata)
    if not metadata:
        return data
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    text = json.dumps({"__metadata__": header.pop("__metadata__"), **header}, separators=(",", ":"),
                      ensure_ascii=False).encode()
    if len(text) > n:  # pragma: no cover - reordering never changes the length
        return data
    return data[:8] + text + b" " * (n - len(text)) + data[8 + n :]


def save_student(student: Student, run_dir: str | Path, *, extra: dict[str, Any] | None = None) -> None:
    """Write ``student.safetensors`` and ``student.json`` into `run_dir` (atomically)."""
    from aft.training.atomic import atomic_write_bytes, atomic_write_json  # lazy: aft.training imports us

    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    data = safetensors_bytes(state_for_safetensors(student))
    atomic_write_bytes(run / WEIGHTS, data)
    meta = student.config()
    meta.update(extra or {})
    meta["weights_sha256"] = hashlib.sha256(data).hexdigest()  # load_student detects flipped bytes
    atomic_write_json(run / CONFIG, meta)


REMOTE_CODE = "trust_remote_code"


def _accepts(name: str, option: str) -> bool:
    """Whether the builder registered for student `name` takes the keyword `option`."""
    import aft.students  # noqa: F401 - make sure built-in students are registered

    reg_name, _ = resolve_name(name, {})
    if reg_name not in STUDENTS:
        return False
    try:
        return option in inspect.signature(STUDENTS.get(reg_name)).parameters
    except (TypeError, ValueError):
        return False


def _remote_code_options(cfg: dict[str, Any], options: dict[str, Any], where: str, trust: bool) -> dict[str, Any]:
    """`options` with ``trust_remote_code`` set by the caller only, never by the saved ``student.json``.

    A saved file that asks for it (top level or in ``options``) is refused unless the caller trusts it.
    """
    asked = options.pop(REMOTE_CODE, None) is True or cfg.get(REMOTE_CODE) is True
    if asked and not trust:
        raise ConfigError(
            f"{where} asks to run the model's own Python code (trust_remote_code: true); refused: a run folder "
            "never runs code, pass --trust-remote-code (API: trust_remote_code=True) only if you trust that folder"
        )
    if _accepts(str(cfg["name"]), REMOTE_CODE):
        options[REMOTE_CODE] = bool(trust)
    return options


def load_student(run_dir: str | Path, *, module: nn.Module | None = None, map_location: str = "cpu",
                 trust_remote_code: bool = False) -> Student:
    """Rebuild the student saved in `run_dir` (no teacher, no feature store needed).

    Nothing from the run folder executes: ``trust_remote_code`` is off unless the caller passes
    ``trust_remote_code=True`` (CLI: ``--trust-remote-code``); a ``student.json`` asking for it is refused.

    Args:
        run_dir: a training run folder (or any folder with ``student.json`` + ``student.safetensors``).
        module: for students of type ``module``, the (untrained) user module to load the weights into.
        map_location: device for the loaded weights.
        trust_remote_code: let a transformer student (``hf:``/``st:``) import the model folder's own
            Python code. Off by default; never taken from ``student.json``.

    Returns:
        the student in eval mode, with ``class_names`` restored.
    """
    run = Path(run_dir)
    cfg_path, w_path = run / CONFIG, run / WEIGHTS
    if not cfg_path.exists() or not w_path.exists():
        raise CheckpointError(f"{str(run)!r} holds no saved student ({CONFIG} + {WEIGHTS}); train one first")
    try:
        cfg = json.loads(cfg_path.read_text())
        if not isinstance(cfg, dict):
            raise ValueError(f"{CONFIG} does not hold a JSON object")
        digest = cfg.get("weights_sha256")
        if digest is not None and hashlib.sha256(w_path.read_bytes()).hexdigest() != digest:
            raise ValueError(f"{WEIGHTS} fails its sha256 check: the file is truncated or corrupt")
        state = load_file(str(w_path), device=map_location)
    except (OSError, ValueError, SafetensorError) as exc:
        why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"saved student in {str(run)!r} is unreadable ({why}); retrain it") from None
    check_student_json(cfg, cfg_path)
    options = _remote_code_options(cfg, dict(cfg.get("options") or {}), repr(str(cfg_path)), trust_remote_code is True)
    if cfg["name"] == "module":
        if module is None:
            raise CheckpointError("this run used a custom nn.Module student; pass load_student(run_dir, module=...)")
        options["module"] = module
    student = build_student(cfg["name"], int(cfg["num_classes"]), **options)
    missing, unexpected = student.load_state_dict(state, strict=False)
    if unexpected or [k for k in missing if k in dict(student.state_dict())]:
        raise CheckpointError(f"saved student weights do not fit {cfg['name']!r} (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}); the run folder is inconsistent")
    student.class_names = cfg.get("class_names")
    if cfg.get("feature_dim") is not None:
        student._feature_dim = int(cfg["feature_dim"])
    student.to(map_location)
    return student.eval()


__all__ = ["load_student", "safetensors_bytes", "save_student", "state_for_safetensors"]
