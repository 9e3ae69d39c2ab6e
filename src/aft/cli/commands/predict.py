"""`aft predict`: classify texts or images with a trained student alone (no teacher needed).

Texts: --text FILE (one text per line; - for stdin) or positional strings with --texts.
Images: positional files or folders (needs Pillow: pip install 'aft[vision]'). Each image is resized
once, by the student's own preprocessing, and the folder is read in batches (--batch-size).
A dataset split: --dataset NAME [--split test] [--data-option key=value ...] (the options of `aft train`);
each line then names the sample id and its true class, and the accuracy is printed last (stderr).
--model takes a run folder, or a student kept by `aft compare --keep` (results/<suite>/students/<run>).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("predict", help="classify texts or images with a trained student",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "-m", required=True, help="run folder (student.json + student.safetensors)")
    p.add_argument("inputs", nargs="*", help="image files/folders, or texts with --texts; text files with --text")
    p.add_argument("--text", dest="text_file", help="file with one text per line ('-' = stdin)")
    p.add_argument("--texts", action="store_true", help="treat positional inputs as texts")
    p.add_argument("--records", metavar="FILE", help="multi-field inputs for a two-tower student: a CSV/JSONL file, one "
                   "column per field (image fields: paths relative to the file)")
    p.add_argument("--dataset", default=None, metavar="NAME",
                   help="classify every sample of a dataset split (e.g. csv, imagefolder, digits)")
    p.add_argument("--split", default="test", help="with --dataset: the split (default test)")
    from aft.cli.commands.train import add_data_flags

    add_data_flags(p, teachers=False)
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=256, metavar="N",
                   help="inputs classified (and image files read) at a time (default 256)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="let a transformer student import its model folder's own Python code (off: nothing from "
                        "the run folder executes; a student.json asking for it is refused)")
    p.set_defaults(func=handler)
    return p


def image_files(paths: list[str]) -> list[Path]:
    """The image files among `paths` (folders are searched recursively, in sorted order)."""
    from aft.errors import DataError

    files: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES))
        elif p.exists():
            files.append(p)
        else:
            raise DataError(f"input {raw!r} does not exist")
    if not files:
        raise DataError("no image files found in the given inputs")
    return files


def check_headers(files: Sequence[Path]) -> None:
    """Open every file's header (no pixels decoded) so that a non-image fails before any output."""
    for f in files:
        _open(f, decode=False)


def read_image(path: Path) -> Any:
    """One image file as a uint8 ``(H, W, 3)`` array, at its own size (the student resizes it)."""
    return _open(path, decode=True)


def _open(path: Path, *, decode: bool) -> Any:
    import numpy as np

    from aft.errors import DataError

    try:
        from PIL import Image
    except ImportError:
        raise DataError("image prediction needs Pillow; pip install 'aft[vision]'") from None
    try:
        with Image.open(path) as im:
            return np.array(im.convert("RGB"), dtype=np.uint8) if decode else None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:  # corrupt or truncated file
        raise DataError(f"cannot read image {str(path)!r} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__});"
                        " remove or replace the file") from None


def _preprocess_each(student: Any, batch: Sequence[Any]) -> Any:
    """Preprocess items one by one (images of any size: each is resized once, to the student's size)."""
    import torch

    return torch.cat([student.preprocess(item[None]) for item in batch], dim=0)


def predict(model_dir: str, inputs: Any, *, device: str = "cpu", batch_size: int = 256,
            trust_remote_code: bool = False) -> list[dict[str, Any]]:
    """Classify `inputs` (texts, uint8 images, or a list of images of different sizes) with the
    student saved in `model_dir`. The answer for one input does not depend on the others.

    `trust_remote_code` is off unless the caller turns it on (never from the run folder's files).
    """
    student = _load(model_dir, device, trust_remote_code)
    out: list[dict[str, Any]] = []
    for s in range(0, len(inputs), batch_size):
        out.extend(_classify(student, inputs[s : s + batch_size], device))
    return out


def predict_files(model_dir: str, files: Sequence[Path], *, device: str = "cpu", batch_size: int = 256,
                  trust_remote_code: bool = False) -> Iterator[tuple[str, dict[str, Any]]]:
    """Classify image files, reading `batch_size` files at a time: yields ``(path, prediction)``."""
    student = _load(model_dir, device, trust_remote_code)
    for s in range(0, len(files), batch_size):
        chunk = files[s : s + batch_size]
        images = [read_image(f) for f in chunk]
        yield from zip((str(f) for f in chunk), _classify(student, images, device), strict=True)


def _load(model_dir: str, device: str, trust_remote_code: bool) -> Any:
    from aft.training import load_student

    return load_student(model_dir, map_location=device, trust_remote_code=trust_remote_code is True)


def _classify(student: Any, batch: Sequence[Any], device: str) -> list[dict[str, Any]]:
    import numpy as np
    import torch

    names = student.class_names or [str(i) for i in range(student.num_classes)]
    is_images = len(batch) > 0 and not isinstance(batch[0], str)
    with torch.no_grad():
        if getattr(student, "modality", "") == "multi":  # multi-field records (aft.data.multifield)
            x = student.preprocess(batch)
        elif is_images and not (isinstance(batch, np.ndarray) and batch.dtype == np.uint8):
            x = _preprocess_each(student, batch)
        else:
            x = student.preprocess(batch)
        probs = torch.softmax(student(x.to(device))[0].float(), dim=1)
    conf, idx = probs.max(dim=1)
    return [{"label": names[int(i)], "probability": float(c)} for c, i in zip(conf, idx, strict=True)]


