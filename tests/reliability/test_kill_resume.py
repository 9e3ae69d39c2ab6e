"""`aft extract` and `aft train` SIGKILLed at precise points, then rerun: the final store / weights are
byte-identical to an uninterrupted run, and no file a later command reads is ever half written."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _rel_helpers import assert_run_files_intact, assert_store_readable_or_incomplete, install_kill

from aft.cli.main import main

DRIVER = Path(__file__).with_name("_driver.py")
REPO = Path(__file__).resolve().parents[2]


def extract_args(store: Path) -> list[str]:
    return ["extract", "--teacher", "rp-image", "--dataset", "digits", "--split", "train", "--store", str(store),
            "--batch-size", "64", "--no-progress"]


def train_args(store: Path, out: Path) -> list[str]:
    return ["train", "--dataset", "digits", "--method", "aft", "--teacher", "rp-image", "--store", str(store),
            "--student", "cnn-small", "--set", "student_options={image_size: 8, width: 4, dropout: 0.2}",
            "--steps", "12", "--batch-size", "32", "--train-limit", "200", "--select", "best",
            "--set", "eval_every=3", "--set", "checkpoint_every=4", "--set", "log_every=2",
            "--set", "tensorboard=false", "--device", "cpu", "--no-progress", "--output", str(out)]


def killed(args: list[str], plan: str, cwd: Path, spawn: bool = False) -> None:
    """Run the CLI in a child process with the kill point `plan` armed; it must die by SIGKILL.

    By default the child is forked from this process (torch already imported: fast); with
    `spawn` it is a fresh interpreter running `_driver.py` (the real command-line path).
    """
    if spawn:
        env = {**os.environ, "AFT_TEST_KILL": plan, "AFT_TEST_CKPT_S": "0", "OMP_NUM_THREADS": "1",
               "PYTHONPATH": str(REPO / "src")}
        proc = subprocess.run([sys.executable, str(DRIVER), *args], cwd=cwd, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == -signal.SIGKILL, f"{plan}: exit {proc.returncode}\n{proc.stderr[-2000:]}"
        return
    pid = os.fork()
    if pid == 0:  # child: arm the kill point, run the command; reaching the end is a failure (exit 3)
        code = 3
        try:
            sys.modules["aft.features.extract"].extract.__kwdefaults__["checkpoint_every_s"] = 0.0
            install_kill(plan)
            main(args)
        finally:
            os._exit(code)
    deadline = time.monotonic() + 120
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            pytest.fail(f"{plan}: the child did not finish in time")
        time.sleep(0.02)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"{plan}: status {status}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted extraction and training run (in-process)."""
    root = tmp_path_factory.mktemp("ref")
    assert main(extract_args(root / "store")) == 0
    assert main(train_args(root / "store", root / "run")) == 0
    (store,) = [p.parent for p in (root / "store").rglob("manifest.json")]
    return root / "store", store, root / "run"


def store_files(store_root: Path) -> Path:
    (path,) = [p.parent for p in store_root.rglob("features.bin")]
    return path


@pytest.mark.parametrize("plan", [
    "pwrite:1",                 # early: the very first batch is torn
    "pwrite:12",                # mid: batch 12 half written, progress recorded up to batch 11
    "replace:progress.json:6",  # while a progress checkpoint is being written
    "replace:manifest.json:1",  # while the manifest (the "complete" mark) is being written
])
def test_extract_killed_then_rerun_is_byte_identical(tmp_path, reference, plan):
    _, ref_store, _ = reference
    store_root = tmp_path / "store"
    killed(extract_args(store_root), plan, tmp_path, spawn=False)
    path = store_files(store_root)
    assert not (path / "manifest.json").exists()  # an interrupted store never looks complete
    assert_store_readable_or_incomplete(store_root)
    assert main(extract_args(store_root)) == 0
    for name in ("features.bin", "ids.json"):
        assert (path / name).read_bytes() == (ref_store / name).read_bytes(), name
    got, want = (json.loads((p / "manifest.json").read_text()) for p in (path, ref_store))
    got.pop("extraction"), want.pop("extraction")
    assert got == want
    assert not (path / "progress.json").exists()


@pytest.mark.parametrize("plan, rerun", [
    ("step:2", "overwrite"),                    # early: before the first checkpoint
    ("step:6", "resume"),                       # mid: between checkpoints (step 4 and 8)
    ("replace:checkpoint.pt:2", "resume"),      # inside the checkpoint rotation at step 8
    ("replace:student.safetensors:1", "resume"),  # while the final weights are being written
])
def test_train_killed_then_rerun_is_bit_identical(tmp_path, reference, plan, rerun, capsys):
    store_root, _, ref_run = reference
    run = tmp_path / "run"
    args = train_args(store_root, run)
    killed(args, plan, tmp_path, spawn=plan == "step:6")
    assert_run_files_intact(run)
    assert not (run / "result.json").exists()
    if rerun == "overwrite":  # nothing to resume from: --resume says so, --overwrite starts again
        capsys.readouterr()
        assert main([*args, "--resume"]) == 2
        err = capsys.readouterr().err
        assert "no checkpoint to resume from" in err and "--overwrite" in err and "Traceback" not in err
        assert main([*args, "--overwrite"]) == 0
    else:
        assert main([*args, "--resume"]) == 0
    for name in ("student.safetensors", "regularizer.safetensors", "student.json"):
        assert (run / name).read_bytes() == (ref_run / name).read_bytes(), name
    got, want = (json.loads((r / "result.json").read_text()) for r in (run, ref_run))
    for key in ("val_accuracy", "test_accuracy", "selected_step", "steps", "last_metrics"):
        assert got[key] == want[key], key
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == [json.loads(x)["step"] for x in (ref_run / "metrics.jsonl").read_text().splitlines()]
    assert_run_files_intact(run)
