"""`SuiteConfig`: a comparison grid (methods x teachers x students x sizes x seeds) read from YAML."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from aft.errors import ConfigError
from aft.experiments.selection import CV_SCORES, DEFAULT_CV_SCORE
from aft.paths import safe_name

DEFAULT_BETA_GRID = (0.1, 1.0, 3.0, 10.0, 30.0)


@dataclass
class SuiteConfig:
    """One comparison suite.

    Attributes:
        name: suite name (records and reports group by it); one plain folder name (default records:
            ``results/<name>/records.jsonl``), never a path.
        dataset: dataset name for `aft.data.load_split`.
        dataset_options: extra options for the loader.
        students: student names; `student_options` maps a student to its build options.
        teacher_sets: each entry a list of teachers whose features are concatenated.
        methods: regularizer names compared (``"none"`` is STL, always included).
        ablation_methods: extra methods run only with the first student and teacher set.
        ablation_sizes: train sizes the ablations run at (default: all).
        ladder_methods: methods run with the teacher sets after the first (ladder, multi-teacher).
        ladder_students: students the later teacher sets run with (default: all).
        ladder_sizes: train sizes the later teacher sets run at (default: all).
        probe: also fit the linear probe on each teacher set's features.
        train_sizes: labeled training-set sizes (validation is carved out of them).
        pool_size: features are extracted once for a seeded pool of this many training
            samples; every run subsamples its training set from the pool.
        test_limit: evaluate on this many test samples (stratified, seeded); None = all.
        seeds: seeds of the final runs (data subsample, initialization, order).
        beta_grid: the weights tried for every regularized method (same grid for all).
        select_seed: seed of the selection runs.
        views: numbers of augmented views to compare (1 = no augmentation).
        augmentation: augmentation policy name used when views > 1.
        train: overrides of the training config shared by every run (steps, lr, batch_size...).
        train_by_size: per train size, overrides on top of `train` (a budget for STL's plateau at
            that size, e.g. ``{2000: {steps: 3000, lr: 0.005}}``; every method gets the same one).
        teacher_options: per teacher, options for `build_teacher` (e.g. image resolution).
        selection: how beta and the stopping step are chosen: ``cv`` (stratified k-fold over the
            training labels, then the finals train on all of them) or ``holdout`` (one validation
            split of ``val_fraction``, as before); see `aft.experiments.selection`.
        folds: k of the cross-validation.
        cv_score: how cross-validation compares the betas (`aft.experiments.selection.CV_SCORES`):
            ``loss`` (mean fold validation cross-entropy, the default) or ``accuracy``.
        regret_analysis: also run every beta on test (phase ``regret``, never used to choose) and
            both selectors, for the selection-regret table.
        regret_sizes: train sizes the regret runs are made at (default: all).
        beta_auto: methods also run with ``--beta auto`` (phase ``auto``: every seed, the suite's
            budget, no grid; analysis beside the cross-validated choice, never used to choose).
    """

    name: str
    dataset: str
    students: list[str]
    teacher_sets: list[list[str]]
    methods: list[str]
    train_sizes: list[int]
    dataset_options: dict[str, Any] = field(default_factory=dict)
    student_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    ablation_methods: list[str] = field(default_factory=list)
    ablation_sizes: list[int] | None = None
    ladder_sizes: list[int] | None = None
    ladder_methods: list[str] = field(default_factory=list)
    ladder_students: list[str] | None = None
    probe: bool = True
    pool_size: int | None = None
    test_limit: int | None = None
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    beta_grid: list[float] = field(default_factory=lambda: list(DEFAULT_BETA_GRID))
    select_seed: int = 0
    views: list[int] = field(default_factory=lambda: [1])
    view_methods: list[str] = field(default_factory=lambda: ["none", "aft"])
    augmentation: str | None = None
    train: dict[str, Any] = field(default_factory=dict)
    train_by_size: dict[int, dict[str, Any]] = field(default_factory=dict)
    teacher_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    selection: str = "cv"
    folds: int = 5
    cv_score: str = DEFAULT_CV_SCORE
    regret_analysis: bool = False
    regret_sizes: list[int] | None = None
    beta_auto: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        safe_name(self.name, "suite name")  # it becomes results/<name>/: one plain folder name
        if not self.students or not self.teacher_sets or not self.methods or not self.train_sizes:
            raise ConfigError(f"suite {self.name!r}: students, teacher_sets, methods and train_sizes must be non-empty")
        if "none" not in self.methods:
            self.methods = ["none", *self.methods]
        if any(b < 0 for b in self.beta_grid) or not self.beta_grid:
            raise ConfigError(f"suite {self.name!r}: beta_grid must be a non-empty list of numbers >= 0")
        if not self.seeds:
            raise ConfigError(f"suite {self.name!r}: seeds must be non-empty")
        if self.pool_size is None:
            self.pool_size = max(self.train_sizes)
        if self.pool_size < max(self.train_sizes):
            raise ConfigError(f"suite {self.name!r}: pool_size {self.pool_size} is smaller than the largest train size")
        if self.selection not in ("cv", "holdout"):
            raise ConfigError(f"suite {self.name!r}: selection must be cv or holdout, got {self.selection!r}")
        if isinstance(self.folds, bool) or not isinstance(self.folds, int) or self.folds < 2:
            raise ConfigError(f"suite {self.name!r}: folds must be an integer >= 2, got {self.folds!r}")
        if self.cv_score not in CV_SCORES:
            raise ConfigError(f"suite {self.name!r}: cv_score must be one of {', '.join(CV_SCORES)}, got {self.cv_score!r}")
        if self.selection == "cv" and self.folds > min(self.train_sizes):
            raise ConfigError(f"suite {self.name!r}: {self.folds} folds need at least {self.folds} labels; "
                              f"the smallest train size is {min(self.train_sizes)}")
        try:
            self.train_by_size = {int(k): dict(v) for k, v in (self.train_by_size or {}).items()}
        except (TypeError, ValueError):
            raise ConfigError(f"suite {self.name!r}: train_by_size maps a train size to training overrides, "
                              f"e.g. {{2000: {{steps: 3000}}}}") from None
        if set(self.train_by_size) - set(self.train_sizes):
            raise ConfigError(f"suite {self.name!r}: train_by_size has sizes {sorted(set(self.train_by_size) - set(self.train_sizes))} "
                              f"that are not in train_sizes {self.train_sizes}")
        if self.regret_sizes is not None and set(self.regret_sizes) - set(self.train_sizes):
            raise ConfigError(f"suite {self.name!r}: regret_sizes {self.regret_sizes} must be train sizes of the suite "
                              f"({self.train_sizes})")
        if "none" in self.beta_auto or set(self.beta_auto) - set(self.methods):
            raise ConfigError(f"suite {self.name!r}: beta_auto lists methods of the suite with a weight "
                              f"({[m for m in self.methods if m != 'none']}), got {self.beta_auto}")
        if any(v > 1 for v in self.views) and not self.augmentation:
            raise ConfigError(f"suite {self.name!r}: views > 1 need an `augmentation` policy name")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SuiteConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown suite keys {unknown}; valid keys: {sorted(known)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise ConfigError(f"invalid suite config: {exc}") from None

    @classmethod
    def from_yaml(cls, path: str | Path) -> SuiteConfig:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"suite config {p} does not exist; pass a YAML file (the built-in suites are in src/aft/experiments/suites/)")
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ConfigError(f"suite config {p} must be a YAML mapping")
        return cls.from_dict(data)

    def settings_hash(self, train_size: int | None = None, phase: str | None = None) -> str:
        """Short hash of the settings a run of `train_size` shares (a changed budget makes its runs new).

        A size's own `train_by_size` budget counts only for that size, so giving one size a longer budget
        leaves the records of the other sizes valid; without `train_size` every size's budget counts.
        Fold runs (`phase` ``cv``) scored by loss get keys of their own: fold records made before aft
        kept the validation loss in their curves cannot be scored by it. The other runs keep their
        keys, so a final whose (beta, steps) the new score also chooses is reused.
        """
        shared = {
            "train": self.train, "student_options": self.student_options, "teacher_options": self.teacher_options,
            "dataset_options": self.dataset_options, "pool_size": self.pool_size, "test_limit": self.test_limit,
            "augmentation": self.augmentation,
        }
        by_size = self.train_by_size if train_size is None else {
            k: v for k, v in self.train_by_size.items() if k == train_size}
        if by_size:  # sizes without their own budget keep the keys of their earlier records
            shared["train_by_size"] = {str(k): v for k, v in sorted(by_size.items())}
        if self.selection != "holdout":  # holdout suites keep the keys of their earlier records
            shared.update(selection=self.selection, folds=self.folds)
        if phase == "cv" and self.cv_score != "accuracy":
            shared["cv_record"] = "val_loss"
        return hashlib.sha256(json.dumps(shared, sort_keys=True, default=str).encode()).hexdigest()[:10]

    def regret_at(self, train_size: int) -> bool:
        """Whether the regret runs are made at `train_size` (``regret_analysis`` and `regret_sizes`)."""
        return self.regret_analysis and (self.regret_sizes is None or train_size in self.regret_sizes)

    def quick(self) -> SuiteConfig:
        """A reduced grid for smoke runs: one student, teacher set and size; 2 betas; at most 3 folds;
        up to 3 seeds of the final runs (one seed is too noisy to compare methods even in a smoke run);
        views 1 and the smallest K > 1 the suite compares (if any). The training budget is the suite's:
        methods compared below the budget where STL plateaus measure how fast they start, not how well
        they transfer (at 150 steps AFT trailed STL on the demo; at the suite's 600 it led, docs/training.md)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(
            name=f"{self.name}-quick",
            students=self.students[:1],
            teacher_sets=self.teacher_sets[:1],
            methods=[m for m in self.methods if m in ("none", "kd", "aft")] or self.methods[:2],
            ablation_methods=[],
            ladder_methods=[],
            ladder_students=None,
            train_sizes=[min(self.train_sizes)],
            train_by_size={k: v for k, v in self.train_by_size.items() if k == min(self.train_sizes)},
            pool_size=min(self.train_sizes),
            test_limit=min(self.test_limit or 1000, 1000),
            seeds=self.seeds[:3],
            beta_grid=[1.0, 10.0],
            folds=min(self.folds, 3),
            views=[1] + sorted(v for v in self.views if v > 1)[:1],  # keep one augmented setting
            regret_sizes=None,
        )
        return SuiteConfig.from_dict(data)
