"""`TrainingExecutor`: runs one comparison job with aft's own pieces (data, feature store, trainer, probe).

Teacher features are extracted once per suite for a seeded *pool* of training samples and for the
(test) evaluation split; every run subsamples its labeled training set from the pool with its own
seed, so no run ever triggers a new extraction. Suites with ``views: [1, 4, 8]`` also extract the
pool's augmented views once, for the largest K (view k depends only on (policy, sample id, k), so
the first 4 views of the 8-view store are exactly a 4-view store); runs with K views draw from views
0..K-1 of it, and STL runs with K views get the same augmentation without teacher features.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from aft.data import DatasetSplit, load_split, stratified_subsample
from aft.errors import OutputExistsError
from aft.experiments.grid import PROBE, RunJob
from aft.experiments.records import RunRecord
from aft.experiments.run_metrics import confusion_matrix, curve_points, rho_profile
from aft.experiments.selection import fold_split
from aft.experiments.suite import SuiteConfig
from aft.features import ConcatenatedFeatures, extract, open_features
from aft.training import TrainConfig, train
from aft.training.data import carve_validation

log = logging.getLogger(__name__)

#: training settings every comparison run uses unless the suite overrides them
DEFAULT_TRAIN: dict[str, Any] = {"steps": 300, "batch_size": 64, "lr": 2e-3, "select": "best"}


@dataclass
class SuiteData:
    """The splits of a suite: the training pool (features cached) and the evaluation split."""

    pool: DatasetSplit
    test: DatasetSplit


@dataclass
class TrainingExecutor:
    """Runs `RunJob`s of one suite.

    Args:
        suite: the suite being run.
        store_root: feature-store root (features are extracted there once, then reused).
        device: torch device for teachers and students.
        cache_dir: asset cache override.
        progress: show progress bars of extraction.
        keep: ``"best"`` keeps the trained students of the final runs (each method's selected
            configuration, every seed), ``"all"`` of every trained run; None keeps none.
        keep_root: folder of the kept students (``<keep_root>/<run>/student.safetensors + student.json``).
    """

    suite: SuiteConfig
    store_root: Path
    device: str = "cpu"
    cache_dir: str | None = None
    progress: bool = True
    keep: str | None = None
    keep_root: Path | None = None
    _data: SuiteData | None = field(default=None, init=False, repr=False)
    _features: dict[tuple[str, ...], tuple[ConcatenatedFeatures, ConcatenatedFeatures]] = field(
        default_factory=dict, init=False, repr=False
    )
    _teacher_cost: dict[str, dict[str, float]] = field(default_factory=dict, init=False, repr=False)
    _view_features: dict[tuple[str, ...], ConcatenatedFeatures] = field(default_factory=dict, init=False, repr=False)
    view_extraction: dict[str, dict[str, float]] = field(default_factory=dict, init=False, repr=False)

    # ---------------------------------------------------------------------------------------------
    def data(self) -> SuiteData:
        """Load the dataset, carve the seeded pool and the evaluation split (cached)."""
        if self._data is None:
            opts = dict(self.suite.dataset_options)
            train_full = load_split(self.suite.dataset, "train", cache_dir=self.cache_dir, **opts)
            test_full = load_split(self.suite.dataset, "test", cache_dir=self.cache_dir, **opts)
            pool = stratified_subsample(train_full, self.suite.pool_size, seed=0) if self.suite.pool_size < len(
                train_full
            ) else train_full
            test = test_full
            if self.suite.test_limit and self.suite.test_limit < len(test_full):
                test = stratified_subsample(test_full, self.suite.test_limit, seed=0)
            self._data = SuiteData(pool=pool, test=test)
        return self._data

    def teachers(self) -> list[str]:
        """Every teacher the suite uses, once each, in first-use order."""
        seen: list[str] = []
        for ts in self.suite.teacher_sets:
            seen += [t for t in ts if t not in seen]
        return seen

    def prepare_features(self) -> None:
        """Extract every teacher's features for the pool and the test split (skips complete stores)."""
        d = self.data()
        from aft.data.multifield import MultiFieldSplit, build_field_teacher, select_teacher_field

        for teacher in self.teachers():
            opts = self.suite.teacher_options.get(teacher, {})
            multi = isinstance(d.pool, MultiFieldSplit)  # `teacher@field` on a multi-field dataset
            t = build_field_teacher(teacher, device=self.device, **opts)  # extract() keys its store by (teacher, field)
            self._extract_cached(t, d.pool)
            if self.suite.probe:
                self._extract_cached(t, d.test)
            if self.max_views() > 1:
                t0 = time.perf_counter()
                self._extract_cached(t, d.pool, views=self.max_views(), augmentation=self.suite.augmentation)
                self.view_extraction[teacher] = {"views": float(self.max_views()), "seconds": time.perf_counter() - t0}
            self._teacher_cost.setdefault(teacher, _teacher_cost(t, select_teacher_field(d.pool, t)[1] if multi else d.pool))

    def _extract_cached(self, teacher: Any, split: DatasetSplit, **kw: Any) -> None:
        """`extract`, treating the suite's stores as a cache: a store of an older teacher version or other
        preprocessing (e.g. after an aft upgrade changed the teacher's version string) is re-extracted."""
        try:
            extract([teacher], split, self.store_root, progress=self.progress, **kw)
        except OutputExistsError as exc:
            log.warning("%s; re-extracting it for this comparison", str(exc).split(";")[0])
            extract([teacher], split, self.store_root, progress=self.progress, overwrite=True, **kw)

    def max_views(self) -> int:
        """The largest number of views any run of the suite uses (1: no augmented views)."""
        return max([1, *self.suite.views])

    def view_features(self, teachers: tuple[str, ...]) -> ConcatenatedFeatures:
        """The pool's augmented-view features (``max_views()`` views) for a teacher set."""
        if teachers not in self._view_features:
            self._view_features[teachers] = open_features(
                self.store_root, list(teachers), self.data().pool, views=self.max_views(),
                augmentation=self.suite.augmentation,
            )
        return self._view_features[teachers]

    def features(self, teachers: tuple[str, ...]) -> tuple[ConcatenatedFeatures, ConcatenatedFeatures | None]:
        """(pool features, test features) for a teacher set, id-aligned and concatenated."""
        if teachers not in self._features:
            d = self.data()
            pool = open_features(self.store_root, list(teachers), d.pool)
            test = open_features(self.store_root, list(teachers), d.test) if self.suite.probe else None
            self._features[teachers] = (pool, test)  # type: ignore[assignment]
        return self._features[teachers]

    def for_worker(self) -> ExecutorSpec:
        """A picklable description of this executor for `--jobs` worker processes (call after
        `prepare_features`: the workers open the extracted stores, never extract)."""
        return ExecutorSpec(self.suite, self.store_root, self.device, self.cache_dir, dict(self._teacher_cost),
                            self.keep, self.keep_root)

    # ---------------------------------------------------------------------------------------------
    def __call__(self, job: RunJob) -> RunRecord:
        d = self.data()
        train_split = stratified_subsample(d.pool, job.train_size, seed=job.seed) if job.train_size < len(
            d.pool
        ) else d.pool
        if job.method == PROBE:
            return self._probe(job, train_split)
        settings = {**DEFAULT_TRAIN, **self.suite.train, **self.suite.train_by_size.get(job.train_size, {})}
        steps = int(settings.get("steps", 300))
        settings.setdefault("eval_every", max(1, steps // 6))
        val_split = None
        if job.phase == "cv":  # fold f of the training labels is the validation split
            train_split, val_split = fold_split(train_split, self.suite.folds, int(job.fold or 0), job.seed)
        elif job.steps is not None:  # cv finals and regret runs: all labels, the chosen number of steps
            # (the schedule spans them, the usual refit; measured better than cutting the suite's schedule
            # at that step on the demo, docs/training.md)
            settings.update(steps=int(job.steps), select="last", val_fraction=0.0)
            settings.pop("epochs", None)
        elif job.phase == "auto":  # --beta auto needs no selection: all labels, the suite's budget, last step
            settings.update(select="last", val_fraction=0.0)
        cfg = TrainConfig.from_dict(
            {
                **settings,
                "dataset": self.suite.dataset,
                "student": job.student,
                "student_options": dict(self.suite.student_options.get(job.student, {})),
                "method": job.method,
                "beta": job.beta,
                "beta_rule": "auto" if job.phase == "auto" else "fixed",
                **({"beta_auto_scale": job.beta} if job.phase == "auto" else {}),
                "teachers": list(job.teachers),
                "seed": job.seed,
                "views": job.views,
                "augmentation": self.suite.augmentation if job.views > 1 else None,
                "device": self.device,
                "output": None,
                "progress": False,
                "tensorboard": False,
            }
        )
        features = None
        if job.teachers:
            features = self.view_features(job.teachers) if job.views > 1 else self.features(job.teachers)[0]
        test = d.test if job.phase in ("final", "regret", "auto") else None
        t0 = time.perf_counter()
        result = train(cfg, features=features, train_split=train_split, test_split=test, val_split=val_split)
        wall = time.perf_counter() - t0
        # the report's learning curves (train/task loss, R, val acc), confusion matrix and sorted-rho curves
        # (training-loss points only for runs the report draws: finals and regret runs; selection runs keep
        # their evaluation points, which cross-validation reads)
        curve = curve_points(result.history, max_train_points=30 if job.phase in ("final", "regret", "auto") else 0)
        extra: dict[str, Any] = {"steps": result.steps, "selected_step": result.selected_step}
        if result.beta_auto is not None:
            extra["beta_auto"] = result.beta_auto
        profile = rho_profile(result.regularizer.importance(), dict(getattr(features, "column_ranges", None) or {}))
        if profile:
            extra["rho_sorted"] = profile
        if job.phase == "final" and test is not None:
            cm = confusion_matrix(result.student, test.inputs, test.labels, test.num_classes, cfg.eval_batch_size)
            if cm is not None:
                extra.update(confusion=cm, class_names=list(test.class_names))
        if result.collapse is not None:  # a run that never left chance is flagged, never silently averaged
            extra["collapsed"] = bool(result.collapse.collapsed)
            if result.collapse.collapsed:
                extra["collapse_reason"] = result.collapse.reason
        if val_split is not None:
            extra.update(folds=self.suite.folds, fold_seed=job.seed, val_size=len(val_split), cv_score=self.suite.cv_score,
                         fold_ids_sha256=ids_digest(val_split.ids))
            if len(val_split) <= 1000:
                extra["fold_val_ids"] = [str(i) for i in val_split.ids]
        if job.phase == "final":
            extra["latency_ms"] = _student_latency_ms(result.student, train_split)
        kept = self._keep_student(job, result, d)
        if kept is not None:
            extra["student_dir"] = kept
        return RunRecord(
            suite=job.suite,
            dataset=job.dataset,
            student=job.student,
            teachers=list(job.teachers),
            method=job.method,
            beta=job.beta,
            train_size=job.train_size,
            seed=job.seed,
            phase=job.phase,
            val_acc=float("nan") if result.val_accuracy is None else float(result.val_accuracy),
            test_acc=None if result.test_accuracy is None else float(result.test_accuracy),
            wall_s=wall,
            student_params=int(result.student_params),
            views=job.views,
            config=job.config,
            rho=result.rho_summary or {},
            curve=curve,
            extra=extra,
            fold=job.fold,
            steps=job.steps,
        )

    def _keep_student(self, job: RunJob, result: Any, d: SuiteData) -> str | None:
        """Save the trained student of `job` under `keep_root` when `keep` selects it; returns the
        folder relative to ``keep_root``'s parent (the compare output root), posix-style."""
        if self.keep is None or self.keep_root is None or (self.keep == "best" and job.phase != "final"):
            return None
        from aft.students.io import save_student

        folder = self.keep_root / kept_name(job)
        save_student(result.student, folder, extra={
            "method": job.method, "dataset": d.pool.dataset, "suite": job.suite, "beta": job.beta, "seed": job.seed,
            "phase": job.phase, "teachers": list(job.teachers), "train_size": job.train_size,
            "test_accuracy": result.test_accuracy, "val_accuracy": result.val_accuracy, "run_key": job.key(),
        })
        return folder.relative_to(self.keep_root.parent).as_posix()

    def _probe(self, job: RunJob, train_split: DatasetSplit) -> RunRecord:
        from aft.evaluation.linear_probe import fit_linear_probe

        val_fraction = float({**DEFAULT_TRAIN, **self.suite.train}.get("val_fraction", 0.1))
        tr, val = carve_validation(train_split, val_fraction, job.seed)
        if val is None:
            val = tr
        pool_f, test_f = self.features(job.teachers)
        t0 = time.perf_counter()
        probe = fit_linear_probe(
            torch.from_numpy(pool_f.get(tr.ids)),
            torch.as_tensor(tr.labels),
            torch.from_numpy(pool_f.get(val.ids)),
            torch.as_tensor(val.labels),
            num_classes=tr.num_classes,
        )
        d = self.data()
        test_acc = None
        if job.phase == "final" and test_f is not None:
            test_acc = probe.accuracy(torch.from_numpy(test_f.get(d.test.ids)), torch.as_tensor(d.test.labels))
        val_acc = probe.accuracy(torch.from_numpy(pool_f.get(val.ids)), torch.as_tensor(val.labels))
        cost = [self._teacher_cost.get(t, {}) for t in job.teachers]
        extra = {
            "teacher_params": int(sum(c.get("params", 0) for c in cost)),
            "latency_ms": float(sum(c.get("latency_ms", 0.0) for c in cost)),
            "probe_C": float(getattr(probe, "C", getattr(probe, "c", float("nan")))),
        }
        return RunRecord(
            suite=job.suite,
            dataset=job.dataset,
            student=PROBE,
            teachers=list(job.teachers),
            method=PROBE,
            beta=0.0,
            train_size=job.train_size,
            seed=job.seed,
            phase=job.phase,
            val_acc=float(val_acc),
            test_acc=None if test_acc is None else float(test_acc),
            wall_s=time.perf_counter() - t0,
            student_params=int(pool_f.dim * tr.num_classes + tr.num_classes),
            views=job.views,
            config=job.config,
            extra=extra,
        )


@dataclass
class ExecutorSpec:
    """What a worker process needs to rebuild a `TrainingExecutor` (no cached data or open stores)."""

    suite: SuiteConfig
    store_root: Path
    device: str
    cache_dir: str | None
    teacher_cost: dict[str, dict[str, float]]
    keep: str | None = None
    keep_root: Path | None = None

    def build(self, worker_index: int) -> TrainingExecutor:
        """The executor of worker `worker_index` (on CUDA: device ``index mod device_count``)."""
        device = self.device
        if device.startswith("cuda") and ":" not in device and torch.cuda.device_count() > 1:
            device = f"cuda:{worker_index % torch.cuda.device_count()}"
        ex = TrainingExecutor(self.suite, self.store_root, device=device, cache_dir=self.cache_dir, progress=False,
                              keep=self.keep, keep_root=self.keep_root)
        ex._teacher_cost.update(self.teacher_cost)
        return ex


#: what `aft compare --keep` accepts
KEEP_MODES = ("best", "all")


def kept_name(job: RunJob) -> str:
    """Folder name of a kept student: readable run fields plus a short hash of the run key (unique)."""
    import hashlib
    import re

    teachers = "+".join(job.teachers) or "stl"
    fold = f"-fold{job.fold}" if job.fold is not None else ""
    text = f"{job.method}-{job.student}-{teachers}-n{job.train_size}-v{job.views}-b{job.beta:g}-s{job.seed}-{job.phase}{fold}"
    slug = re.sub(r"[^A-Za-z0-9._+-]+", "_", text).strip("._")[:120]
    return f"{slug}-{hashlib.sha256(job.key().encode()).hexdigest()[:8]}"


def ids_digest(ids: Any) -> str:
    """sha256 of the sorted sample ids (identifies a fold's held-out samples)."""
    import hashlib

    return hashlib.sha256("\n".join(sorted(str(i) for i in ids)).encode()).hexdigest()


def _student_latency_ms(student: torch.nn.Module, split: DatasetSplit, batch: int = 32, repeats: int = 5) -> float:
    """Median milliseconds per sample of the student's forward pass (CPU, batch of 32)."""
    x = student.preprocess(split.inputs[:batch])  # type: ignore[attr-defined]
    device = next(student.parameters()).device
    x = x.to(device)
    times = []
    with torch.inference_mode():
        student(x)
        for _ in range(repeats):
            t0 = time.perf_counter()
            student(x)
            times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0 / len(x))


def _teacher_cost(teacher: Any, split: DatasetSplit, batch: int = 16) -> dict[str, float]:
    """Parameter count (when the teacher exposes its module) and median ms per sample of `encode`."""
    params = 0
    module = getattr(teacher, "module", None) or getattr(teacher, "model", None)
    if isinstance(module, torch.nn.Module):
        params = sum(p.numel() for p in module.parameters())
    inputs = split.inputs[:batch]
    times = []
    with torch.inference_mode():
        teacher.encode(inputs)
        for _ in range(3):
            t0 = time.perf_counter()
            teacher.encode(inputs)
            times.append(time.perf_counter() - t0)
    return {"params": float(params), "latency_ms": float(np.median(times) * 1000.0 / len(inputs))}
