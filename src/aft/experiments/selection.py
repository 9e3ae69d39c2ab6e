"""Choosing beta (and the stopping step) on training labels only: one interface, two selectors.

* ``holdout``: one validation split carved from the training labels (``val_fraction``); each beta
  is one run, scored by the validation accuracy of its best checkpoint.
* ``cv``: stratified k-fold cross-validation over the training labels (folds seeded by the run's
  seed; fold ``f`` holds out the samples whose fold index is ``f``). Each (beta, fold) is one run
  that records its validation accuracy and cross-entropy at every evaluation step. For each beta
  the mean accuracy over folds is taken at every evaluation step; its stopping step is the latest
  step whose mean is within one standard error of the best mean (`beta_score` says why). The betas
  are then compared by a `CV_SCORES` entry at their stopping steps: ``loss`` (the default) takes
  the beta with the lowest mean fold validation cross-entropy, ``accuracy`` the best mean fold
  accuracy (ties go to the smaller beta). The final runs then train on *all* training labels for
  the chosen number of steps, without a validation carve-out, and touch test once.

Why the loss compares betas (docs/training.md, "Choosing beta"): with 100 labels a fold holds 20
examples, so fold accuracies move in steps of 5 points and the three betas' means tie within a
point while their test accuracies differ by 2-5 (results/FINDINGS.md). The cross-entropy of the
same predictions is a proper scoring rule that also counts how confident each prediction is: it
separates the betas where accuracy ties, and on text it also ranks large betas last where they
hurt.

A choice at the smallest or largest beta of a grid of three or more values is flagged
(`Choice.at_edge`): the optimum may lie outside the grid.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from aft.errors import ConfigError, DataError
from aft.experiments.records import RunRecord, finite_or_null

log = logging.getLogger(__name__)

DEFAULT_FOLDS = 5


# ---------------------------------------------------------------------------------------------
def stratified_folds(labels: Sequence[int] | np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold index (0..k-1) of every sample: per class, a seeded permutation dealt round-robin, the
    dealing offset continuing across classes so fold sizes differ by at most one.

    Raises:
        DataError: fewer samples than folds, or k < 2.
    """
    y = np.asarray(labels)
    if k < 2:
        raise ConfigError(f"cross-validation needs at least 2 folds, got {k}")
    if len(y) < k:
        raise DataError(f"{len(y)} training labels cannot be split into {k} folds; use fewer folds or more labels")
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    offset = 0
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        idx = idx[rng.permutation(len(idx))]
        fold[idx] = (offset + np.arange(len(idx))) % k
        offset = (offset + len(idx)) % k
    return fold


def fold_split(split: Any, k: int, fold: int, seed: int) -> tuple[Any, Any]:
    """(train, validation) `DatasetSplit`s of fold `fold` of `stratified_folds(split.labels, k, seed)`."""
    if not 0 <= fold < k:
        raise ConfigError(f"fold {fold} outside 0..{k - 1}")
    f = stratified_folds(split.labels, k, seed)
    return split.subset(np.flatnonzero(f != fold), "train"), split.subset(np.flatnonzero(f == fold), "val")


# ---------------------------------------------------------------------------------------------
@dataclass
class BetaScore:
    """One beta's cross-validated score: mean ± se over folds at its best step (`folds`: the fold
    scores there); `step` is the stopping step chosen (`beta_score`), at or after the best step."""

    beta: float
    mean: float
    se: float
    step: int | None
    folds: list[float] = field(default_factory=list)
    loss: float | None = None  #: mean fold validation cross-entropy at `step` (None: not recorded)


