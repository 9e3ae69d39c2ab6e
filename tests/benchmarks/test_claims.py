"""benchmarks/claims.py: claim (c) picks the best single teacher the same way on every run.

A tie between two single teachers' mean accuracies used to be broken by the iteration order of a
set of teacher tuples, which follows Python's string-hash randomization: docs/CLAIMS.md changed
between two regenerations from the same records. The page must be a function of the records.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from aft.experiments.records import RunRecord, append_record

ROOT = Path(__file__).resolve().parents[2]


def _records() -> list[RunRecord]:
    accs = {(): [0.70, 0.72], ("b",): [0.80, 0.82], ("a",): [0.82, 0.80], ("c",): [0.75, 0.75],
            ("a", "b", "c"): [0.79, 0.81]}
    out = []
    for teachers, per_seed in accs.items():
        method = "aft" if teachers else "none"
        for seed, acc in enumerate(per_seed):
            out.append(RunRecord("s", "d", "cnn", list(teachers), method, 1.0 if teachers else 0.0, 100, seed,
                                 "final", acc, acc))
    return out


def test_claim_c_breaks_ties_by_the_sets_teacher_order_under_any_hash_seed(tmp_path: Path) -> None:
    recs = tmp_path / "records.jsonl"
    for r in _records():
        append_record(recs, r)
    pages = set()
    for seed in ("0", "1", "2", "3"):
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "claims.py"), "--records", str(recs)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        pages.add(proc.stdout)
    assert len(pages) == 1
    row = next(line for line in pages.pop().splitlines() if line.startswith("| d / cnn / n=100 | ") and "a+b+c" in line)
    # a and b tie at 81 %; a is listed first in the concatenation a+b+c, so a is the best single teacher
    assert row.split(" | ")[1] == "a"
    assert row.split(" | ")[5] == "-1.0 ± 1.4 |"
