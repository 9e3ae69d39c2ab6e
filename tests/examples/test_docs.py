"""The Python blocks of docs/python-api.md run, in order, as one session (the docs stay true)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _blocks(name: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / name).read_text(encoding="utf-8"), flags=re.S)


def test_python_api_doc_runs(tmp_path, monkeypatch):
    pytest.importorskip("sklearn")
    pytest.importorskip("onnx")
    import torch

    monkeypatch.chdir(tmp_path)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    namespace: dict = {"__name__": "docs"}
    try:
        blocks = _blocks("python-api.md")
        assert len(blocks) >= 7
        for i, code in enumerate(blocks):
            try:
                exec(compile(code, f"python-api.md block {i + 1}", "exec"), namespace)  # noqa: S102
            except Exception as exc:  # noqa: BLE001 - report which block broke
                raise AssertionError(f"docs/python-api.md block {i + 1} failed: {exc!r}") from exc
    finally:
        torch.set_num_threads(before)
    assert (tmp_path / "runs" / "api-demo" / "student.onnx").is_file()
    assert namespace["result"].steps == 20
