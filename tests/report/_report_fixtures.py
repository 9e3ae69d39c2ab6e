"""A small fixed set of synthetic run records shared by the report tests.

Two suites (vision `fmnist`/`cnn`, text `spam`/`bag`), two train sizes, three seeds; methods STL
(`none`), `probe`, `kd`, `aft`; two single teachers per suite plus their concatenation (ladder and
multi-teacher tables); select-phase records over a beta grid; curves; rho summaries; latency and
teacher params in `extra`.
"""

from __future__ import annotations

from aft.experiments.records import RunRecord

SEEDS = (0, 1, 2)
SIZES = (100, 1000)
BETAS = (0.1, 1.0, 10.0)
SUITES = {
    # suite: (dataset, student, student params, {teacher: (probe acc at n=100, teacher params)})
    "vis": ("fmnist", "cnn", 20_000, {"t_small": (0.74, 4_650_000), "t_big": (0.80, 6_100_000)}),
    "txt": ("spam", "bag", 50_000, {"m_a": (0.72, 23_000_000), "m_b": (0.78, 110_000_000)}),
}
# accuracy offsets over STL per (method, teacher rank: 0 = weaker, 1 = stronger, 2 = concatenation)
OFFSETS = {"kd": (0.012, 0.004, 0.010), "aft": (0.030, 0.045, 0.050)}


def _rec(**kw) -> RunRecord:
    base = dict(beta=0.0, phase="final", wall_s=1.5, views=1)
    base.update(kw)
    return RunRecord(**base)


def _curve(final_acc: float, seed: int = 0, reg: float = 0.0) -> list[dict[str, float]]:
    """Evaluation points every 100 steps and training-log points every 50 (as `aft compare` writes them)."""
    out: list[dict[str, float]] = []
    for s in range(0, 301, 50):
        task = 2.0 - s / 200 + 0.05 * seed
        p = {"step": float(s), "loss": task + reg * (1.0 - s / 600), "task_loss": task, "reg_loss": reg * (1 - s / 600)}
        if s % 100 == 0:
            p["val_acc"] = final_acc * (0.6 + 0.4 * s / 300)
        out.append(p)
    return out


CLASSES = ("shirt", "shoe", "bag")
TEST_PER_CLASS = 100


def _confusion(acc: float, seed: int) -> list[list[int]]:
    """A 3-class test confusion matrix with `acc` overall accuracy (class 2 the hardest)."""
    correct = round(acc * TEST_PER_CLASS * len(CLASSES))
    per = [min(TEST_PER_CLASS, correct // 3 + 10 + seed), min(TEST_PER_CLASS, correct // 3 + 5)]
    per.append(correct - sum(per))
    rows = []
    for i, c in enumerate(per):
        wrong = TEST_PER_CLASS - c
        row = [0, 0, 0]
        row[i], row[(i + 1) % 3], row[(i + 2) % 3] = c, wrong - wrong // 2, wrong // 2
        rows.append(row)
    return rows


def make_records() -> list[RunRecord]:
    """The fixed synthetic records (deterministic; small per-seed jitter so SEs are non-zero)."""
    out: list[RunRecord] = []
    for suite, (dataset, student, sparams, teachers) in SUITES.items():
        names = list(teachers)
        sets = [(names[0],), (names[1],), (names[0], names[1])]
        for n in SIZES:
            up = 0.10 if n == 1000 else 0.0
            for seed in SEEDS:
                stl = 0.66 + up + 0.010 * seed
                out.append(_rec(suite=suite, dataset=dataset, student=student, teachers=[], method="none",
                                train_size=n, seed=seed, val_acc=stl - 0.01, test_acc=stl, student_params=sparams,
                                curve=_curve(stl, seed), extra={"latency_ms": 0.2, "confusion": _confusion(stl, seed),
                                                                "class_names": list(CLASSES)}))
                for rank, ts in enumerate(sets):
                    probe = (teachers[ts[0]][0] if len(ts) == 1 else 0.82) + up / 2 + 0.004 * seed
                    tparams = sum(teachers[t][1] for t in ts)
                    out.append(_rec(suite=suite, dataset=dataset, student="probe", teachers=list(ts), method="probe",
                                    train_size=n, seed=seed, val_acc=probe, test_acc=probe, student_params=10 * 256,
                                    extra={"latency_ms": 5.0 + rank, "teacher_params": tparams, "C": 1.0}))
                    for method, offs in OFFSETS.items():
                        acc = stl + offs[rank] + 0.003 * seed * (1 + rank)
                        rho = {}
                        extra = {"latency_ms": 0.2, "confusion": _confusion(acc, seed), "class_names": list(CLASSES)}
                        if method == "aft":
                            rho = {t: {"mean": 0.5 + 0.1 * i + 0.01 * seed, "frac_above_half": 0.4 + 0.2 * i,
                                       "share": (0.3 + 0.4 * i) if len(ts) > 1 else 1.0} for i, t in enumerate(ts)}
                            extra["rho_sorted"] = {t: [0.95 - 0.9 * k / 15 * (1 - 0.1 * i) + 0.01 * seed
                                                       for k in range(16)] for i, t in enumerate(ts)}
                        out.append(_rec(suite=suite, dataset=dataset, student=student, teachers=list(ts),
                                        method=method, beta=1.0, train_size=n, seed=seed, val_acc=acc - 0.01,
                                        test_acc=acc, student_params=sparams, rho=rho,
                                        curve=_curve(acc, seed, 0.5 if method == "aft" else 0.2), extra=extra))
            for ts in sets:
                for method in OFFSETS:
                    for beta in BETAS:
                        out.append(_rec(suite=suite, dataset=dataset, student=student, teachers=list(ts),
                                        method=method, beta=beta, train_size=n, seed=0, phase="select",
                                        val_acc=0.5 + 0.1 * (beta == 1.0) + 0.01 * beta, test_acc=None, wall_s=0.5))
    return out