def handler(args: argparse.Namespace) -> int:
    from aft.errors import DataError
    from aft.training.loop import resolve_device

    resolve_device(args.device)  # `--device banana` / cuda without CUDA: one line, before anything is read
    if args.batch_size < 1:
        raise DataError(f"--batch-size must be >= 1, got {args.batch_size}")

    if args.dataset is not None:
        if args.inputs or args.text_file or args.texts or args.records:
            raise DataError("give --dataset or inputs (files, --texts, --text, --records), not both")
        return _predict_dataset(args)
    if args.data_option:
        raise DataError("--data-option needs --dataset NAME (the options are the dataset's)")
    if args.records:
        keys, inputs = _read_records(args.records)
    elif args.text_file:
        try:
            fh = sys.stdin if args.text_file == "-" else open(args.text_file, encoding="utf-8")  # noqa: SIM115
            with fh:
                texts = [line.rstrip("\n") for line in fh if line.strip()]
        except UnicodeDecodeError as exc:
            raise DataError(f"--text {args.text_file!r} is not valid UTF-8 (byte {exc.object[exc.start]:#04x} at "
                            f"offset {exc.start}); re-save it as UTF-8") from None
        except OSError as exc:
            raise DataError(f"cannot read --text {args.text_file!r} ({exc.strerror or exc}); pass an existing "
                            "text file") from None
        keys, inputs = texts, texts
    elif args.texts or (not args.inputs and not sys.stdin.isatty()):
        texts = list(args.inputs) if args.texts else [ln.rstrip("\n") for ln in sys.stdin if ln.strip()]
        keys, inputs = texts, texts
    else:
        if not args.inputs:
            raise DataError("nothing to classify: give image files/folders, --texts STRINGS or --text FILE")
        files = image_files(args.inputs)
        check_headers(files)
        _print(predict_files(args.model, files, device=args.device, batch_size=args.batch_size,
                             trust_remote_code=args.trust_remote_code is True), args.format)
        return 0
    if not len(inputs):
        raise DataError("nothing to classify: the input is empty")
    preds = predict(args.model, inputs, device=args.device, batch_size=args.batch_size,
                    trust_remote_code=args.trust_remote_code is True)
    _print(zip(keys, preds, strict=True), args.format)
    return 0


def _read_records(path: str) -> tuple[list[str], Any]:
    """(keys, FieldRows) of a multi-field CSV/JSONL; string values of image fields become paths next to the file."""
    from aft.data.multifield import FieldRows, read_rows
    from aft.errors import DataError

    file = Path(path)
    if not file.is_file():
        raise DataError(f"--records {path!r} not found; pass a CSV or JSONL file with one column per field")
    rows = read_rows(file)
    if not rows:
        raise DataError(f"--records {path!r} holds no rows; write one row per input")
    cols: dict[str, list[Any]] = {k: [] for k in rows[0][1]}
    for lineno, row in rows:
        if set(row) != set(cols):
            raise DataError(f"{path}: line {lineno} has the columns {sorted(row)}, the first row {sorted(cols)}; "
                            "give every row the same fields")
        for k, v in row.items():
            cols[k].append(str(v))
    for k, values in cols.items():  # relative image paths are relative to the file, not to the shell
        if all(Path(v).suffix.lower() in IMAGE_SUFFIXES for v in values):
            cols[k] = [str(file.parent / v) if not Path(v).is_absolute() else v for v in values]
    return [f"{file.name}:{ln}" for ln, _ in rows], FieldRows(cols)


def predict_split(model_dir: str, split: Any, *, device: str = "cpu", batch_size: int = 256,
                  trust_remote_code: bool = False) -> Iterator[tuple[str, dict[str, Any]]]:
    """Classify every sample of a `DatasetSplit` (read `batch_size` at a time, lazily where the split is
    lazy): yields ``(sample id, prediction + "true" class name)``."""
    student = _load(model_dir, device, trust_remote_code)
    for s in range(0, len(split), batch_size):
        batch = split.inputs[s : s + batch_size]
        for k, pred in enumerate(_classify(student, batch, device)):
            yield split.ids[s + k], {**pred, "true": split.class_names[int(split.labels[s + k])]}


def _predict_dataset(args: argparse.Namespace) -> int:
    from aft.data import load_split
    from aft.data.options import parse_data_options

    split = load_split(args.dataset, args.split, **parse_data_options(args.data_option))
    correct = total = 0

    def rows() -> Iterator[tuple[str, dict[str, Any]]]:
        nonlocal correct, total
        for key, pred in predict_split(args.model, split, device=args.device, batch_size=args.batch_size,
                                       trust_remote_code=args.trust_remote_code is True):
            correct += pred["label"] == pred["true"]
            total += 1
            yield key, pred

    _print(rows(), args.format)
    print(f"accuracy {correct / max(1, total):.4f} ({correct}/{total}) on {split.dataset}/{split.split}",
          file=sys.stderr)
    return 0


def _print(rows: Iterable[tuple[str, dict[str, Any]]], fmt: str) -> None:
    for key, pred in rows:
        if fmt == "json":
            print(json.dumps({"input": key, **pred}), flush=True)
        else:
            print(f"{pred['label']}\t{pred['probability']:.4f}\t{key}", flush=True)
