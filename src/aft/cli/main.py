"""Entry point of the `aft` command: discovers sub-command modules and maps errors to exit codes.

A sub-command is a module in `aft.cli.commands` that defines
`register(subparsers) -> argparse.ArgumentParser` and sets `func=handler` on its parser,
where `handler(args) -> int | None`. Adding a command is adding a file.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import pkgutil
import sys
from collections.abc import Sequence

from aft import __version__
from aft.errors import AftError, ConfigError, DataError, DiskFullError
from aft.paths import is_disk_full

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: commands that run torch on the CPU: they get aft's default thread count (aft.runtime)
THREADED_COMMANDS = frozenset({"train", "extract", "compare", "demo", "predict", "export"})


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


#: OSError numbers that describe the user's input or machine, not a bug (-> one line, exit 2)
_ENV_ERRNOS = {
    errno.EACCES: "permission denied", errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system", errno.ENAMETOOLONG: "file name too long",
    errno.ENOTDIR: "a path component is a file, not a folder", errno.EISDIR: "is a folder, not a file",
}


def one_line(text: str) -> str:
    """An error message on one line (library messages, e.g. from the hub, may span several)."""
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


def environment_error(exc: BaseException) -> AftError | None:
    """The one-line `AftError` for an error caused by the environment or an input file (full disk,
    permissions, over-long names, non-UTF-8 text, invalid YAML, out of memory); None for anything
    else, which is a bug and keeps its traceback."""
    if isinstance(exc, AftError):
        return None
    from aft.cli.extras import missing_extra

    hint = missing_extra(exc)  # an optional package is not installed: name the extra
    if hint is not None:
        return hint
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f" ({_short_path(exc.filename)})" if exc.filename else ""
        if is_disk_full(exc):
            return DiskFullError(errno.ENOSPC, f"no space left on device{where}; free disk space or write to another "
                                               "disk, then re-run")
        if exc.errno in _ENV_ERRNOS:
            return ConfigError(f"{_ENV_ERRNOS[exc.errno]}{where}; check the path and its permissions, or choose "
                               "another one")
        return None
    if isinstance(exc, UnicodeDecodeError):
        return DataError(f"an input file is not valid UTF-8 ({exc.reason} at byte {exc.start}: "
                         f"{exc.object[exc.start:exc.start + 1]!r}); re-save it as UTF-8")
    if isinstance(exc, MemoryError):
        return ConfigError("out of memory; lower the batch size, the resolution or the data size")
    try:
        import yaml
    except ImportError:  # pragma: no cover
        return None
    if isinstance(exc, yaml.YAMLError):
        first = one_line(str(exc))[:300]
        return ConfigError(f"invalid YAML ({first}); fix the file's syntax")
    return None


def _short_path(path: object) -> str:
    text = str(path)
    return repr(text if len(text) <= 120 else text[:60] + "..." + text[-40:])


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
        try:
            if args.command in THREADED_COMMANDS:
                from aft.runtime import configure_threads

                configure_threads(getattr(args, "cfg_threads", None) or getattr(args, "threads", None))
            result = args.func(args)
        except Exception as exc:
            mapped = environment_error(exc)
            if mapped is None:
                raise  # a bug: full traceback
            raise mapped from exc
    except AftError as exc:
        if args.debug:
            raise
        print(f"aft: error: {one_line(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("aft: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `aft ... | head`: the reader left; not an error of ours
        _silence_stdout()
        return EXIT_OK
    try:
        sys.stdout.flush()  # a pipe closed after the last print fails here, not at exit
    except BrokenPipeError:
        _silence_stdout()
    return int(result or EXIT_OK)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not print a traceback."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (captured output)
        pass


if __name__ == "__main__":
    raise SystemExit(main())
