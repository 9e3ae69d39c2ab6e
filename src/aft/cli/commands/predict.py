"""`aft predict`: classify texts or images with a trained student alone (no teacher needed).

Texts: ``--text FILE`` (one text per line; ``-`` for stdin) or positional strings with ``--texts``.
Images: positional files or folders (needs Pillow).
"""

from __future__ import annotations

import argparse
import json
import sys
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
    p.add_argument("--format", choices=["text", "json"], default="text")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--trust-remote-code", action="store_true",
                   help="let a transformer student import its model folder's own Python code (off: nothing from "
                        "the run folder executes; a student.json asking for it is refused)")
    p.set_defaults(func=handler)
    return p


def _load_images(paths: list[str]) -> tuple[list[str], Any]:
    import numpy as np

    from aft.errors import DataError

    try:
        from PIL import Image
    except ImportError:
        raise DataError("image prediction needs Pillow; pip install pillow") from None
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
    arrays = []
    for f in files:
        try:
            with Image.open(f) as im:
                arrays.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:  # corrupt or truncated file
            raise DataError(f"cannot read image {str(f)!r} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__});"
                            " remove or replace the file") from None
    if len({a.shape for a in arrays}) > 1:
        size = arrays[0].shape[:2][::-1]
        arrays = [np.asarray(Image.fromarray(a).resize(size)) for a in arrays]
    return [str(f) for f in files], np.stack(arrays)


def predict(model_dir: str, inputs: Any, *, device: str = "cpu", batch_size: int = 256,
            trust_remote_code: bool = False) -> list[dict[str, Any]]:
    """Classify `inputs` (texts or uint8 images) with the student saved in `model_dir`.

    `trust_remote_code` is off unless the caller turns it on (never from the run folder's files).
    """
    import torch

    from aft.training import load_student

    student = load_student(model_dir, map_location=device, trust_remote_code=trust_remote_code is True)
    names = student.class_names or [str(i) for i in range(student.num_classes)]
    out = []
    with torch.no_grad():
        for s in range(0, len(inputs), batch_size):
            x = student.preprocess(inputs[s : s + batch_size]).to(device)
            probs = torch.softmax(student(x)[0].float(), dim=1)
            conf, idx = probs.max(dim=1)
            out.extend({"label": names[int(i)], "probability": float(c)} for c, i in zip(conf, idx, strict=True))
    return out


def handler(args: argparse.Namespace) -> int:
    from aft.errors import DataError
    from aft.training.loop import resolve_device

    resolve_device(args.device)  # `--device banana` / cuda without CUDA: one line, before anything is read

    if args.text_file:
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
        keys, inputs = _load_images(args.inputs)
    if not len(inputs):
        raise DataError("nothing to classify: the input is empty")
    preds = predict(args.model, inputs, device=args.device, batch_size=args.batch_size,
                    trust_remote_code=args.trust_remote_code is True)
    for key, pred in zip(keys, preds, strict=True):
        if args.format == "json":
            print(json.dumps({"input": key, **pred}))
        else:
            print(f"{pred['label']}\t{pred['probability']:.4f}\t{key}")
    return 0
