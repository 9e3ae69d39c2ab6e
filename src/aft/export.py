"""Export a trained student to ONNX (``aft export --model RUN_DIR --onnx OUT.onnx``).

The exported graph takes the student's *preprocessed* input (what ``student.preprocess(raw)``
returns: float images ``(N, C, H, W)`` or token ids) and returns two outputs, ``logits`` and
``features`` (phi), with a dynamic batch axis. The student's ``student.json`` is stored in the
model's metadata (key ``aft.student``) so that class names travel with the file, and so is what
``student.preprocess`` does to a raw input (key ``aft.preprocessing``: input size, channels, resize,
scaling and normalization; see `preprocessing_spec`), with the class names (``aft.class_names``), so
the file alone is enough to classify an image (docs/integrations.md). After writing,
the file is checked with ``onnx.checker`` and, when onnxruntime is installed, its outputs are
compared with PyTorch's on a batch of another size (which also proves the batch axis is dynamic).

Example:
    >>> from aft.export import export_onnx                     # doctest: +SKIP
    >>> export_onnx("runs/digits-aft", "student.onnx")        # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aft.atomic_io import umask_mode
from aft.errors import AftError, ConfigError, OutputExistsError

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAMES = ("logits", "features")
METADATA_KEY = "aft.student"
PREPROCESSING_KEY = "aft.preprocessing"
CLASS_NAMES_KEY = "aft.class_names"

__all__ = ["DEFAULT_OPSET", "ExportError", "export_onnx", "load_metadata", "load_preprocessing",
           "preprocessing_spec"]


def _image_spec(student: nn.Module, mean: float, std: float) -> dict[str, Any]:
    size = int(student.image_size)  # type: ignore[arg-type]
    return {
        "input": "image", "layout": "NCHW", "dtype": "float32", "size": [size, size],
        "channels": int(getattr(student, "in_chans", 1)),
        "steps": [
            "decode to RGB uint8 (H, W, 3)",
            "divide by 255",
            "channels 1: mean over the RGB channels; channels 3: RGB as is",
            "resize to size with bilinear interpolation, align_corners=False, no antialias "
            "(torch.nn.functional.interpolate); skipped when the image already has that size",
            "subtract mean, divide by std",
        ],
        "scale": 1.0 / 255.0, "resize": "bilinear", "align_corners": False, "antialias": False,
        "mean": mean, "std": std,
    }


#: student name -> what its ``preprocess`` does, as data (the students whose preprocessing is
#: plain array arithmetic; others get ``{"input": "student.preprocess"}``)
PREPROCESSING: dict[str, Any] = {
    "cnn-small": lambda st: _image_spec(st, 0.5, 0.5),
    "timm": lambda st: _image_spec(st, 0.0, 1.0),  # timm's own normalization is inside the graph
}


def preprocessing_spec(student: nn.Module) -> dict[str, Any]:
    """What the exported graph expects, as JSON-able data: for image students, the steps from a
    decoded image to the ``input`` tensor (size, channels, resize, scale, mean, std)."""
    build = PREPROCESSING.get(getattr(student, "name", ""))
    if build is not None:
        return build(student)
    if getattr(student, "modality", "") == "text":
        return {"input": "token ids", "dtype": "int64",
                "steps": ["tokenize with the student's own tokenizer (student.preprocess in aft)"]}
    return {"input": "student.preprocess", "steps": ["the output of the student's preprocess (aft)"]}


class ExportError(AftError, RuntimeError):
    """A student cannot be exported (unsupported operation, no example input, mismatching outputs)."""


class _Outputs(nn.Module):
    """Wraps a student so the traced graph has exactly two tensor outputs."""

    def __init__(self, student: nn.Module) -> None:
        super().__init__()
        self.student = student

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, features = self.student(x)
        return logits, features


@contextlib.contextmanager
def _quiet_output() -> Iterator[None]:
    """Capture file descriptors 1 and 2: the TorchScript exporter dumps its whole graph there on failure."""
    try:
        fds = [fd for fd in (1, 2) if os.fstat(fd) is not None]
    except OSError:  # no such descriptors (a detached process)
        yield
        return
    for st in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, OSError, ValueError):
            st.flush()
    saved = [os.dup(fd) for fd in fds]
    with tempfile.TemporaryFile(mode="w+b") as sink:
        for fd in fds:
            os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            for st in (sys.stdout, sys.stderr):
                with contextlib.suppress(AttributeError, OSError, ValueError):
                    st.flush()
            for fd, keep in zip(fds, saved, strict=True):
                os.dup2(keep, fd)
                os.close(keep)
            sink.seek(0)
            text = sink.read().decode("utf-8", "replace").strip()
            if text:
                log.debug("exporter output:\n%s", text)


def _example_input(student: nn.Module) -> torch.Tensor:
    modality = getattr(student, "modality", "any")
    if modality == "text":  # real token ids at the length the student pads to
        try:
            return student.preprocess(["an example text to export", "another"])  # type: ignore[operator]
        except (AftError, NotImplementedError, AttributeError) as exc:
            log.debug("preprocess on example texts failed (%s); using example_input()", exc)
    example = student.example_input() if hasattr(student, "example_input") else None  # type: ignore[operator]
    if example is None:
        raise ExportError(
            f"student {getattr(student, 'name', type(student).__name__)!r} has no example input; "
            "pass export_onnx(..., example_input=<a batch of preprocessed inputs>)"
        )
    return example


def _second_batch(example: torch.Tensor, size: int = 3) -> torch.Tensor:
    """A batch of another size with varied values (integer inputs: ids taken from the example)."""
    reps = -(-size // example.shape[0])
    base = example.repeat(reps, *([1] * (example.ndim - 1)))[:size].clone()
    if base.is_floating_point():
        g = torch.Generator().manual_seed(0)
        base = base + 0.1 * torch.randn(base.shape, generator=g, dtype=base.dtype)
    return base


def export_onnx(
    model: str | os.PathLike[str] | nn.Module,
    path: str | os.PathLike[str],
    *,
    opset: int = DEFAULT_OPSET,
    example_input: torch.Tensor | None = None,
    module: nn.Module | None = None,
    overwrite: bool = False,
    verify: bool = True,
    rtol: float = 1e-3,
    atol: float = 1e-4,
    trust_remote_code: bool = False,
) -> Path:
    """Write the student (a run folder or a `Student` / ``(logits, features)`` module) as ONNX at `path`.

    Args:
        model: a run folder (``student.json`` + ``student.safetensors``) or the student itself.
        path: the ``.onnx`` file to write (atomically).
        opset: ONNX opset version (17 by default).
        example_input: a batch of preprocessed inputs to trace with (default: the student's own).
        module: for run folders of a custom ``module`` student, the untrained user module.
        overwrite: replace an existing file.
        verify: check the file with onnx.checker and compare onnxruntime's outputs with PyTorch's.
        rtol, atol: tolerances of that comparison.
        trust_remote_code: for a run folder of a transformer student, let it import the model folder's
            own Python code. Off by default and never taken from ``student.json``.

    Returns:
        the written path.

    Raises:
        ExportError: the student uses an operation ONNX cannot express, or the outputs differ.
        OutputExistsError: `path` exists and `overwrite` is false.
        CheckpointError: the run folder holds no readable student.
    """
    try:
        import onnx
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package; pip install 'aft[export]'") from None
    out = Path(path)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{str(out)!r} exists; pass overwrite=True (CLI: --overwrite) or another path")
    if isinstance(model, nn.Module):
        student = model
    else:
        from aft.students.io import load_student

        student = load_student(model, module=module, trust_remote_code=trust_remote_code is True)
    student = student.to("cpu").eval()
    example = (example_input if example_input is not None else _example_input(student)).to("cpu")
    wrapper = _Outputs(student).eval()
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            with torch.no_grad(), warnings.catch_warnings(record=True) as caught, _quiet_output():
                warnings.simplefilter("always")
                torch.onnx.export(
                    wrapper, (example,), str(tmp), dynamo=False, opset_version=int(opset),
                    input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                    dynamic_axes={INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in OUTPUT_NAMES}},
                )
        except Exception as exc:  # noqa: BLE001 - exporter failures come as many exception types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            name = getattr(student, "name", type(student).__name__)
            raise ExportError(f"student {name!r} cannot be exported to ONNX (opset {opset}): {first}; "
                              "keep forward to standard tensor operations or use another opset") from None
        for w in caught:
            if issubclass(w.category, torch.jit.TracerWarning):  # e.g. data-dependent control flow
                log.warning("ONNX export: %s", str(w.message).splitlines()[0])
        proto = onnx.load(str(tmp))
        config = student.config() if hasattr(student, "config") else {"name": type(student).__name__}
        names = list(getattr(student, "class_names", None) or [])
        for key, value in ((METADATA_KEY, config), (PREPROCESSING_KEY, preprocessing_spec(student)),
                           (CLASS_NAMES_KEY, names)):
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, json.dumps(value)
        onnx.save(proto, str(tmp))
        if verify:
            _verify(tmp, wrapper, _second_batch(example), rtol, atol)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, umask_mode())  # mkstemp creates 0600; the file gets what open() would give it
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("wrote %s", out)
    return out


def _verify(path: Path, wrapper: nn.Module, x: torch.Tensor, rtol: float, atol: float) -> None:
    import onnx

    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported ONNX model is invalid: {str(exc).splitlines()[0]}") from None
    try:
        import onnxruntime as ort
    except ImportError:
        log.warning("onnxruntime is not installed: the ONNX outputs were not compared with PyTorch's")
        return
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: x.numpy()})
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise ExportError(f"onnxruntime cannot run the exported model: {str(exc).splitlines()[0]}") from None
    with torch.no_grad():
        expected = [t.float().numpy() for t in wrapper(x)]
    for name, a, b in zip(OUTPUT_NAMES, got, expected, strict=True):
        if a.shape != b.shape or not np.allclose(a, b, rtol=rtol, atol=atol):
            diff = float(np.max(np.abs(a - b))) if a.shape == b.shape else float("nan")
            raise ExportError(f"ONNX {name} differ from PyTorch's (shape {a.shape} vs {b.shape}, max |diff| {diff:.3g}); "
                              "the student's forward is not traceable (data-dependent control flow?)")


def _metadata(path: str | os.PathLike[str], key: str) -> Any:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.metadata_props:
        if entry.key == key:
            return json.loads(entry.value)
    return None


def load_metadata(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``student.json`` stored in an exported file (name, classes, class names...)."""
    return _metadata(path, METADATA_KEY) or {}


def load_preprocessing(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The preprocessing stored in an exported file (`preprocessing_spec`); {} for older files."""
    return _metadata(path, PREPROCESSING_KEY) or {}
