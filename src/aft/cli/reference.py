"""Generates the CLI reference (docs/cli.md) from the parsers' own `--help` text, so it cannot drift."""

from __future__ import annotations

import argparse
import os

from aft.cli.main import build_parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse exposes sub-commands only through this private list
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_reference() -> str:
    """Markdown: the top-level help, then each command's (and sub-command's) help."""
    os.environ["COLUMNS"] = "100"  # stable wrapping
    parser = build_parser()
    out = [
        "# CLI reference",
        "",
        "Generated from the commands' own `--help` by `python -m aft.cli.reference > docs/cli.md`;",
        "a test fails when this page and the code disagree.",
        "",
        "```text",
        parser.format_help().rstrip(),
        "```",
    ]
    for name, sub in sorted(_subparsers(parser).items()):
        out += ["", f"## aft {name}", "", "```text", sub.format_help().rstrip(), "```"]
        for sub_name, subsub in sorted(_subparsers(sub).items()):
            out += ["", f"### aft {name} {sub_name}", "", "```text", subsub.format_help().rstrip(), "```"]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(cli_reference(), end="")
