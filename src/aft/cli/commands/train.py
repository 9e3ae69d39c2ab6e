"""`aft train`: train a student with a transfer method (one loop for every method).

Settings come from --config FILE.yaml, then --set key=value overrides, then explicit flags.
Own data: --dataset csv --data-option path=data/{split}.csv (YAML: dataset_options: {path: ...}).
Teachers: --teacher NAME (repeatable) and --store DIR, as in `aft extract`.
--nproc N relaunches itself under torchrun with N data-parallel processes.
On CPU, --threads N (config key threads) sets the torch thread count; by default aft picks one
(see docs/training.md) unless OMP_NUM_THREADS is set.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any


def _beta_arg(text: str) -> float | str:
    """``--beta``: a number >= 0, or ``auto`` (measured from the gradient norms; docs/regularizers.md)."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a number nor 'auto'") from None


#: explicit flags -> (config key, type, metavar, help); each key is also settable with --set
_FLAGS: list[tuple[str, str, Any, str, str]] = [
    ("--dataset", "dataset", str, "NAME", "dataset name (aft.data)"),
    ("--student", "student", str, "NAME",
     "student name: cnn-small, text-cnn, wordllama-bag, minilm, st:<path>, hf:<id>, timm:<name>"),
    ("--method", "method", str, "NAME", "transfer method: aft, aft-dense, kd, rkd, ft, btune, none..."),
    ("--beta", "beta", _beta_arg, "FLOAT|auto", "regularizer weight (>= 0), or auto: measured when the warm-up starts "
     "from the ratio of the task's and the regularizer's gradient norms (no grid; docs/regularizers.md)"),
    ("--steps", "steps", int, "N", "optimizer steps"),
    ("--epochs", "epochs", float, "FLOAT", "epochs (instead of --steps)"),
    ("--batch-size", "batch_size", int, "N", "global batch size"),
    ("--grad-accum", "grad_accum_steps", int, "N",
     "gradient accumulation: each step sums N micro-batches of batch-size/N (see docs/training.md)"),
    ("--lr", "lr", float, "FLOAT", "student learning rate"),
    ("--seed", "seed", int, "N", "random seed"),
    ("--train-limit", "train_limit", int, "N", "stratified subsample of the training split"),
    ("--views", "views", int, "N", "augmented views per sample (1 = clean only; see docs/augmentation.md)"),
    ("--augment", "augmentation", str, "POLICY", "augmentation policy for views > 1: image-basic, "
     "text-word-dropout, text-crop (default by modality)"),
    ("--select", "select", str, "last|best|cv", "keep the last or the best-validation weights, or cv: choose "
     "beta (from --beta-grid) and the step by k-fold cross-validation, then retrain on all labels"),
    ("--device", "device", str, "DEVICE", "cpu, cuda, cuda:N, mps or auto"),
    ("--precision", "precision", str, "fp32|bf16|fp16", "autocast precision on GPU"),
    ("--workers", "workers", int, "N", "DataLoader workers reading lazy inputs (default: chosen by aft; 0 = none)"),
    ("--threads", "threads", int, "N", "CPU threads for torch (default: chosen by aft, logged; see docs/training.md)"),
    ("--output", "output", str, "DIR", "run folder"),
]


def add_data_flags(p: argparse.ArgumentParser, *, teachers: bool = True) -> None:
    """The flags every command shares for its data (`--data-option`) and teachers (`--teacher`, `--store`)."""
    p.add_argument("--data-option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset loader option, e.g. path=data/{split}.csv, classes=neg,pos, name=news "
                   "(repeatable; YAML key dataset_options)")
    if not teachers:
        return
    p.add_argument("--teacher", action="append", default=[], metavar="NAME",
                   help="teacher name; repeat (or comma-separate) for several (YAML key teachers)")
    p.add_argument("--store", default=None, metavar="DIR",
                   help="feature store root (default: $AFT_FEATURE_STORE or ./features; YAML key feature_store)")
    p.add_argument("--teachers", dest="old_teachers", default=None, help=argparse.SUPPRESS)
    p.add_argument("--features", dest="old_features", default=None, help=argparse.SUPPRESS)


def teacher_names(args: argparse.Namespace) -> list[str]:
    """--teacher (repeatable, comma-separated) plus the deprecated --teachers A,B (with a warning)."""
    names = [t.strip() for item in args.teacher for t in item.split(",") if t.strip()]
    if getattr(args, "old_teachers", None):
        print("aft: warning: --teachers is deprecated; use --teacher NAME (repeatable)", file=sys.stderr)
        names += [t.strip() for t in args.old_teachers.split(",") if t.strip()]
    return names


