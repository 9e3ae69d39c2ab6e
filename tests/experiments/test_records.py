"""records.jsonl survives short writes, full disks and torn lines, is strict JSON, de-duplicates,
and is locked against a second writer."""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aft.errors import AftError, DiskFullError
from aft.experiments import records as R
from aft.experiments.records import RecordsLockedError, RunRecord, append_record, read_records, records_lock


def _rec(seed: int = 0, **kw) -> RunRecord:
    base = dict(suite="s", dataset="d", student="cnn-small", teachers=["t"], method="aft", beta=1.0,
                train_size=10, seed=seed, phase="final", val_acc=0.5, test_acc=0.4)
    base.update(kw)
    return RunRecord(**base)


def test_short_writes_are_continued(tmp_path, monkeypatch):
    real = os.write
    calls = []

    def short(fd, data):
        calls.append(len(data))
        return real(fd, bytes(data[:7]))

    monkeypatch.setattr(R.os, "write", short)
    p = tmp_path / "r.jsonl"
    append_record(p, _rec(0))
    append_record(p, _rec(1))
    assert len(calls) > 4  # really written in pieces
    assert [r.seed for r in read_records(p)] == [0, 1]


def test_write_of_zero_bytes_is_disk_full_and_leaves_the_file_as_before(tmp_path, monkeypatch):
    p = tmp_path / "r.jsonl"
    append_record(p, _rec(0))
    before = p.read_bytes()
    real = os.write
    state = {"n": 0}

    def dies(fd, data):
        state["n"] += 1
        return real(fd, bytes(data[:20])) if state["n"] == 1 else 0

    monkeypatch.setattr(R.os, "write", dies)
    with pytest.raises(DiskFullError, match="disk full"):
        append_record(p, _rec(1))
    assert p.read_bytes() == before


def test_enospc_mid_line_is_one_line_error_and_no_torn_line(tmp_path, monkeypatch):
    p = tmp_path / "r.jsonl"
    append_record(p, _rec(0))
    before = p.read_bytes()
    real = os.write
    state = {"n": 0}

    def full(fd, data):
        state["n"] += 1
        if state["n"] == 1:
            return real(fd, bytes(data[:30]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(R.os, "write", full)
    with pytest.raises(DiskFullError) as info:
        append_record(p, _rec(1))
    assert isinstance(info.value, AftError) and "\n" not in str(info.value) and "no space left" in str(info.value)
    assert p.read_bytes() == before
    monkeypatch.setattr(R.os, "write", real)
    append_record(p, _rec(2))
    assert [r.seed for r in read_records(p)] == [0, 2]


def test_torn_last_line_is_skipped_then_repaired_on_append(tmp_path, caplog):
    p = tmp_path / "r.jsonl"
    append_record(p, _rec(0))
    with open(p, "ab") as fh:
        fh.write(_rec(1).to_json().encode()[:25])  # a write cut short by a crash
    with caplog.at_level(logging.WARNING):
        assert [r.seed for r in read_records(p)] == [0]
    assert "torn last line" in caplog.text
    append_record(p, _rec(2))
    assert [r.seed for r in read_records(p)] == [0, 2]
    assert all(json.loads(line) for line in p.read_text().splitlines())


def test_complete_last_record_missing_its_newline_is_kept(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text(_rec(0).to_json())  # no trailing newline
    append_record(p, _rec(1))
    assert [r.seed for r in read_records(p)] == [0, 1]


def test_invalid_line_in_the_middle_is_still_an_error(tmp_path):
    p = tmp_path / "r.jsonl"
    p.write_text(_rec(0).to_json() + "\n{oops\n" + _rec(1).to_json() + "\n")
    with pytest.raises(AftError, match=":2: not a valid run record"):
        read_records(p)


def test_non_finite_floats_are_written_as_null(tmp_path):
    p = tmp_path / "r.jsonl"
    rec = _rec(0, val_acc=float("nan"), test_acc=float("inf"), rho={"t": {"mean": float("-inf"), "max": 1.0}},
               curve=[{"step": 1.0, "val_acc": 0.1, "loss": float("nan")}], extra={"x": [float("nan"), 2.0]})
    append_record(p, rec)
    text = p.read_text()
    assert "NaN" not in text and "Infinity" not in text

    def refuse(name):
        raise AssertionError(f"bare {name} in records.jsonl")

    data = json.loads(text, parse_constant=refuse)
    assert data["test_acc"] is None and data["rho"]["t"] == {"mean": None, "max": 1.0}
    back = read_records(p)[0]
    assert math.isnan(back.val_acc) and back.test_acc is None and back.curve[0]["loss"] is None
    assert back.extra["x"] == [None, 2.0]


def test_duplicate_keys_read_once_with_a_warning(tmp_path, caplog):
    p = tmp_path / "r.jsonl"
    append_record(p, _rec(0, val_acc=0.1))
    append_record(p, _rec(1))
    append_record(p, _rec(0, val_acc=0.9))
    append_record(p, _rec(0, val_acc=0.8))
    with caplog.at_level(logging.WARNING):
        recs = read_records(p)
    assert [(r.seed, r.val_acc) for r in recs] == [(0, 0.1), (1, 0.5)]
    assert "2 duplicate run record(s)" in caplog.text


_HOLDER = """
import sys, time
from aft.experiments.records import records_lock
with records_lock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(60)
"""


def test_second_writer_is_refused_with_the_holders_pid(tmp_path):
    from test_grid import FakeExecutor, _suite

    from aft.experiments.grid import run_grid

    p = tmp_path / "r.jsonl"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(R.__file__).parents[2]), *sys.path])}
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, str(p)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        ex = FakeExecutor()
        with pytest.raises(RecordsLockedError) as info:
            run_grid(_suite(), p, ex, progress=False)
        msg = str(info.value)
        assert f"pid {holder.pid}" in msg and str(p) in msg and "--records" in msg and "\n" not in msg
        assert ex.calls == [] and not p.exists()
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.05)
    out = run_grid(_suite(), p, FakeExecutor(), progress=False)  # the lock died with its holder
    assert out.ran > 0


def test_lock_is_reentrant_in_one_process(tmp_path):
    p = tmp_path / "r.jsonl"
    with records_lock(p), records_lock(p):
        append_record(p, _rec(0))
    with records_lock(p):  # released after the outer block
        pass
    assert R.lock_path(p).name == "r.jsonl.lock"
