"""build_report writes index.html, valid PNGs and RESULTS.md with the commands before every table."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from _report_fixtures import make_records

from aft.errors import DataError
from aft.experiments.records import RunRecord
from aft.report import ReportPaths, build_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CMD = "aft compare --suite vis --records results/vis.jsonl"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> ReportPaths:
    root = tmp_path_factory.mktemp("report")
    return build_report(make_records(), root / "out", markdown_path=root / "docs" / "RESULTS.md", command=CMD,
                        record_files=["results/vis.jsonl"])


def test_files_exist_and_pngs_are_valid(built: ReportPaths) -> None:
    assert built.index_html.is_file()
    names = {p.name for p in built.plots}
    assert {"normalized_error.png", "rho_sorted.png", "acc_vs_params.png", "beta_vis_fmnist.png",
            "curves_txt_spam.png", "classes_vis_fmnist_cnn_100_v1.png"} <= names
    for p in built.plots:
        data = p.read_bytes()
        assert len(data) > 1000 and data[:8] == PNG_MAGIC, p
    assert built.markdown is not None and built.markdown.is_file()
    assert not list(built.out_dir.glob("*.tmp")), "temp files left behind"


def test_html_embeds_every_png_and_the_tables(built: ReportPaths) -> None:
    html = built.index_html.read_text(encoding="utf-8")
    for p in built.plots:
        assert f'<img src="{p.name}"' in html
    assert html.count("<table>") == 7  # six result tables + the selected-beta table (cv selection)
    assert "<style>" in html and "stylesheet" not in html  # self-contained


def test_every_markdown_table_is_preceded_by_the_commands_and_totals(built: ReportPaths) -> None:
    md = built.markdown.read_text(encoding="utf-8")  # type: ignore[union-attr]
    records = make_records()
    total = sum(r.wall_s for r in records)
    sections = re.split(r"^## ", md, flags=re.M)[1:]
    table_sections = [s for s in sections if "\n| " in s]
    assert len(table_sections) == 7  # + the selected-beta table (cv selection)
    for s in table_sections:
        before = s[: s.index("\n| ")]
        assert CMD in before
        assert "aft report --records results/vis.jsonl --out" in before and "--command" in before
        assert f"Records: {len(records)} " in before
        assert f"{total:.1f} s" in before
    for p in built.plots:
        assert f"{p.name})" in md  # linked relative to docs/


def test_partial_data_is_skipped_with_notes(tmp_path: Path) -> None:
    # STL only, no curves, no select records, no rho: tables and plots that need more are skipped
    recs = [RunRecord(suite="s", dataset="d", student="st", teachers=[], method="none", beta=0.0, train_size=10,
                      seed=seed, phase="final", val_acc=0.5, test_acc=0.6 + 0.01 * seed, student_params=100)
            for seed in range(3)]
    paths = build_report(recs, tmp_path / "out", markdown_path=tmp_path / "RESULTS.md")
    notes = " ".join(paths.notes)
    for what in ("beta-curve", "learning-curve", "ρ plot", "Teacher ladder", "Multi-teacher"):
        assert what in notes, what
    md = paths.markdown.read_text(encoding="utf-8")  # type: ignore[union-attr]
    assert "the command that wrote these records was not given" in md
    assert paths.index_html.is_file()


def test_no_records_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no run records"):
        build_report([], tmp_path)


def test_collapsed_runs_are_flagged_before_any_table(tmp_path: Path) -> None:
    import dataclasses

    records = make_records()
    target = next(r for r in records if r.method == "aft" and r.phase == "final" and r.seed == 1)
    idx = records.index(target)
    records[idx] = dataclasses.replace(target, extra={**target.extra, "collapsed": True,
                                                      "collapse_reason": "the task loss never left chance (2.30)"})
    paths = build_report(records, tmp_path / "out", command=CMD, record_files=["results/vis.jsonl"])
    flagged = [n for n in paths.notes if n.startswith("warning: collapsed (final)")]
    assert len(flagged) == 1 and f"beta={target.beta:g}" in flagged[0] and "seeds [1]" in flagged[0]
    html = paths.index_html.read_text(encoding="utf-8")
    box = html.index('class="collapsed"')
    assert box < html.index("<table") and "never left chance (2.30)" in html[box:]
    clean = build_report(make_records(), tmp_path / "clean", command=CMD, record_files=["results/vis.jsonl"])
    assert 'class="collapsed"' not in clean.index_html.read_text(encoding="utf-8")
