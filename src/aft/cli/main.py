"""Entry point of the `aft` command: discovers sub-command modules and maps errors to exit codes.

A sub-command is a module in `aft.cli.commands` that defines
`register(subparsers) -> argparse.ArgumentParser` and sets `func=handler` on its parser,
where `handler(args) -> int | None`. Adding a command is adding a file.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from aft import __version__
from aft.errors import AftError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every discovered sub-command."""
    parser = argparse.ArgumentParser(
        prog="aft",
        description="Adaptive Feature Transfer: train small task-specific models with the knowledge "
        "of large foundation models.",
    )
    parser.add_argument("--version", action="version", version=f"aft {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    import aft.cli.commands as commands_pkg

    for info in sorted(pkgutil.iter_modules(commands_pkg.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"aft.cli.commands.{info.name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI and return the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        result = args.func(args)
    except AftError as exc:
        if args.debug:
            raise
        print(f"aft: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("aft: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(result or EXIT_OK)


if __name__ == "__main__":
    raise SystemExit(main())
