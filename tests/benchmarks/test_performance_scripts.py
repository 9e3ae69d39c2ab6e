"""The performance scripts cannot rot: the GPU check's smoke mode runs, and the page logic holds.

Covers benchmarks/gpu_check.py (``--smoke`` on CPU, records rendered in docs/PERFORMANCE.md),
benchmarks/overhead.py (lock-step hand-off, bootstrap interval, defect verdicts) and the page
generator's kept sections (blocks another script owns survive a regeneration).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

import overhead as ov  # noqa: E402
import run_performance as rp  # noqa: E402


def test_gpu_check_smoke_writes_records_the_page_renders(tmp_path: Path) -> None:
    out = tmp_path / "gpu.jsonl"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--smoke", "--device", "cpu", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    recs = [json.loads(x) for x in out.read_text().splitlines()]
    steps = [r for r in recs if r["part"] == "gpu_step_ratio"]
    assert sorted(r["batch"] for r in steps) == [8, 16]
    for r in steps:
        lo, hi = r["aft_wall"]["ci95"]
        assert lo <= r["aft_wall"]["ratio"] <= hi
        assert r["flop_ratio"] > 1  # AFT adds FLOPs
        assert len(r["aft_wall"]["per_run"]) == r["runs"] == 3
    ext = [r for r in recs if r["part"] == "gpu_extraction"]
    assert len(ext) == 1 and ext[0]["images_per_s"]["bf16"] > 0
    # smoke records are never rendered as results; the same records without the flag are
    assert rp.gpu_records(out) == []
    real = tmp_path / "real.jsonl"
    real.write_text("".join(json.dumps({**r, "smoke": False}) + "\n" for r in recs))
    text = "\n".join(rp.render_gpu(rp.gpu_records(real)))
    assert "Not run yet" not in text and "| 16 |" in text and "images/s" in text


def test_gpu_check_refuses_full_mode_without_cuda(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(BENCH / "gpu_check.py"), "--out", str(tmp_path / "x.jsonl")],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no CUDA device" in proc.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_gpu_section_says_not_run_without_records(tmp_path: Path) -> None:
    text = "\n".join(rp.render_gpu(rp.gpu_records(tmp_path / "missing.jsonl")))
    assert "Not run yet: no GPU was lent" in text


def test_lockstep_runs_one_arm_at_a_time_in_round_robin() -> None:
    """Arms alternate step by step, never overlap, and each arm's steps are all timed."""
    log: list[str] = []
    running = threading.Semaphore(1)

    def run_arm(method: str, on_step) -> None:
        for step in range(1, 5):
            assert running.acquire(blocking=False), "two arms ran at once"
            log.append(method)
            running.release()
            on_step(step, {})

    got = ov.lockstep_run(lambda m: m, run_arm, ["stl", "aft", "stl2"], total_steps=4)
    assert log == ["none", "aft", "none"] * 4
    assert all(len(got[a]["wall"]) == 4 for a in ("stl", "aft", "stl2"))


def test_lockstep_reports_a_failing_arm_without_hanging() -> None:
    def run_arm(method: str, on_step) -> None:
        if method == "aft":
            raise ValueError("boom")
        for step in range(1, 3):
            on_step(step, {})

    with pytest.raises(RuntimeError, match="arm aft failed"):
        ov.lockstep_run(lambda m: m, run_arm, ["stl", "aft"], total_steps=2)


def test_bootstrap_interval_covers_the_median_and_narrows_with_data() -> None:
    rng = np.random.default_rng(1)
    small = [1.05 + 0.05 * rng.standard_normal(10) for _ in range(3)]
    large = [1.05 + 0.05 * rng.standard_normal(200) for _ in range(12)]
    m1, lo1, hi1 = ov.bootstrap_median_ci(small)
    m2, lo2, hi2 = ov.bootstrap_median_ci(large)
    assert lo1 <= m1 <= hi1 and lo2 <= m2 <= hi2
    assert hi2 - lo2 < (hi1 - lo1) / 2
    assert lo2 < 1.05 < hi2


