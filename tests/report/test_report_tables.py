"""The tables show what the records say: cells recomputed independently from the raw records."""

from __future__ import annotations

import numpy as np

from aft.experiments.records import RunRecord
from aft.report import build_tables
from aft.report.aggregate import RecordIndex
from aft.report.tables import Table, to_markdown


def _tables(records: list[RunRecord]) -> dict[str, Table]:
    return {t.key: t for t in build_tables(RecordIndex.build(records))}


def _final(records, **match) -> dict[int, float]:
    out = {}
    for r in records:
        if r.phase == "final" and all(getattr(r, k) == v for k, v in match.items()):
            out[r.seed] = r.test_acc
    return out


def _cell(table: Table, row_pred, column: str) -> str:
    col = table.header.index(column)
    rows = [row for row in table.rows if row_pred(row)]
    assert len(rows) == 1, rows
    return rows[0][col]


def test_headline_cell_recomputed_independently(records: list[RunRecord]) -> None:
    t = _tables(records)["headline"]
    stl = _final(records, method="none", dataset="fmnist", train_size=100)
    aft = _final(records, method="aft", dataset="fmnist", train_size=100, teachers=["t_small"])
    ratios = np.array([(1 - aft[s]) / (1 - stl[s]) for s in sorted(aft)])
    expected = f"{ratios.mean():.3f} ± {ratios.std(ddof=1) / np.sqrt(len(ratios)):.3f}"
    got = _cell(t, lambda row: row[0] == "aft" and row[1] == "t_small", "fmnist / cnn / n=100")
    assert got == expected
    # STL row: exactly 1 everywhere
    stl_row = next(row for row in t.rows if row[0] == "none (STL)")
    assert all(c == "1.000 ± 0.000" for c in stl_row[2:-1])


def test_headline_average_is_mean_of_setting_means(records: list[RunRecord]) -> None:
    t = _tables(records)["headline"]
    means = []
    for ds, n in (("fmnist", 100), ("fmnist", 1000)):
        stl = _final(records, method="none", dataset=ds, train_size=n)
        kd = _final(records, method="kd", dataset=ds, train_size=n, teachers=["t_big"])
        means.append(np.mean([(1 - kd[s]) / (1 - stl[s]) for s in kd]))
    got = _cell(t, lambda row: row[0] == "kd" and row[1] == "t_big", "Average")
    assert got.startswith(f"{np.mean(means):.3f} ± ")
    assert _cell(t, lambda row: row[0] == "kd" and row[1] == "t_big", "Settings") == "2"


def test_accuracy_cell_and_probe_gap(records: list[RunRecord]) -> None:
    t = _tables(records)["accuracy"]
    kd = np.array(list(_final(records, method="kd", dataset="spam", train_size=1000, teachers=["m_b"]).values()))
    stl = np.array(list(_final(records, method="none", dataset="spam", train_size=1000).values()))
    probe = np.array(list(_final(records, method="probe", dataset="spam", train_size=1000, teachers=["m_b"]).values()))

    def row(r):
        return r[0] == "spam" and r[2] == "n=1000" and r[3] == "m_b"

    assert _cell(t, row, "kd") == f"{kd.mean() * 100:.2f} ± {kd.std(ddof=1) / np.sqrt(3) * 100:.2f}"
    assert _cell(t, row, "Probe") == f"{probe.mean() * 100:.2f} ± {probe.std(ddof=1) / np.sqrt(3) * 100:.2f}"
    assert _cell(t, row, "Probe − STL (pts)") == f"{(probe.mean() - stl.mean()) * 100:+.2f}"


def test_select_phase_records_never_reach_test_tables(records: list[RunRecord]) -> None:
    # a select-only method and select records carrying a (bogus) test accuracy
    extra = [RunRecord(suite="vis", dataset="fmnist", student="cnn", teachers=["t_big"], method="selonly",
                       beta=b, train_size=100, seed=0, phase="select", val_acc=0.5, test_acc=0.123456)
             for b in (0.1, 1.0)]
    with_select = _tables(records + extra)
    without_select = _tables([r for r in records if r.phase == "final"])
    for key in ("headline", "accuracy", "ladder", "multi_teacher", "rho", "cost"):
        assert with_select[key].rows == without_select[key].rows, key
    # the selected-beta table is a validation table: it shows select records, but never their test_acc
    text = "".join(to_markdown(t) for k, t in with_select.items() if k != "selection")
    assert "selonly" not in text and "12.35" not in text
    assert "12.35" not in to_markdown(with_select["selection"])


