"""`aft features info PATH [--verify]`: summarize (and optionally checksum) a feature store."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `features` command with its `info` sub-command."""
    parser = subparsers.add_parser("features", help="inspect feature stores written by `aft extract`")
    sub = parser.add_subparsers(dest="features_command", metavar="SUBCOMMAND")
    p_info = sub.add_parser("info", help="print a store's manifest summary",
                            description="Print the manifest summary of one feature store directory.")
    p_info.add_argument("path", help="store directory (the one holding manifest.json)")
    p_info.add_argument("--verify", action="store_true",
                        help="also re-hash the array and ids files and scan every row for NaN/Inf")
    p_info.add_argument("--json", action="store_true", help="print JSON instead of text")
    p_info.set_defaults(func=_info)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
    return parser


def _info(args: argparse.Namespace) -> int:
    from aft.features import FeatureStore

    store = FeatureStore.open(args.path)
    info = store.info()
    if args.verify:
        store.verify_checksum()
        store.check_finite()
        info["verified"] = "sha256 ok, all values finite"
    if args.json:
        print(json.dumps(info, indent=1, sort_keys=True))
        return 0
    width = max(len(k) for k in info)
    for key, value in info.items():
        if isinstance(value, dict):
            value = json.dumps(value, sort_keys=True)
        print(f"{key:<{width}}  {value}")
    return 0
