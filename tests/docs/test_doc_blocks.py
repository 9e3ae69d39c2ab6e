"""Every code block in docs/ and the README is exercised: Python blocks run, `aft` command lines parse.

A Python block can opt out with an HTML comment right above it, ``<!-- not-run: reason -->``
(used only for code that needs a network or a GPU); the reason is required.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC_FILES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
BLOCK = re.compile(r"(<!--\s*not-run:(?P<reason>[^>]*)-->\s*\n)?```(?P<lang>[a-z]*)\n(?P<code>.*?)```", re.S)
# pages whose Python blocks are run by a dedicated test (they need a shared session and assets)
RUN_ELSEWHERE = {"python-api.md"}


def _blocks(path: Path, lang: str) -> list[tuple[str, str | None]]:
    text = path.read_text(encoding="utf-8")
    return [(m["code"], m["reason"]) for m in BLOCK.finditer(text) if m["lang"] == lang]


@pytest.mark.parametrize("path", [p for p in DOC_FILES if p.name not in RUN_ELSEWHERE], ids=lambda p: p.name)
def test_python_blocks_run(path, tmp_path, monkeypatch):
    blocks = _blocks(path, "python")
    if not blocks:
        pytest.skip("no python blocks")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"docs:{path.name}"}
    for i, (code, reason) in enumerate(blocks, start=1):
        if reason is not None:
            assert reason.strip(), f"{path.name} block {i}: not-run needs a reason"
            continue
        try:
            exec(compile(code, f"{path.name} block {i}", "exec"), namespace)  # noqa: S102
        except Exception as exc:  # noqa: BLE001 - say which block broke
            raise AssertionError(f"{path.name} python block {i} failed: {exc!r}") from exc


def _aft_lines(path: Path) -> list[str]:
    lines = []
    for code, _ in _blocks(path, "bash") + _blocks(path, "sh") + _blocks(path, "console"):
        joined = code.replace("\\\n", " ")
        for raw in joined.splitlines():
            raw = raw.strip().removeprefix("$ ")
            if raw.startswith("#"):
                continue
            try:
                tokens = shlex.split(raw, comments=True)
            except ValueError:
                continue
            segment: list[str] = []
            for tok in [*tokens, "&&"]:  # `aft a && aft b` is two command lines (quotes respected)
                if tok in ("&&", ";", "||"):
                    if segment and segment[0] in ("aft", ".venv/bin/aft"):
                        lines.append(shlex.join(segment))
                    segment = []
                else:
                    segment.append(tok)
    return lines


ALL_AFT_LINES = [(p.name, line) for p in DOC_FILES for line in _aft_lines(p)]


@pytest.mark.parametrize("doc, line", ALL_AFT_LINES, ids=[f"{d}:{ln[:40]}" for d, ln in ALL_AFT_LINES])
def test_aft_command_lines_parse(doc, line):
    from aft.cli.main import build_parser

    argv = shlex.split(line)[1:]
    argv = [a for a in argv if not a.startswith("$(")]
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help / --version exit 0
        assert exc.code == 0, f"{doc}: `{line}` does not parse"
        return
    assert getattr(args, "func", None) is not None, f"{doc}: `{line}` names no command"


def test_cli_reference_is_current():
    from aft.cli.reference import cli_reference

    current = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert current == cli_reference(), "docs/cli.md is stale: run `python -m aft.cli.reference > docs/cli.md`"