@dataclass
class Choice:
    """What a selector chose and the evidence.

    Attributes:
        mode: ``"cv"`` or ``"holdout"``.
        beta: the chosen weight.
        step: the chosen number of training steps (None: the run's own best/last step).
        mean, se: the chosen beta's validation accuracy (se over folds; nan for holdout).
        scores: every beta's score, sorted by beta (the beta curve).
        at_edge: the choice is the smallest or largest of 3+ betas.
        score: what compared the betas (a `CV_SCORES` name; ``accuracy`` for holdout).
    """

    mode: str
    beta: float
    step: int | None
    mean: float
    se: float
    scores: list[BetaScore]
    at_edge: bool = False
    score: str = "accuracy"

    def to_dict(self) -> dict[str, Any]:
        return finite_or_null(asdict(self))

    def summary(self) -> str:
        se = "" if math.isnan(self.se) else f" ± {100 * self.se:.1f}"
        step = "" if self.step is None else f", {self.step} steps"
        chosen = next((s for s in self.scores if s.beta == self.beta), None)
        loss = f", val loss {chosen.loss:.3f}" if self.score == "loss" and chosen and chosen.loss is not None else ""
        return f"beta={self.beta:g}{step} ({self.mode} val {100 * self.mean:.1f}{se} %{loss})"


def _at_edge(beta: float, betas: Sequence[float]) -> bool:
    grid = sorted(set(betas))
    return len(grid) >= 3 and beta in (grid[0], grid[-1])


def choose_holdout(records: Sequence[RunRecord]) -> Choice:
    """The beta whose run has the best validation accuracy; ties -> the smaller beta."""
    if not records:
        raise ValueError("no selection records to choose beta from")
    scores = sorted((BetaScore(r.beta, float(r.val_acc), float("nan"), None, [float(r.val_acc)]) for r in records),
                    key=lambda s: s.beta)
    best = max(scores, key=lambda s: (_finite(s.mean), -s.beta))
    return Choice("holdout", best.beta, None, best.mean, float("nan"), scores, _at_edge(best.beta, [s.beta for s in scores]))


def _finite(x: float) -> float:
    return x if math.isfinite(x) else -math.inf


def _fold_curve(r: RunRecord) -> dict[int, float]:
    """step -> validation accuracy of one fold run (its final val_acc when it has no curve)."""
    curve = {int(p["step"]): float(p["val_acc"]) for p in r.curve if p.get("val_acc") is not None}
    if not curve:
        step = r.extra.get("selected_step") or r.extra.get("steps") or 0
        curve = {int(step): float(r.val_acc)}
    return curve


def _fold_losses(r: RunRecord) -> dict[int, float]:
    """step -> validation cross-entropy of one fold run (empty for records made before it was kept)."""
    return {int(p["step"]): float(p["val_loss"]) for p in r.curve
            if p.get("val_loss") is not None and p.get("val_acc") is not None}


def stopping_step(curves: Sequence[dict[int, float]]) -> tuple[int, int, dict[int, tuple[float, float]]]:
    """(earliest best step, stopping step, step -> (fold mean, SE)) of fold curves (higher is better).

    The stopping step is the latest step shared by every curve whose fold mean is within one
    standard error of the best mean (`beta_score` says why the latest). Raises ValueError when the
    curves share no step.
    """
    steps = sorted(set.intersection(*(set(c) for c in curves)))
    if not steps:
        raise ValueError("the fold curves share no evaluation step")

    def stats(s: int) -> tuple[float, float]:
        vals = [c[s] for c in curves]
        se = float(np.std(vals, ddof=1) / math.sqrt(len(vals))) if len(vals) > 1 else float("nan")
        return math.fsum(vals) / len(vals), se

    means = {s: stats(s) for s in steps}
    best_step = max(steps, key=lambda s: (_finite(means[s][0]), -s))  # earliest best: its folds score beta
    best_mean, best_se = means[best_step]
    tol = best_se if math.isfinite(best_se) else 0.0
    step = max(s for s in steps if _finite(means[s][0]) >= _finite(best_mean) - tol - 1e-12)
    return best_step, step, means


def beta_score(beta: float, folds: Sequence[RunRecord]) -> BetaScore:
    """Mean over folds at every evaluation step all folds share; the stopping step is the LATEST step
    whose mean is within one standard error (over folds) of the best mean.

    Why the latest (docs/training.md, "Choosing the stopping step"): the refit trains on k/(k-1) times
    more labels, and a run that ends at its last step is the one the cosine schedule anneals; on the
    demo's dev-set runs (benchmarks/beta_gate_dev.py) AFT gained 3-5 points from 300 to 600 steps
    where STL had plateaued, and fold curves on 20-34 images tie often, so the earliest best step
    refit AFT at half its budget."""
    curves = [_fold_curve(r) for r in sorted(folds, key=lambda r: r.fold or 0)]
    try:
        best_step, step, means = stopping_step(curves)
    except ValueError:
        raise DataError(f"cv runs of beta={beta:g} share no evaluation step; rerun them with the same eval_every") from None
    best_mean, best_se = means[best_step]
    losses = [_fold_losses(r) for r in sorted(folds, key=lambda r: r.fold or 0)]
    loss = math.fsum(lo[step] for lo in losses) / len(losses) if all(step in lo for lo in losses) else None
    return BetaScore(beta, best_mean, best_se, step, [c[best_step] for c in curves], loss)