def test_ladder_orders_by_probe_and_reports_monotonicity(records: list[RunRecord]) -> None:
    t = _tables(records)["ladder"]

    def row(method):
        return lambda r: r[0] == "fmnist" and r[2] == "n=100" and r[3] == method

    teachers = _cell(t, row("aft"), "Teachers, weak → strong (probe acc.)")
    assert teachers.index("t_small") < teachers.index("t_big")  # t_small's probe is weaker
    assert _cell(t, row("aft"), "Monotonic ↑") == "yes"
    assert _cell(t, row("kd"), "Monotonic ↑") == "no"  # kd is better with the weaker teacher in the fixture


def test_multi_teacher_vs_best_single(records: list[RunRecord]) -> None:
    t = _tables(records)["multi_teacher"]
    multi = np.mean(list(_final(records, method="aft", dataset="spam", train_size=100, teachers=["m_a", "m_b"]).values()))
    singles = [np.mean(list(_final(records, method="aft", dataset="spam", train_size=100, teachers=[x]).values()))
               for x in ("m_a", "m_b")]

    def row(r):
        return r[0] == "spam" and r[1] == "bag" and r[2] == "n=100" and r[3] == "aft"

    assert _cell(t, row, "Best single") == ("m_a", "m_b")[int(np.argmax(singles))]
    assert _cell(t, row, "Set − best single (pts)") == f"{(multi - max(singles)) * 100:+.2f}"


def test_rho_table_is_generic_over_stats(records: list[RunRecord]) -> None:
    t = _tables(records)["rho"]
    assert t.header[-3:] == ["mean", "frac_above_half", "share"]
    vals = [r.rho["m_b"]["mean"] for r in records if r.phase == "final" and r.method == "aft"
            and r.teachers == ["m_a", "m_b"] and r.train_size == 100]

    def row(r):
        return r[0] == "spam" and r[2] == "n=100" and r[4] == "m_a+m_b" and r[5] == "m_b"

    assert _cell(t, row, "mean") == f"{np.mean(vals):.3f} ± {np.std(vals, ddof=1) / np.sqrt(len(vals)):.3f}"


def test_cost_table_reads_params_and_latency(records: list[RunRecord]) -> None:
    t = _tables(records)["cost"]
    student = next(r for r in t.rows if r[0] == "fmnist" and r[1] == "cnn")
    assert student[3] == "20,000" and student[4] == "0.200"
    assert "t_small: 232×" in student[5]
    teacher = next(r for r in t.rows if r[0] == "fmnist" and r[1] == "t_big")
    assert teacher[3] == "6,100,000"


def test_missing_stl_gives_a_note_not_a_crash(records: list[RunRecord]) -> None:
    no_stl = [r for r in records if not (r.method == "none" and r.dataset == "spam" and r.train_size == 100)]
    t = _tables(no_stl)
    head = t["headline"]
    assert "spam / bag / n=100" not in head.header
    assert any("no STL" in n and "spam / bag / n=100" in n for n in head.notes)
    acc_row = next(r for r in t["accuracy"].rows if r[0] == "spam" and r[2] == "n=100")
    assert acc_row[4] == "—" and acc_row[6] == "—"  # STL and gap shown as missing


def test_single_seed_shows_dash_se_and_empty_tables_have_notes() -> None:
    recs = [RunRecord(suite="s", dataset="d", student="st", teachers=[], method="none", beta=0.0, train_size=10,
                      seed=0, phase="final", val_acc=0.5, test_acc=0.6)]
    t = _tables(recs)
    assert t["accuracy"].rows[0][4] == "60.00 ± —"
    for key in ("ladder", "multi_teacher", "rho"):
        assert not t[key].rows and t[key].empty_note
        assert to_markdown(t[key]).startswith("_")
