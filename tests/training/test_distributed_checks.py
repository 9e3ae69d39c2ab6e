"""Data-parallel checks (issue 14, item 8), 2 gloo processes on CPU: uneven batches are one clear
error on every rank, the gather emits no per-call FutureWarning, and a global batch rounded down
to split over the processes is logged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_distributed import free_port

HERE = Path(__file__).parent


@pytest.fixture(scope="module")
def seen(tmp_path_factory) -> dict[str, list[str]]:
    out = tmp_path_factory.mktemp("dist-checks")
    port, procs = free_port(), []
    for rank in range(2):
        env = dict(os.environ, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=str(port), OMP_NUM_THREADS="1",
                   PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
        procs.append(subprocess.Popen([sys.executable, str(HERE / "_dist_check_worker.py"), "uneven,warning,small",
                                       str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    logs = [p.communicate(timeout=240)[0].decode() for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(logs)  # no rank aborted
    return {f.stem: f.read_text().splitlines() for f in out.glob("*.txt")}


def test_uneven_batches_raise_one_clear_error_on_every_rank(seen):
    for rank in (0, 1):
        error, after = seen[f"uneven-{rank}"]
        assert error.startswith("error: data-parallel ranks hold batches of different shapes "
                                "(rank 0: (3, 4), rank 1: (2, 4))"), error
        assert "\n" not in error and "divisible by the number of processes" in error
        assert after == "after: 2"  # the process group survived: every rank raised, none aborted


def test_gather_emits_no_future_warning_and_keeps_the_gradient(seen):
    # rank r contributes 2 rows of value r; the sum's gradient reaches each local row once per rank
    for rank in (0, 1):
        assert seen[f"warning-{rank}"] == ["rows 4 values [0.0, 1.0] grad 12"], seen[f"warning-{rank}"]


def test_a_batch_rounded_down_for_the_processes_is_logged(seen):
    (line,) = seen["small-0"]
    assert "global batch 7 (all 7 training samples) rounded down to 6 to split over 2 processes" in line
    assert seen["small-1"] == ["no warning"]  # rank 0 logs it once