def store_arg(args: argparse.Namespace) -> str | None:
    """--store, or the deprecated --features (with a warning)."""
    if getattr(args, "old_features", None):
        print("aft: warning: --features is deprecated; use --store DIR", file=sys.stderr)
        return args.store or args.old_features
    return args.store


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("train", help="train a student with a transfer method",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", "-c", metavar="FILE.yaml", help="YAML config file (TrainConfig keys)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key (repeatable; method_options.x=1 for sub-keys)")
    for flag, key, tp, metavar, text in _FLAGS:
        p.add_argument(flag, dest=f"cfg_{key}", type=tp, default=None, metavar=metavar, help=text)
    add_data_flags(p)
    p.add_argument("--overwrite", action="store_true", default=None, help="replace an existing run folder")
    p.add_argument("--resume", action="store_true", default=None, help="continue from the run's last checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--nproc", type=int, default=1, metavar="N", help="data-parallel processes (launches torchrun)")
    p.add_argument("--beta-grid", default=None, metavar="B1,B2,...",
                   help="with --select cv: the betas cross-validated (default: --beta alone, choosing only the step)")
    p.add_argument("--folds", type=int, default=5, metavar="K",
                   help="with --select cv: number of stratified folds (default 5)")
    p.add_argument("--cv-score", choices=["loss", "accuracy"], default=None,
                   help="with --select cv: compare the betas by mean fold validation cross-entropy (loss, the "
                        "default) or accuracy")
    p.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    p.set_defaults(func=handler)
    return p


def resolve(args: argparse.Namespace) -> Any:
    """The `TrainConfig` from --config, --set and explicit flags (in that order of precedence)."""
    from aft.training.config import _split_override, load_config

    overrides: dict[str, Any] = {}
    for text in args.overrides:
        key, value = _split_override(text)
        overrides[key] = value
    for _, key, _, _, _ in _FLAGS:
        value = getattr(args, f"cfg_{key}")
        if value is not None:
            overrides[key] = value
    if overrides.get("beta") == "auto":  # --beta auto: the rule, with the configured beta as its scale
        del overrides["beta"]
        overrides["beta_rule"] = "auto"
    from aft.data.options import dataset_label, parse_data_options

    for key, value in parse_data_options(args.data_option).items():
        overrides[f"dataset_options.{key}"] = value
    teachers, store = teacher_names(args), store_arg(args)
    if teachers:
        overrides["teachers"] = teachers
    if store is not None:
        overrides["feature_store"] = store
    if args.overwrite:
        overrides["overwrite"] = True
    if args.resume:
        overrides["resume"] = True
    if args.no_progress:
        overrides["progress"] = False
    cfg = load_config(args.config, overrides)
    if cfg.teachers and not cfg.feature_store:
        cfg.feature_store = os.environ.get("AFT_FEATURE_STORE") or "features"  # the default of `aft extract`
    if cfg.output is None:
        label = dataset_label(cfg.dataset, cfg.dataset_options) if cfg.dataset else "data"
        cfg.output = os.path.join("runs", f"{label}-{cfg.method}-{cfg.student}".replace(":", "_").replace("/", "_"))
    return cfg


def handler(args: argparse.Namespace) -> int:
    from aft.errors import ConfigError

    select_cv = args.cfg_select == "cv"
    if select_cv:
        args.cfg_select = None
    elif args.beta_grid is not None:
        raise ConfigError("--beta-grid is used with --select cv only; add --select cv or drop it")
    elif args.cv_score is not None:
        raise ConfigError("--cv-score is used with --select cv only; add --select cv or drop it")
    cfg = resolve(args)  # config errors surface before any process is launched
    if select_cv and cfg.beta_rule == "auto":
        raise ConfigError("--beta auto needs no grid; drop --select cv (or cross-validate numbers with --beta-grid)")
    if args.nproc > 1 and cfg.beta_rule == "auto":
        raise ConfigError("--beta auto runs in one process for now; measure it without --nproc (result.json names "
                          "beta_auto), then pass that number as --beta")
    if cfg.threads is not None and args.cfg_threads is None:  # `threads:` in the config file / --set
        from aft.runtime import configure_threads

        configure_threads(cfg.threads)
    if args.print_config:
        print(json.dumps(cfg.to_dict(), indent=2))
        return 0
    if args.nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        from aft.training.loop import preflight

        preflight(cfg)
        cleaned, skip = [], False
        for a in sys.argv[1:]:
            if skip:
                skip = False
                continue
            if a == "--nproc":
                skip = True
                continue
            if a.startswith("--nproc="):
                continue
            cleaned.append(a)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.nproc}",
               "-m", "aft", *cleaned]
        return subprocess.call(cmd)

    if select_cv:
        return _train_cv(args, cfg)

    from aft.training import train

    result = train(cfg)
    if result.run_dir is not None and int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps({"run_dir": str(result.run_dir), **result.to_json()}, indent=2))
    return 0


def _train_cv(args: argparse.Namespace, cfg: Any) -> int:
    """`--select cv`: choose beta and the step by cross-validation, retrain on all labels, and add
    the choice and every fold's score to result.json."""
    from aft.atomic_io import atomic_write_json
    from aft.errors import ConfigError
    from aft.experiments.selection import DEFAULT_CV_SCORE, cross_validate_train, parse_beta_grid

    if args.nproc > 1:
        raise ConfigError("--select cv runs in one process; drop --nproc")
    if args.resume:
        raise ConfigError("--select cv cannot --resume; rerun it (with --overwrite)")
    betas = parse_beta_grid(args.beta_grid) if args.beta_grid is not None else [cfg.beta]
    result, choice, folds = cross_validate_train(cfg, betas, args.folds, args.cv_score or DEFAULT_CV_SCORE)
    selection = {**choice.to_dict(), "folds": args.folds, "fold_seed": cfg.seed, "fold_runs": folds}
    if result.run_dir is not None:
        path = result.run_dir / "result.json"
        atomic_write_json(path, {**json.loads(path.read_text(encoding="utf-8")), "selection": selection})
    print(json.dumps({"run_dir": str(result.run_dir), **result.to_json(),
                      "selection": {k: selection[k] for k in ("mode", "score", "beta", "step", "mean", "se", "at_edge")}},
                     indent=2))
    return 0