def _by_loss(s: BetaScore) -> tuple[float, float]:
    if s.loss is None:
        raise DataError(f"cv runs of beta={s.beta:g} have no validation loss in their curves (made before aft "
                        "kept it): rerun them, or choose by accuracy (cv_score: accuracy)")
    return (-s.loss if math.isfinite(s.loss) else -math.inf, -s.beta)


#: how the betas' cross-validated scores are compared: name -> sort key (the largest wins; ties go to
#: the smaller beta)
CV_SCORES: dict[str, Callable[[BetaScore], tuple[float, float]]] = {
    "loss": _by_loss,
    "accuracy": lambda s: (_finite(s.mean), -s.beta),
}
DEFAULT_CV_SCORE = "loss"


def check_cv_score(name: str) -> str:
    """`name` if it is a `CV_SCORES` entry; else a one-line ConfigError naming the choices."""
    if name not in CV_SCORES:
        raise ConfigError(f"unknown cv score {name!r}; choose one of {', '.join(CV_SCORES)}")
    return name


def records_cv_score(records: Sequence[RunRecord]) -> str:
    """The score the fold records were made for (`extra.cv_score`, written by the comparison runner);
    ``accuracy`` for records made before aft compared betas by loss."""
    names = {r.extra.get("cv_score") for r in records}
    if len(names) == 1 and (name := names.pop()) in CV_SCORES:
        return str(name)
    return "accuracy"


def choose_cv(records: Sequence[RunRecord], folds: int | None = None, score: str | None = None) -> Choice:
    """Cross-validated choice of (beta, step) from the ``cv`` records of one (setting, method).

    Args:
        records: the fold records (every beta, every fold).
        folds: the expected number of folds (checked when given).
        score: a `CV_SCORES` name; None: the one the records were made for (`records_cv_score`).

    Raises:
        DataError: a beta lacks some of the `folds` fold runs, or ``loss`` is asked of records without it.
    """
    if not records:
        raise ValueError("no cv records to choose beta from")
    by_beta: dict[float, list[RunRecord]] = defaultdict(list)
    for r in records:
        by_beta[r.beta].append(r)
    if folds is not None:
        for b, rs in by_beta.items():
            if sorted(r.fold for r in rs) != list(range(folds)):  # type: ignore[type-var]
                raise DataError(f"beta={b:g}: cv records for folds {sorted(r.fold for r in rs)}, expected 0..{folds - 1}")  # type: ignore[type-var]
    score = check_cv_score(score or records_cv_score(records))
    scores = [beta_score(b, by_beta[b]) for b in sorted(by_beta)]
    best = max(scores, key=CV_SCORES[score])
    return Choice("cv", best.beta, best.step, best.mean, best.se, scores, _at_edge(best.beta, sorted(by_beta)),
                  score)


#: selector name -> function of the selection records of one (setting, method)
SELECTORS: dict[str, Callable[[Sequence[RunRecord]], Choice]] = {"holdout": choose_holdout, "cv": choose_cv}


def choose(mode: str, records: Sequence[RunRecord]) -> Choice:
    """Apply the selector `mode` (``"cv"`` or ``"holdout"``)."""
    if mode not in SELECTORS:
        raise ConfigError(f"unknown selection {mode!r}; choose one of {', '.join(SELECTORS)}")
    return SELECTORS[mode](records)


def edge_warning(label: str, choice: Choice) -> str | None:
    """The warning line for a choice at the edge of its grid (None when inside)."""
    if not choice.at_edge:
        return None
    grid = [s.beta for s in choice.scores]
    side = "smallest" if choice.beta == min(grid) else "largest"
    return (f"{label}: selected beta={choice.beta:g} is the {side} of the grid {grid}; the best value may lie "
            "outside it: extend beta_grid")


