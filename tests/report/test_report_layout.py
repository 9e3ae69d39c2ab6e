"""Page layout: training sizes sort as numbers (also across suites), wide tables scroll in their own box."""

from __future__ import annotations

import re

from aft.experiments.records import RunRecord
from aft.report import build_tables
from aft.report.aggregate import RecordIndex, headline
from aft.report.html import table_html


def _stl(suite: str, n: int, seed: int) -> RunRecord:
    return RunRecord(suite=suite, dataset="fm", student="cnn", teachers=[], method="none", beta=0.0, train_size=n,
                     seed=seed, phase="final", val_acc=0.5, test_acc=0.6 + 0.01 * seed + n / 1e5, student_params=10)


def test_training_sizes_sort_as_numbers_across_suites() -> None:
    # n=500 comes from a second suite whose name sorts after the first: it must still sit between 100 and 2000
    recs = [_stl(suite, n, seed) for suite, n in (("fm", 100), ("fm", 2000), ("fm-views", 500)) for seed in (0, 1)]
    h = headline(RecordIndex.build(recs))
    assert [g.train_size for g in h.groups] == [100, 500, 2000]
    header = build_tables(RecordIndex.build(recs))[0].header
    assert [int(re.search(r"n=(\d+)", c).group(1)) for c in header if "n=" in c] == [100, 500, 2000]


def test_every_table_is_inside_a_horizontal_scroll_box(records: list[RunRecord]) -> None:
    from aft.report.html import CSS

    assert re.search(r"\.scroll\s*\{[^}]*max-width:\s*100%[^}]*overflow-x:\s*auto", CSS)
    for t in build_tables(RecordIndex.build(records)):
        if t.rows:
            out = table_html(t)
            assert out.startswith('<div class="scroll"><table>') and "</table></div>" in out
