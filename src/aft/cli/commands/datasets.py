"""`aft datasets`: list the registered datasets, show one dataset's details, export images to files."""

from __future__ import annotations

import argparse
import inspect
import os
import shutil
import tempfile
from pathlib import Path

from aft.data import dataset_info, dataset_names


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `datasets` command with its `list` and `info` sub-commands."""
    parser = subparsers.add_parser(
        "datasets",
        help="list datasets and show their splits, classes and options",
        description="Built-in datasets and generic loaders (csv, jsonl, imagefolder).",
    )
    sub = parser.add_subparsers(dest="datasets_command", metavar="SUBCOMMAND")
    p_list = sub.add_parser("list", help="one line per registered dataset", description="List the datasets.")
    p_list.set_defaults(func=_list)
    p_info = sub.add_parser(
        "info", help="splits, sizes, classes and loader options of one dataset", description="Show one dataset."
    )
    p_info.add_argument("name", help="dataset name (see `aft datasets list`)")
    p_info.set_defaults(func=_info)
    p_exp = sub.add_parser(
        "export", help="write a split's images as PNG files (CLASS/ID.png), e.g. to try `aft predict`",
        description="Write the images of one split as PNG files in DIR/<class>/<id>.png (an imagefolder "
        "layout); --limit takes a seeded stratified sample. Needs Pillow (pip install 'aft[vision]').")
    p_exp.add_argument("name", help="an image dataset (see `aft datasets list`)")
    p_exp.add_argument("--split", default="test", help="split to export (default: test)")
    p_exp.add_argument("--limit", type=int, default=None, metavar="N", help="export a stratified sample of N images")
    p_exp.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the sample (default 0)")
    p_exp.add_argument("--out", required=True, metavar="DIR", help="folder to write (must not exist, or be empty)")
    p_exp.add_argument("--overwrite", action="store_true", help="replace an existing non-empty --out folder")
    p_exp.set_defaults(func=_export)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    return parser


def _list(args: argparse.Namespace) -> int:
    print(f"{'name':<15} {'modality':<8} {'splits':<12} description")
    for name in dataset_names():
        info = dataset_info(name)
        splits = ",".join(info.splits) or "any"
        print(f"{name:<15} {info.modality:<8} {splits:<12} {info.description}")
    return 0


def _info(args: argparse.Namespace) -> int:
    info = dataset_info(args.name)
    print(f"name:        {info.name}")
    print(f"modality:    {info.modality}")
    print(f"description: {info.description}")
    print(f"splits:      {', '.join(f'{s} ({info.sizes[s]})' if s in info.sizes else s for s in info.splits) or 'any (selects a file or folder)'}")
    if info.class_names:
        print(f"classes:     {', '.join(info.class_names)}")
    if info.asset:
        print(f"asset:       {info.asset}")
    for opt, default in info.options.items():
        shown = "(required)" if default is inspect.Parameter.empty else repr(default)
        print(f"option:      {opt} = {shown}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from aft.data import load_split
    from aft.errors import ConfigError, DataError, OutputExistsError
    from aft.training.data import subsample

    info = dataset_info(args.name)
    if info.modality != "image":
        raise ConfigError(f"dataset {args.name!r} is {info.modality}, not images; `datasets export` writes image "
                          "files only")
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be >= 1, got {args.limit}")
    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not args.overwrite:
        raise OutputExistsError(f"--out {str(out)!r} exists and is not empty; pass --overwrite or another folder")
    try:
        from PIL import Image
    except ImportError:
        raise DataError("writing images needs Pillow; pip install 'aft[vision]'") from None
    split = subsample(load_split(args.name, args.split), args.limit, args.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:  # written next to --out, then renamed: no half-written folder
        for sample_id, image, label in zip(split.ids, split.inputs, split.labels, strict=True):
            folder = tmp / _safe(split.class_names[int(label)])
            folder.mkdir(exist_ok=True)
            Image.fromarray(image).save(folder / f"{_safe(str(sample_id))}.png")
        os.chmod(tmp, 0o777 & ~_umask())
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {len(split)} images of {args.name}/{args.split} to {out}")
    return 0


def _safe(name: str) -> str:
    """A file name from a class name or sample id (no separators, no leading dot)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "_" for c in name).lstrip(".")
    return cleaned or "_"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
