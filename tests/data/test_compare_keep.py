"""`aft compare --keep best` on own data: the final runs' students are saved, linked, and usable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from _data_helpers import image_folder

from aft.cli.main import main
from aft.experiments.records import read_records


@pytest.mark.slow
def test_compare_keep_best_saves_links_and_predicts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = image_folder(tmp_path / "pets", {"train": {"a": 20, "b": 20}, "test": {"a": 5, "b": 5}})
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump(dict(
        name="keep-tiny", dataset="digits", students=["cnn-small"], student_options={"cnn-small": {"width": 4}},
        teacher_sets=[["test-data-tiny"]], methods=["none", "aft"], train_sizes=[30], pool_size=30, seeds=[0],
        beta_grid=[1.0], folds=2, probe=False, train={"steps": 6, "batch_size": 8},
    )))
    records = tmp_path / "out" / "records.jsonl"
    argv = ["compare", str(suite), "--dataset", "imagefolder", "--data-option", f"path={root}", "--keep", "best",
            "--records", str(records), "--store", str(tmp_path / "store"), "--jobs", "1", "--no-progress"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "kept 2 trained student(s)" in out
    recs = read_records(records)
    finals = [r for r in recs if r.phase == "final"]
    assert {r.method for r in finals} == {"none", "aft"} and all(r.dataset == "pets" for r in recs)
    assert all("student_dir" not in r.extra for r in recs if r.phase != "final")  # best: the finals only
    folders = [records.parent / r.extra["student_dir"] for r in finals]
    for folder in folders:
        assert (folder / "student.safetensors").is_file()
        meta = json.loads((folder / "student.json").read_text())
        assert meta["dataset"] == "pets" and meta["phase"] == "final"
    html = (records.parent / "report" / "index.html").read_text()
    for r in finals:
        assert f'<a href="../{r.extra["student_dir"]}">' in html
    # the kept folder is a model for `aft predict` (same dataset options) and `aft export`
    assert main(["predict", "--model", str(folders[0]), "--dataset", "imagefolder", "--data-option", f"path={root}",
                 "--format", "json"]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 10 and "accuracy" in captured.err
    pytest.importorskip("onnx")
    assert main(["export", "--model", str(folders[1]), "--onnx", str(tmp_path / "s.onnx"), "--no-verify"]) == 0
    assert (tmp_path / "s.onnx").stat().st_size > 0


def test_keep_mode_is_checked_before_anything_runs(tmp_path: Path) -> None:
    from aft.errors import ConfigError
    from aft.experiments.compare import compare, load_suite

    with pytest.raises(ConfigError, match="keep must be one of best, all, got 'some'"):
        compare(load_suite("demo"), tmp_path / "r.jsonl", tmp_path / "st", keep="some")
    assert not list(tmp_path.iterdir())
