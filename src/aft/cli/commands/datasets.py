"""`aft datasets`: list the registered datasets and show one dataset's details."""

from __future__ import annotations

import argparse
import inspect

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
