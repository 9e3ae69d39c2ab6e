"""The "kept students" table: links to the students `aft compare --keep` saved (only when there are any)."""

from __future__ import annotations

from aft.report.aggregate import RecordIndex
from aft.report.tables import Table, method_label


def kept_students_table(index: RecordIndex) -> Table | None:
    """One row per final record with a kept student (``extra["student_dir"]``); None when there are none.

    The link is relative to the report folder's default place (``<records folder>/report/``), the
    student folder to the records folder; `aft predict --model` / `aft export --model` take it.
    """
    rows = []
    for r in sorted(index.final, key=lambda r: (r.student, r.method, r.train_size, r.seed)):
        folder = (r.extra or {}).get("student_dir")
        if not folder:
            continue
        acc = "—" if r.test_acc is None else f"{100 * r.test_acc:.2f}"
        rows.append([r.dataset, r.student, method_label(r.method), "+".join(r.teachers) or "—", str(r.train_size),
                     f"{r.beta:g}", str(r.seed), acc, f"[{folder}](../{folder})"])
    if not rows:
        return None
    return Table(key="kept", title="Kept students",
                 description="Trained students saved by `aft compare --keep` (safetensors + student.json): pass a "
                 "folder to `aft predict --model` or `aft export --model`.",
                 header=["dataset", "student", "method", "teachers", "n", "β", "seed", "test acc %", "folder"],
                 rows=rows, n_records=len(rows))