def test_bootstrap_carries_the_run_to_run_spread() -> None:
    """Runs that disagree as a whole give a wide interval even when each run is tight."""
    runs = [np.full(100, v) + 1e-4 * np.arange(100) for v in (0.9, 1.0, 1.1)]
    _, lo, hi = ov.bootstrap_median_ci(runs)
    assert hi - lo > 0.1


@pytest.mark.parametrize(("ratio", "ci", "floor", "expect"), [
    (0.99, (0.985, 0.995), 1.004, "defect: below 1"),
    (1.01, (1.005, 1.015), 1.08, "defect: below the floor"),
    (1.05, (0.95, 1.15), 1.01, "defect: too noisy"),
    (1.09, (1.08, 1.10), 1.08, "ok"),
    (1.09, (1.07, 1.10), 1.08, "ok"),  # the interval reaches the floor: not a defect
])
def test_verdict_flags_measurement_defects(ratio: float, ci: tuple, floor: float, expect: str) -> None:
    assert ov.verdict(ratio, ci, floor).startswith(expect)
    assert ov.aa_verdict((0.99, 1.01)) == "ok" and ov.aa_verdict((1.01, 1.03)).startswith("biased")


def test_render_strikes_out_defects_and_bolds_results() -> None:
    base = {"part": "overhead", "version": 2, "student": "cnn-small", "options": {"width": 16}, "teachers": ["t"],
            "d_psi": 8, "flop_ratio": 1.08, "time_floor": 1.04, "runs": 3, "steps_per_run": 4, "warmup_steps": 3,
            "torch_threads": 1, "median_step_ms": {a: {"wall": 1.0, "cpu": 1.0} for a in ("stl", "aft", "stl2")},
            "step_cv": {"stl": {"wall": 0.1, "cpu": 0.1}}, "loadavg_1min": [1.0, 1.0],
            "aa_wall": {"ratio": 1.0, "ci95": [0.99, 1.01]}}
    ok = {**base, "aft_wall": {"ratio": 1.09, "ci95": [1.08, 1.10]}, "aft_cpu": {"ratio": 1.09, "ci95": [1.08, 1.1]},
          "checks": {"wall": "ok", "cpu": "ok", "aa": "ok", "target": "met"}}
    bad = {**base, "aft_wall": {"ratio": 0.95, "ci95": [0.9, 1.0]}, "aft_cpu": {"ratio": 0.95, "ci95": [0.9, 1.0]},
           "checks": {"wall": "defect: below 1", "cpu": "defect: below 1", "aa": "ok", "target": "n/a: no result"}}
    text = "\n".join(rp.render_overhead([ok, bad]))
    assert "**1.0900 [1.0800, 1.1000]**" in text
    assert "~~0.9500 [0.9000, 1.0000]~~ defect: below 1" in text
    assert "**0.9500" not in text


def test_regenerated_page_keeps_blocks_it_does_not_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    doc = tmp_path / "PERFORMANCE.md"
    jobs = "<!-- BEGIN kept: compare-jobs -->\n## aft compare --jobs\n\n| jobs | runs/h |\n<!-- END kept: compare-jobs -->"
    doc.write_text(f"# Performance\n\nold text\n\n{jobs}\n\n## Scaling out\nold\n")
    monkeypatch.setattr(rp, "DOC", doc)
    rp.write_doc("# Performance\n\nnew text\n\n## Scaling out\nnew\n")
    page = doc.read_text()
    assert "old text" not in page and "new text" in page
    assert jobs in page and page.index(jobs) < page.index("## Scaling out")
    rp.write_doc("# Performance\n\nnewer\n\n## Scaling out\nnew\n")  # idempotent: kept once, not twice
    assert doc.read_text().count("BEGIN kept: compare-jobs") == 1
