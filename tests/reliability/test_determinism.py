"""Same config + seed on CPU: bit-identical final weights, metrics and results across two runs
(teacher-using methods, dropout, `select: best`)."""

from __future__ import annotations

import json

import pytest

from aft.cli.main import main


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("det") / "store"
    assert main(["extract", "--teacher", "rp-image", "--dataset", "digits", "--split", "train", "--store", str(root),
                 "--no-progress"]) == 0
    return root


@pytest.mark.parametrize("method", ["aft", "kd"])
def test_same_seed_same_bits(tmp_path, store, method):
    def run(name: str) -> list:
        out = tmp_path / name
        assert main(["train", "--dataset", "digits", "--method", method, "--teacher", "rp-image",
                     "--store", str(store), "--student", "cnn-small",
                     "--set", "student_options={image_size: 8, width: 4, dropout: 0.3}", "--steps", "10",
                     "--batch-size", "32", "--train-limit", "200", "--select", "best", "--set", "eval_every=2",
                     "--set", "log_every=1", "--seed", "7", "--set", "tensorboard=false", "--device", "cpu",
                     "--no-progress", "--output", str(out)]) == 0
        result = json.loads((out / "result.json").read_text())
        result.pop("wall_time_s")
        return [(out / f).read_bytes() for f in ("student.safetensors", "regularizer.safetensors", "student.json",
                                                  "metrics.jsonl")] + [result]

    first, second = run("a"), run("b")
    assert first == second
    metrics = [json.loads(x) for x in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert any("val_accuracy" in m for m in metrics) and any("reg_loss" in m for m in metrics)