# ---------------------------------------------------------------------------------------------
def parse_beta_grid(text: str) -> list[float]:
    """``"0.1,1,10"`` -> ``[0.1, 1.0, 10.0]`` (finite, >= 0, at least one)."""
    try:
        grid = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise ConfigError(f"--beta-grid {text!r} is not a comma-separated list of numbers, e.g. 0.1,1,10") from None
    if not grid or any(not math.isfinite(b) or b < 0 for b in grid):
        raise ConfigError(f"--beta-grid {text!r} must list finite numbers >= 0, e.g. 0.1,1,10")
    return sorted(set(grid))


def cross_validate_train(cfg: Any, betas: Sequence[float], folds: int = DEFAULT_FOLDS,
                         score: str = DEFAULT_CV_SCORE) -> tuple[Any, Choice, list[dict[str, Any]]]:
    """`aft train --select cv`: choose beta and the step by k-fold CV on the config's training labels
    (betas compared by `score`, a `CV_SCORES` name), then train once on all of them with the choice
    (the run folder and test evaluation as usual).

    Returns:
        (the final `TrainResult`, the `Choice`, one dict per fold run).
    """
    import dataclasses

    from aft.training import train
    from aft.training.data import load_named_split, subsample
    from aft.training.loop import preflight

    check_cv_score(score)
    cfg = dataclasses.replace(cfg).validate()
    preflight(cfg)  # names, features, output folder: before any fold run
    source = load_named_split(cfg.dataset, cfg.train_split, cfg.dataset_options)
    labeled = subsample(source, cfg.train_limit, cfg.seed)
    features = None
    from aft.regularizers import REGULARIZERS

    if REGULARIZERS.get(cfg.method).uses_teacher and cfg.feature_store and cfg.teachers:
        from aft.errors import FeatureStoreError
        from aft.features import open_features

        try:
            features = open_features(cfg.feature_store, cfg.teachers, labeled)
        except FeatureStoreError:
            if labeled is source:
                raise
            features = open_features(cfg.feature_store, cfg.teachers, source)
    eval_every = cfg.eval_every or (max(1, cfg.steps // 6) if cfg.steps else 0)
    runs: list[RunRecord] = []
    fold_rows: list[dict[str, Any]] = []
    for beta in sorted(set(betas)):
        for f in range(folds):
            tr, val = fold_split(labeled, folds, f, cfg.seed)
            fcfg = dataclasses.replace(cfg, beta=float(beta), output=None, select="best", eval_every=eval_every,
                                       train_limit=None, tensorboard=False, resume=False, overwrite=False)
            res = train(fcfg, features=features, train_split=tr, val_split=val, test_split=None)
            curve = [{"step": float(h["step"]), "val_acc": float(h["val_accuracy"]),
                      "val_loss": float(h["val_loss"])} for h in res.history if "val_accuracy" in h]
            runs.append(RunRecord("train", str(cfg.dataset), str(cfg.student), list(cfg.teachers or []), cfg.method,
                                  float(beta), len(labeled), cfg.seed, "cv", float(res.val_accuracy or 0.0),
                                  curve=curve, fold=f))
            fold_rows.append({"beta": float(beta), "fold": f, "val_accuracy": float(res.val_accuracy or 0.0),
                              "best_step": res.selected_step, "val_size": len(val), "curve": curve})
            log.info("cv beta=%g fold %d/%d: val %.4f (best step %s)", beta, f + 1, folds, res.val_accuracy or 0.0,
                     res.selected_step)
    choice = choose_cv(runs, folds, score)
    log.info("cv selected %s", choice.summary())
    warn = edge_warning(f"{cfg.method} {cfg.student}", choice)
    if warn:
        log.warning(warn)
    # all labels, retrained for the chosen number of steps (the schedule spans them: the usual refit)
    final = dataclasses.replace(cfg, beta=choice.beta, steps=choice.step or cfg.steps,
                                epochs=None if choice.step else cfg.epochs, val_fraction=0.0, select="last")
    return train(final), choice, fold_rows
