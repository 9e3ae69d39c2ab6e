"""The two-tower student: fusion against an independent computation, packed inputs, training with
field teachers (AFT concat / product, KD, RKD), saving, loading and predicting on multi-field inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aft.data.multifield import FieldRows, MultiFieldSplit
from aft.errors import ConfigError, DataError
from aft.features import extract
from aft.students import build_student
from aft.students.io import load_student
from aft.students.multimodal import TwoTowerStudent
from aft.teachers import CallableTeacher
from aft.training import TrainConfig, train

SMALL = {"image": {"width": 4, "feature_dim": 6}, "text": {"embed_dim": 8, "channels": 4, "max_len": 12, "vocab_size": 512}}


def _split(n: int = 48, seed: int = 0) -> MultiFieldSplit:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    images = (rng.integers(0, 60, size=(n, 28, 28)) + 60 * labels[:, None, None]).astype(np.uint8)
    words = ["red", "blue", "green"]
    texts = [f"this is {words[(int(y) + int(rng.integers(0, 2))) % 3]} item {i}" for i, y in enumerate(labels)]
    return MultiFieldSplit("toy-mm", "train", [f"s{i:03d}" for i in range(n)], FieldRows({"image": images, "text": texts}),
                           labels, ["a", "b", "c"], "multi", field_modalities={"image": "image", "text": "text"})  # type: ignore[arg-type]


def _teachers() -> list[CallableTeacher]:
    def pix(x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1).astype(np.float32) / 255.0
        return np.stack([flat.mean(1), flat.std(1), flat[:, :100].mean(1)], axis=1)

    def chars(texts: list[str]) -> np.ndarray:
        return np.array([[t.count("red"), t.count("blue"), t.count("green"), len(t) / 10] for t in texts], dtype=np.float32)

    return [CallableTeacher(pix, dim=3, modality="image", name="pix@image"),
            CallableTeacher(chars, dim=4, modality="text", name="chars@text")]


@pytest.mark.parametrize("fusion", ["concat", "product"])
def test_fused_features_are_the_concatenation_or_outer_product_of_the_towers(fusion: str) -> None:
    torch.manual_seed(0)
    s = build_student("two-tower", 3, fusion=fusion, proj_dim=5 if fusion == "product" else None, tower_options=SMALL)
    x = s.preprocess(_split(4).inputs)
    logits, phi = s(x)
    img = s.towers["image"](s.unpack(x)["image"])[1]
    txt = s.towers["text"](s.unpack(x)["text"])[1]
    if fusion == "product":
        img, txt = s.proj["image"](img), s.proj["text"](txt)
        want = (img[:, :, None] * txt[:, None, :]).reshape(4, -1)
        assert phi.shape == (4, 25)
    else:
        want = torch.cat([img, txt], dim=1)
        assert phi.shape == (4, 6 + 12)
    torch.testing.assert_close(phi, want)
    torch.testing.assert_close(logits, s.head(want))


def test_packed_inputs_round_trip_and_records_equal_tables() -> None:
    s = build_student("two-tower", 3, tower_options=SMALL)
    split = _split(5)
    x = s.preprocess(split.inputs)
    assert torch.equal(x, s.preprocess([split.inputs[i] for i in range(5)]))
    parts = s.unpack(x)
    assert torch.equal(parts["text"], s.towers["text"].preprocess(split.inputs.columns["text"]))
    assert parts["text"].dtype == torch.long
    with pytest.raises(DataError, match=r"two-tower student needs field 'text'; the inputs have image"):
        s.preprocess(FieldRows({"image": split.inputs.columns["image"]}))
    with pytest.raises(ConfigError, match=r"unknown fusion 'sum'; valid fusions: concat, product"):
        TwoTowerStudent(3, fusion="sum")


@pytest.mark.parametrize("method", ["aft-product", "aft", "kd", "rkd"])
def test_training_with_field_teachers(tmp_path: Path, method: str) -> None:
    split = _split()
    teachers = _teachers()
    extract(teachers, split, tmp_path / "store", dtype="float32", progress=False)
    cfg = TrainConfig(method=method, student="two-tower", student_options={"tower_options": SMALL, "fusion": "product"},
                      teachers=[t.name for t in teachers], feature_store=str(tmp_path / "store"), steps=4, batch_size=16,
                      beta=1.0, val_fraction=0.25, output=str(tmp_path / "run"), device="cpu", beta_warmup=0)
    result = train(cfg, train_split=split, test_split=_split(12, seed=1))
    assert result.test_accuracy is not None and result.steps == 4
    if method.startswith("aft"):
        assert set(result.rho_summary or {}) == {"pix@image", "chars@text"}
        assert result.regularizer.blocks.names == (("pix@image", "chars@text") if method == "aft-product" else ("teacher",))
    # the saved student predicts multi-field inputs by itself
    student = load_student(tmp_path / "run")
    assert isinstance(student, TwoTowerStudent)
    x = student.preprocess(_split(3, seed=2).inputs)
    with torch.no_grad():
        torch.testing.assert_close(student(x)[0], result.student.cpu()(x)[0])


def test_predict_from_a_records_file_and_export(tmp_path: Path) -> None:
    import contextlib
    import io
    import json

    image = pytest.importorskip("PIL.Image")
    from aft.cli.main import main

    split = _split()
    cfg = TrainConfig(method="none", student="two-tower", student_options={"tower_options": SMALL}, steps=3, batch_size=16,
                      val_fraction=0.0, test_split=None, output=str(tmp_path / "run"), device="cpu")
    result = train(cfg, train_split=split)
    new = _split(4, seed=3)
    rows = []
    for i in range(4):
        image.fromarray(new.inputs.columns["image"][i], mode="L").save(tmp_path / f"im{i}.png")
        rows.append({"image": f"im{i}.png", "text": new.inputs.columns["text"][i]})
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["predict", "--model", str(tmp_path / "run"), "--records", str(tmp_path / "in.jsonl"), "--format", "json"]) == 0
    got = [json.loads(line)["label"] for line in buf.getvalue().splitlines()]
    with torch.no_grad():
        want = result.student.cpu()(result.student.preprocess(new.inputs))[0].argmax(1).tolist()
    assert got == [split.class_names[i] for i in want]
    pytest.importorskip("onnxruntime")
    from aft.export import export_onnx

    assert export_onnx(tmp_path / "run", tmp_path / "m.onnx").is_file()  # verified against torch on two batches
