"""`aft extract`: compute teacher features for dataset splits into the feature store (resumable)."""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial
from typing import Any

DEFAULT_STORE = "features"


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `extract` command."""
    parser = subparsers.add_parser(
        "extract",
        help="extract teacher features for dataset splits into the feature store",
        description="Encode every sample of the given splits with each teacher and store the features "
        "(memory-mapped, keyed by sample id, fingerprinted). Interrupted runs resume where they stopped; "
        "complete, up-to-date stores are skipped.",
    )
    parser.add_argument("--config", "-c", metavar="FILE.yaml", default=None,
                        help="a training config: its dataset, dataset_options, teachers and feature_store are "
                        "the defaults (so `aft extract -c run.yaml` extracts what `aft train -c run.yaml` reads)")
    parser.add_argument("--teacher", action="append", default=[], metavar="NAME",
                        help="teacher name (minilm, mpnet, wordllama, efficientnet-lite0/1/2, st:PATH, hf:PATH, "
                        "timm:NAME); repeat (or comma-separate) for several")
    parser.add_argument("--teachers", dest="old_teachers", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--dataset", default=None, metavar="NAME", help="dataset name (digits, fashion-mnist, csv, ...)")
    parser.add_argument("--split", action="append", metavar="SPLIT", help="split(s) to encode (default: train)")
    parser.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                        help="dataset loader option, e.g. path=data/{split}.csv, classes=neg,pos, name=news "
                        "(repeatable; YAML key dataset_options)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="DataLoader workers reading (decoding, augmenting) the inputs (default: chosen by aft, "
                        "0 for in-memory datasets; 0 = read in this process)")
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="encode a stratified subsample of N samples per split (same N and --seed as training)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --limit subsample (default 0)")
    parser.add_argument("--store", default=None, metavar="DIR",
                        help=f"feature store root (default: $AFT_FEATURE_STORE or ./{DEFAULT_STORE})")
    parser.add_argument("--batch-size", type=int, default=64, help="samples per forward pass (default 64)")
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                        help="stored precision (default float16)")
    parser.add_argument("--device", default=None, help="torch device, e.g. cpu or cuda (default: cpu)")
    parser.add_argument("--resolution", type=int, default=None,
                        help="input resolution for image teachers (EfficientNet default 112)")
    parser.add_argument("--views", type=int, default=1, metavar="K",
                        help="store K views per sample: view 0 clean, views 1..K-1 augmented (default 1; "
                        "costs K x the extraction; see docs/augmentation.md)")
    parser.add_argument("--augment", default=None, metavar="POLICY",
                        help="augmentation policy of the views: image-basic, text-word-dropout, text-crop "
                        "(default: image-basic for images, text-word-dropout for texts)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace stores made with another teacher version, preprocessing or dtype")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--nproc", type=int, default=1, metavar="N",
                        help="extraction processes (relaunches under torchrun; each writes its own shard)")
    parser.add_argument("--partition", choices=("contiguous", "strided"), default="contiguous",
                        help="how batches are split over processes (default contiguous)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for torch (default: chosen by aft and logged with -v; see docs/training.md)")
    parser.set_defaults(func=run)
    return parser


def parse_options(items: list[str]) -> dict[str, Any]:
    """``["k=v", ...]`` -> ``{"k": value}`` (`aft.data.options.parse_data_options`)."""
    from aft.data.options import parse_data_options

    return parse_data_options(items)


def resolve_sources(args: argparse.Namespace) -> tuple[str, dict[str, Any], list[str], str | None]:
    """(dataset, dataset options, teachers, store) from --config, then the flags (flags win)."""
    from aft.cli.commands.train import teacher_names
    from aft.errors import ConfigError

    dataset, options, teachers, store = None, {}, [], None
    if args.config is not None:
        from aft.training.config import load_config

        cfg = load_config(args.config)
        dataset, options, teachers, store = cfg.dataset, dict(cfg.dataset_options), list(cfg.teachers), cfg.feature_store
    dataset = args.dataset or dataset
    options.update(parse_options(args.data_option))
    teachers = teacher_names(args) or teachers
    if not dataset:
        raise ConfigError("no dataset: pass --dataset NAME (or --config with a dataset key)")
    if not teachers:
        raise ConfigError("no teacher: pass --teacher NAME (or --config with a teachers key)")
    return dataset, options, teachers, args.store or store


def load_split(dataset: str, split: str, limit: int | None = None, seed: int = 0, /, **options: Any) -> Any:
    """Load one split via `aft.data.load_split`, optionally as a stratified subsample (`limit`, `seed`)."""
    from aft.data import load_split as load
    from aft.data import stratified_subsample

    loaded = load(dataset, split, **options)
    if limit is not None and limit < len(loaded):
        loaded = stratified_subsample(loaded, limit, seed)
    elif limit is not None and limit > len(loaded):
        print(f"aft: note: {dataset}/{split} has {len(loaded)} samples, fewer than --limit {limit}; encoding all of them",
              file=sys.stderr)
    return loaded


def check_inputs(args: argparse.Namespace, store: str) -> None:
    """Device, resolution and store folder checked before any teacher is loaded (one line each)."""
    from pathlib import Path

    from aft.errors import ConfigError
    from aft.teachers.vision import check_resolution

    if args.device is not None:
        from aft.training.loop import resolve_device

        resolve_device(args.device)
    if args.resolution is not None:
        check_resolution(args.resolution)
    try:
        is_file = Path(store).exists() and not Path(store).is_dir()
    except OSError as exc:
        raise ConfigError(f"store path is unusable ({exc.strerror or exc}); choose another --store") from None
    if is_file:
        raise ConfigError(f"--store {store!r} is a file, not a folder; choose a folder for the feature store")


def run(args: argparse.Namespace) -> int:
    """Handler of `aft extract`."""
    from aft.data.multifield import build_field_teacher as build_teacher  # `teacher@field` names a field
    from aft.features import extract

    distributed = int(os.environ.get("WORLD_SIZE", "1")) > 1
    if args.nproc > 1 and not distributed:
        from aft.features.sharded import relaunch_under_torchrun

        return relaunch_under_torchrun(args.nproc)
    if distributed or args.nproc < 1:
        from aft.features.sharded import check_distributed_args, extract_distributed, init_distributed

        check_distributed_args(args.nproc)
        init_distributed(args.device)
        extract = partial(extract_distributed, partition=args.partition)  # noqa: F811 - one shard per rank

    dataset, options, names, chosen_store = resolve_sources(args)
    store = chosen_store or os.environ.get("AFT_FEATURE_STORE") or DEFAULT_STORE
    check_inputs(args, store)
    if args.workers is not None and args.workers < 0:
        from aft.errors import ConfigError

        raise ConfigError(f"--workers must be >= 0 (0 reads in this process), got {args.workers}")
    splits = args.split or ["train"]
    teachers = [build_teacher(name, device=args.device, resolution=args.resolution)
                if args.resolution is not None else build_teacher(name, device=args.device)
                for name in names]
    extra = {} if args.workers is None or distributed else {"workers": args.workers}
    for split_name in splits:
        split = load_split(dataset, split_name, args.limit, args.seed, **options)
        paths = extract(teachers, split, store, batch_size=args.batch_size, dtype=args.dtype,
                        progress=not args.no_progress, views=args.views, augmentation=args.augment, **extra)
        if int(os.environ.get("RANK", "0")) != 0:
            continue
        for teacher, path in zip(teachers, paths, strict=True):
            views = f", {args.views} views" if args.views > 1 else ""
            print(f"{teacher.name} {split.dataset}/{split.split} ({len(split)} samples{views}, dim {teacher.dim}): {path}")
    sys.stdout.flush()
    return 0
