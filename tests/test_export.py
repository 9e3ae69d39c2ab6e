"""ONNX export: onnxruntime reproduces PyTorch's outputs; unexportable students give one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnx")

from aft.cli.main import main  # noqa: E402
from aft.errors import OutputExistsError  # noqa: E402
from aft.export import ExportError, export_onnx, load_metadata  # noqa: E402
from aft.students import ModuleStudent, build_student  # noqa: E402
from aft.students.io import load_student, save_student  # noqa: E402


@pytest.fixture()
def run_dir(tmp_path):
    torch.manual_seed(0)
    student = build_student("cnn-small", 10)
    student.class_names = [f"c{i}" for i in range(10)]
    student.feature_dim  # noqa: B018 - discovered and saved in student.json
    save_student(student, tmp_path / "run")
    return tmp_path / "run"


def test_cnn_small_onnx_matches_pytorch(run_dir, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    path = export_onnx(run_dir, tmp_path / "out" / "student.onnx")
    assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["student.onnx"]  # no temp file left
    student = load_student(run_dir)
    rng = np.random.default_rng(1)
    raw = rng.integers(0, 256, size=(5, 28, 28), dtype=np.uint8)  # batch 5: the batch axis is dynamic
    x = student.preprocess(raw)
    with torch.no_grad():
        logits, feats = student(x)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    got_logits, got_feats = session.run(["logits", "features"], {"input": x.numpy()})
    np.testing.assert_allclose(got_logits, logits.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_feats, feats.numpy(), rtol=1e-4, atol=1e-5)
    assert got_feats.shape == (5, 128)
    meta = load_metadata(path)
    assert meta["name"] == "cnn-small" and meta["class_names"][3] == "c3"


def test_existing_output_needs_overwrite(run_dir, tmp_path):
    path = export_onnx(run_dir, tmp_path / "s.onnx", verify=False)
    with pytest.raises(OutputExistsError, match="overwrite"):
        export_onnx(run_dir, path)
    assert export_onnx(run_dir, path, overwrite=True, verify=False) == path


class _FFT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        f = torch.fft.fft(self.lin(x)).abs()  # no ONNX operator for complex FFT in opset 17
        return f[:, :2], f


def test_unexportable_student_is_a_clear_error(tmp_path, capfd):
    with pytest.raises(ExportError) as info:
        export_onnx(ModuleStudent(2, _FFT()), tmp_path / "bad.onnx", example_input=torch.zeros(2, 4))
    msg = str(info.value)
    assert "\n" not in msg and "fft" in msg and "cannot be exported" in msg
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temp file
    out, err = capfd.readouterr()
    assert "Torch IR graph" not in out + err  # the exporter's graph dump is kept out of the terminal


def test_student_without_example_input_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match="example_input"):
        export_onnx(ModuleStudent(2, _FFT()), tmp_path / "x.onnx")


def test_cli_export_and_one_line_errors(run_dir, tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    assert main(["export", "--model", str(run_dir), "--onnx", str(out)]) == 0
    assert out.is_file() and capsys.readouterr().out.strip() == str(out)
    assert main(["export", "--model", str(run_dir), "--onnx", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aft: error:") and "--overwrite" in err and "\n" not in err
    assert main(["export", "--model", str(tmp_path / "missing"), "--onnx", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds no saved student" in err and "\n" not in err
