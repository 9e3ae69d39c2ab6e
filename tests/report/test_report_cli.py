"""`aft report`: writes the files and returns 0; a missing records file is exit code 2 with one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from aft.cli.main import main
from aft.experiments.records import RunRecord, append_record


def _small_records(path: Path) -> None:
    for seed in range(3):
        for method, teachers, acc in (("none", [], 0.7), ("aft", ["t"], 0.75), ("probe", ["t"], 0.8)):
            append_record(path, RunRecord(
                suite="s", dataset="d", student="probe" if method == "probe" else "st", teachers=teachers,
                method=method, beta=0.0 if method != "aft" else 1.0, train_size=50, seed=seed, phase="final",
                val_acc=acc, test_acc=acc + 0.01 * seed, wall_s=2.0, student_params=1000))


def test_cli_writes_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    records = tmp_path / "records.jsonl"
    _small_records(records)
    out, md = tmp_path / "out", tmp_path / "docs" / "RESULTS.md"
    rc = main(["report", "--records", str(records), "--out", str(out), "--markdown", str(md),
               "--command", "aft compare --suite s"])
    assert rc == 0
    assert (out / "index.html").is_file() and (out / "normalized_error.png").is_file()
    text = md.read_text(encoding="utf-8")
    assert "aft compare --suite s" in text and f"aft report --records {records}" in text
    assert "wrote" in capsys.readouterr().out


def test_cli_missing_records_file_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["report", "--records", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "nope.jsonl" in err and "does not exist" in err
    assert not (tmp_path / "out").exists()


def test_findings_are_placed_in_results_page(tmp_path):
    from aft.experiments.records import read_records
    from aft.report import build_report

    recs = tmp_path / "r.jsonl"
    _small_records(recs)
    findings = tmp_path / "FINDINGS.md"
    findings.write_text("## Findings\n\nAFT wins where the probe beats STL.\n", encoding="utf-8")
    paths = build_report(read_records(recs), tmp_path / "out", markdown_path=tmp_path / "RESULTS.md",
                         record_files=[recs], findings=findings)
    text = paths.markdown.read_text(encoding="utf-8")
    assert "AFT wins where the probe beats STL." in text
    assert f"--findings {findings}" in text
    assert text.index("AFT wins") < text.index("## ", text.index("AFT wins") + 10)
