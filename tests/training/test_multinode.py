"""Two local "nodes" (two ``torchrun --nnodes 2 --nproc-per-node 1`` agents, c10d rendezvous on
localhost, gloo on CPU) running ``aft extract`` then ``aft train`` give what one process gives; a
run folder / store root that is not shared by the nodes is one clear error on every rank."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from aft.features import FeatureStore

HERE = Path(__file__).parent
DRIVER = HERE / "_aft_cli_driver.py"  # `python -m aft` plus the tiny teacher `tiny-proj`
EXTRACT = ["extract", "--teacher", "tiny-proj", "--dataset", "digits", "--split", "train", "--limit", "200",
           "--batch-size", "16", "--device", "cpu", "--no-progress"]
TRAIN = ["train", "--dataset", "digits", "--method", "aft", "--teacher", "tiny-proj", "--student", "cnn-small",
         "--set", "student_options={image_size: 8, width: 8}", "--steps", "30", "--batch-size", "32", "--lr", "0.01",
         "--beta", "0.1", "--train-limit", "200", "--seed", "0", "--set", "eval_every=10", "--set", "tensorboard=false",
         "--device", "cpu", "--no-progress"]


def env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_process(args: list[str], cwd: Path) -> str:
    proc = subprocess.run([sys.executable, str(DRIVER), *args], cwd=cwd, env=env(), capture_output=True, text=True,
                          timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def two_nodes(args: list[str], cwds: tuple[Path, Path]) -> list[tuple[int, str]]:
    """Launch one torchrun agent per "node" (``--node-rank`` 0 and 1); (exit code, output) of each."""
    port, run_id = free_port(), uuid.uuid4().hex[:8]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(node),
         "--nproc-per-node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", f"localhost:{port}",
         "--rdzv-id", run_id, "--max-restarts", "0", str(DRIVER), *args],
        cwd=cwds[node], env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for node in (0, 1)]
    return [(p.wait(timeout=240), p.communicate()[0]) for p in procs]


def store_of(root: Path) -> FeatureStore:
    (manifest,) = root.glob("tiny-proj/digits/*/manifest.json")
    return FeatureStore.open(manifest.parent)


@pytest.mark.slow
def test_two_nodes_equal_one_process(tmp_path):
    single, multi = tmp_path / "single", tmp_path / "multi"
    single.mkdir()
    multi.mkdir()
    one_process([*EXTRACT, "--store", "store"], single)
    for rc, out in two_nodes([*EXTRACT, "--store", "store"], (multi, multi)):
        assert rc == 0, out
    a, b = store_of(single / "store"), store_of(multi / "store")
    assert b.manifest["extraction"]["world_size"] == 2 and len(b.manifest["shards"]) == 2
    assert "world_size" not in a.manifest["extraction"] or a.manifest["extraction"]["world_size"] == 1
    ids = list(a.ids)
    assert sorted(ids) == sorted(b.ids) and len(ids) == 200
    np.testing.assert_allclose(np.asarray(b.get(ids), np.float32), np.asarray(a.get(ids), np.float32),
                               rtol=1e-3, atol=1e-3)  # float16 store: the same rows, same rounding

    one_process([*TRAIN, "--store", "store", "--output", "run"], single)
    for rc, out in two_nodes([*TRAIN, "--store", "store", "--output", "run"], (multi, multi)):
        assert rc == 0, out
    w1, w2 = load_file(str(single / "run" / "student.safetensors")), load_file(str(multi / "run" / "student.safetensors"))
    assert set(w1) == set(w2)
    for k in w1:
        torch.testing.assert_close(w2[k], w1[k], rtol=1e-4, atol=1e-5, msg=k)
    r1, r2 = (json.loads((d / "run" / "result.json").read_text()) for d in (single, multi))
    assert r1["world_size"] == 1 and r2["world_size"] == 2
    assert r2["steps"] == r1["steps"] == 30
    for key in ("val_accuracy", "test_accuracy"):
        assert r2[key] == pytest.approx(r1[key], abs=1e-6), key
    loss1, loss2 = r1["last_metrics"]["loss"], r2["last_metrics"]["loss"]
    assert loss2 == pytest.approx(loss1, rel=1e-4)
    # the run learned something (chance is 0.1), so equal weights are not equal initializations
    assert r1["test_accuracy"] > 0.2


@pytest.mark.slow
def test_folders_not_shared_by_the_nodes_fail_on_every_rank(tmp_path):
    # each "node" runs in its own folder, so relative paths resolve to different places: what ranks
    # see on nodes without a shared filesystem
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    results = two_nodes([*EXTRACT, "--store", "store"], (a, b))
    for rc, out in results:
        assert rc != 0
        assert "the feature store root 'store' is not shared by all processes" in out, out
        assert "aft: error: the feature store root" in out  # the CLI's one line (exit 2), not a traceback
    assert not (a / "store").exists() and not (b / "store").exists()  # nothing half-written
    assert not list(a.iterdir()) and not list(b.iterdir())  # and the probe file is gone
