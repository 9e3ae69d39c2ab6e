"""The one training loop every transfer method uses: ``loss = CE + beta * regularizer(phi, psi)``.

The method is data (a registry name + options), never control flow. The loop owns batching
(reshuffled every epoch from ``(seed, epoch)``), the per-step schedule, the global-batch gather
under data parallelism, validation-based selection, checkpoints, and the run folder outputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from aft.augment.views import draw_views, resolve_policy
from aft.data.split import DatasetSplit
from aft.errors import CheckpointError, ConfigError, DataError
from aft.regularizers.base import REGULARIZERS, PrepareContext, Regularizer
from aft.students.base import Student, build_student
from aft.students.io import safetensors_bytes, save_student, state_for_safetensors
from aft.students.module import ModuleStudent
from aft.training import distributed as D
from aft.training.atomic import atomic_write_bytes, atomic_write_json
from aft.training.beta_schedule import BetaSchedule, label_entropy
from aft.training.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from aft.training.collapse import CollapseReport, check_collapse, feature_spread
from aft.training.config import TrainConfig
from aft.training.data import (
    TrainBatches,
    carve_validation,
    check_features_cover,
    load_named_split,
    read_train_batch,
    subsample,
)
from aft.training.determinism import deterministic_algorithms
from aft.training.runlock import run_lock
from aft.training.schedule import lr_factor
from aft.training.tracking import check_trackers, close_all, log_all, open_trackers

logger = logging.getLogger(__name__)

from aft.training.components import (  # noqa: E402  (re-exported: aft.training and the CLI import them from here)
    _augmented_inputs,
    _build_regularizer,
    _check_feature_views,
    _check_method_options,
    _cpu_state,
    _Evaluator,
    _grad_norm,
    _preprocess,
    epoch_permutation,
    resolve_device,
    rho_summary,
)
from aft.training.run_folder import (  # noqa: E402
    _check_output,
    _config_hash,
    _log_jsonl,
    _prepare_output,
    _truncate_metrics,
)

StepHook = Callable[[int, dict[str, float]], None]


@dataclass
class TrainResult:
    """What a run produced.

    Attributes:
        run_dir: output folder (None when ``config.output`` is None).
        val_accuracy: validation accuracy of the selected weights (None without a validation split).
        test_accuracy: test accuracy, evaluated once at the end (None without a test split).
        steps: optimizer steps taken in total.
        selected_step: the step whose weights were kept (``select: best``) or the last step.
        wall_time_s: seconds spent in this call.
        student_params: number of student parameters.
        rho_summary: per teacher, statistics of the learned importance weights (AFT's rho).
        student: the trained student (selected weights, eval mode).
        regularizer: the trained regularizer.
    """

    run_dir: Path | None
    val_accuracy: float | None
    test_accuracy: float | None
    steps: int
    selected_step: int
    wall_time_s: float
    student_params: int
    rho_summary: dict[str, dict[str, float]] | None
    student: Student
    regularizer: Regularizer
    history: list[dict[str, Any]] = field(default_factory=list)
    collapse: CollapseReport | None = None
    beta_auto: float | None = None  # the measured beta of a ``beta_rule: auto`` run

    def to_json(self) -> dict[str, Any]:
        return {
            "collapsed": None if self.collapse is None else self.collapse.collapsed,
            "collapse": None if self.collapse is None else self.collapse.to_json(),
            "val_accuracy": self.val_accuracy,
            "test_accuracy": self.test_accuracy,
            "steps": self.steps,
            "selected_step": self.selected_step,
            "wall_time_s": self.wall_time_s,
            "student_params": self.student_params,
            "rho_summary": self.rho_summary,
            "beta_auto": self.beta_auto,
        }


# ---------------------------------------------------------------------------------------------
def preflight(config: TrainConfig) -> None:
    """Cheap checks of a config that will load its data and features by name (used before
    launching data-parallel processes): method/student names, features configured, output folder."""
    from aft.students.base import STUDENTS, resolve_name

    cfg = dataclasses.replace(config).validate()
    reg_cls = REGULARIZERS.get(cfg.method)
    _check_method_options(reg_cls, cfg)
    STUDENTS.get(resolve_name(cfg.student, {})[0])
    if reg_cls.uses_teacher and (not cfg.feature_store or not cfg.teachers):
        raise ConfigError(f"method {cfg.method!r} needs teacher features: set feature_store and teachers "
                          "(or use method: none)")
    if cfg.select == "best" and cfg.val_fraction <= 0:
        raise ConfigError("select: best needs a validation split; set val_fraction > 0")
    _check_output(cfg)


# ---------------------------------------------------------------------------------------------
def train(
    config: TrainConfig,
    *,
    features: Any = None,
    train_split: DatasetSplit | None = None,
    test_split: DatasetSplit | None = None,
    student_module: nn.Module | None = None,
    on_step: StepHook | None = None,
    val_split: DatasetSplit | None = None,
) -> TrainResult:
    """Train a student with ``CE + beta * method(phi, psi)`` and write the run folder.

    Args:
        config: the run's settings (validated here).
        features: a `TeacherFeatureSource` for the training split; default: opened from
            ``config.feature_store`` / ``config.teachers`` with `aft.features.open_features`.
        train_split: training data (default: ``aft.data.load_split(config.dataset, config.train_split)``).
            A validation split of ``config.val_fraction`` is carved from it (seeded).
        test_split: evaluated once at the end (default: loaded from ``config.test_split``).
        val_split: an explicit validation split (e.g. a cross-validation fold); when given, nothing
            is carved from the training split and ``config.val_fraction`` is ignored.
        student_module: a user ``nn.Module`` returning ``(logits, features)`` (student ``module``).
        on_step: ``hook(step, metrics)`` called after every optimizer step (after checkpointing).

    Returns:
        a `TrainResult`; the run folder holds student.safetensors + student.json,
        regularizer.safetensors, config.yaml, metrics.jsonl and result.json.

    Example:
        >>> from aft.training import TrainConfig, train
        >>> result = train(TrainConfig(dataset="digits", student="cnn-small", method="aft",
        ...                            teachers=["efficientnet-lite0"], feature_store="features/",
        ...                            steps=200, output="runs/digits-aft"))  # doctest: +SKIP
    """
    cfg = dataclasses.replace(config).validate()
    from aft.runtime import thread_limit

    with deterministic_algorithms(cfg.deterministic), thread_limit(cfg.threads), contextlib.ExitStack() as stack:
        return _train(cfg, features=features, train_split=train_split, test_split=test_split,
                      student_module=student_module, on_step=on_step, exit_stack=stack, val_split=val_split)


def _train(
    cfg: TrainConfig,
    *,
    features: Any,
    train_split: DatasetSplit | None,
    test_split: DatasetSplit | None,
    student_module: nn.Module | None,
    on_step: StepHook | None,
    exit_stack: contextlib.ExitStack,
    val_split: DatasetSplit | None = None,
) -> TrainResult:
    """`train` after validation, inside the determinism settings (`exit_stack` holds the run lock)."""
    t0 = time.perf_counter()
    reg_cls = REGULARIZERS.get(cfg.method)  # unknown method -> lists valid ones
    _check_method_options(reg_cls, cfg)
    if cfg.select == "best" and cfg.val_fraction <= 0 and val_split is None:
        raise ConfigError("select: best needs a validation split; set val_fraction > 0")
    check_trackers(cfg.report_to)  # a requested tracker without its package: one line, before any work
    device_name = cfg.device
    if device_name == "auto":
        device_name = resolve_device("auto").type
    info = D.init_from_env(device_name)
    device = resolve_device(device_name, info)
    if device.type == "cuda":
        torch.cuda.set_device(device)

    # --- data (errors before anything is written) -------------------------------------------
    source_split = train_split if train_split is not None else load_named_split(cfg.dataset, cfg.train_split, cfg.dataset_options)
    train_full = subsample(source_split, cfg.train_limit, cfg.seed)
    if len(train_full) == 0:
        raise DataError(f"training split {train_full.dataset}/{train_full.split} is empty; check the dataset")
    if test_split is None and train_split is None and cfg.test_split:
        test_split = load_named_split(cfg.dataset, cfg.test_split, cfg.dataset_options)
    if test_split is not None:
        test_split = subsample(test_split, cfg.test_limit, cfg.seed)
        if test_split.class_names != train_full.class_names:
            raise DataError("test split class names differ from the training split's; use splits of one dataset")
    if val_split is not None:
        tr, val = train_full, val_split
    else:
        tr, val = carve_validation(train_full, cfg.val_fraction, cfg.seed)
    if len(tr) == 0:
        raise DataError("no training samples left after carving the validation split; lower val_fraction")
    num_classes = train_full.num_classes
    labels = torch.as_tensor(np.asarray(tr.labels), dtype=torch.long)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise DataError(f"label {int(labels.max())} outside [0, {num_classes - 1}]; fix the dataset labels")

    # --- augmented views (the same policy for every method, STL included) ---------------------
    policy = None
    if cfg.views > 1:
        policy = resolve_policy(cfg.augmentation, tr.modality)

    # --- teacher features --------------------------------------------------------------------
    if reg_cls.uses_teacher:
        if features is None:
            if not cfg.feature_store or not cfg.teachers:
                raise ConfigError(f"method {cfg.method!r} needs teacher features: set feature_store and teachers "
                                  "(or use method: none)")
            from aft.features import open_features  # type: ignore[attr-defined]
            from aft.features.store import MissingStoreError

            view_kw: dict[str, Any] = {"views": cfg.views if policy is not None else False, "augmentation": policy}
            # a store may describe our subsample (`aft extract --limit N`) or the whole named split
            try:
                features = open_features(cfg.feature_store, cfg.teachers, train_full, **view_kw)
            except MissingStoreError:  # only "no store for the subsample": a corrupt one is reported as is
                if train_full is source_split:
                    raise
                features = open_features(cfg.feature_store, cfg.teachers, source_split, **view_kw)
        elif cfg.teachers:
            have = set(getattr(features, "column_ranges", {})) | set(getattr(features, "sources", {}))
            missing = [t for t in cfg.teachers if t not in have]
            if missing:
                raise ConfigError(f"teacher {missing[0]!r} not in the given features; available: {', '.join(sorted(have))}")
        check_features_cover(features, tr.ids)
        if policy is not None:
            _check_feature_views(features, cfg.views, policy.config())
        teacher_dim = int(features.dim)
        column_ranges = dict(getattr(features, "column_ranges", {}) or {})
    else:
        teacher_dim, column_ranges = 0, {}

    if info.enabled:  # ranks read the global batch by id; only rank 0 writes the run folder (multi-node too)
        D.check_same(D.ids_digest(tr.ids, tr.labels), info, "training split",
                     "every node must load the same dataset files and settings (see docs/data-at-scale.md)")
        if cfg.output is not None:
            D.check_shared_folder(cfg.output, info, "run folder")

    # --- output folder (names are checked first: --overwrite must not clear a run for a typo) ----
    if student_module is None and cfg.student != "module":
        from aft.students.base import STUDENTS, resolve_name

        STUDENTS.get(resolve_name(cfg.student, {})[0])
    run_dir, resuming = _check_output(cfg)  # nothing is deleted before the student and method are built

    # --- student + regularizer (seeded) -------------------------------------------------------
    torch.manual_seed(cfg.seed)
    if student_module is not None:
        student: Student = ModuleStudent(num_classes, student_module)
    elif cfg.student == "module":
        raise ConfigError("student 'module' is only available from Python: train(config, student_module=net)")
    else:
        student = build_student(cfg.student, num_classes, **cfg.student_options)
    if student.modality not in ("any", tr.modality):
        raise ConfigError(f"student {cfg.student!r} takes {student.modality} inputs but {tr.dataset} is {tr.modality}")
    student.class_names = list(train_full.class_names)
    x_tr = _preprocess(student, tr)
    x_val = _preprocess(student, val) if val is not None else None
    x_te = _preprocess(student, test_split) if test_split is not None else None
    student.discover_feature_dim(x_tr[:2])
    reg = _build_regularizer(reg_cls, student.feature_dim, teacher_dim, cfg, column_ranges)
    if reg_cls.needs_prepare:
        psi_all = torch.from_numpy(np.asarray(features.get(tr.ids), dtype=np.float32))
        reg.prepare(PrepareContext(psi_all, labels, num_classes, column_ranges))
        del psi_all
    if run_dir is not None and info.is_main:  # held until train() returns; a second `aft train` here refuses
        exit_stack.enter_context(run_lock(run_dir))
    run_dir, resuming = _prepare_output(cfg, info)  # re-checked under the lock, then cleared (--overwrite)
    student.to(device)
    reg.to(device)

    model: nn.Module = student
    if info.enabled:
        model = nn.parallel.DistributedDataParallel(
            student, device_ids=[device.index] if device.type == "cuda" else None)

    reg_params = [p for p in reg.parameters() if p.requires_grad]
    # data parallel, methods with `partial_sum` (the kernel methods): each rank computes its own
    # rows of the global-batch kernel; others (rkd, kd, ...) compute the whole global-batch value
    partial_sum = getattr(reg, "partial_sum", None)
    local_rows = info.enabled and cfg.ddp_kernel == "local" and callable(partial_sum)
    if info.enabled and info.is_main:
        logger.info("data parallel regularizer: %s", "local rows x global columns" if local_rows
                    else "full global batch on every rank")
    groups = [{"params": [p for p in student.parameters() if p.requires_grad], "lr": cfg.lr,
               "weight_decay": cfg.weight_decay, "name": "student"}]
    groups += reg.param_groups(cfg.lr, cfg.weight_decay)
    opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    optimizer = opt_cls(groups, lr=cfg.lr)
    for g in optimizer.param_groups:
        g["base_lr"] = g["lr"]

    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(cfg.precision)
    use_amp = amp_dtype is not None and device.type in ("cuda", "mps")
    if amp_dtype is not None and not use_amp:
        logger.warning("precision %s ignored on %s; training in fp32", cfg.precision, device.type)

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=amp_dtype) if use_amp else nullcontext()

    scaler = torch.amp.GradScaler(device.type, enabled=use_amp and amp_dtype == torch.float16)

    # --- batching ----------------------------------------------------------------------------
    n = len(tr)
    accum = cfg.grad_accum_steps  # micro-batches per optimizer step (each a global micro-batch over ranks)
    global_bs = min(cfg.batch_size, n)
    global_bs -= global_bs % (info.world_size * accum)
    if global_bs < 1:
        raise DataError(f"{n} training samples cannot be split over {info.world_size} processes x {accum} "
                        "micro-batches")
    if cfg.batch_size % (info.world_size * accum):
        raise ConfigError(f"batch_size {cfg.batch_size} must be divisible by the {info.world_size} processes "
                          f"x grad_accum_steps {accum}")
    micro_bs = global_bs // accum
    local_bs = micro_bs // info.world_size
    if info.enabled and info.is_main and global_bs < min(cfg.batch_size, n):
        logger.warning("global batch %d (all %d training samples) rounded down to %d to split over %d processes: "
                       "a run with another process count trains on other batches; use a batch_size <= %d",
                       min(cfg.batch_size, n), n, global_bs, info.world_size, global_bs)
    steps_per_epoch = n // global_bs  # the incomplete last batch is dropped: equal shards, full kernels
    if cfg.steps is not None:
        total_steps = cfg.steps
    elif cfg.epochs is not None:
        total_steps = max(1, math.ceil(cfg.epochs * steps_per_epoch))
    else:
        total_steps = 5000

    chance_loss = label_entropy(labels.numpy(), num_classes)
    auto = cfg.beta_rule == "auto"  # under auto the schedule's beta is the scale of the measured ratio
    beta_schedule = BetaSchedule(cfg.beta_auto_scale if auto else cfg.beta, cfg.beta_warmup, total_steps,
                                 chance_loss=chance_loss, rule=cfg.beta_rule)
    if cfg.beta_rule == "auto" and info.enabled:
        raise ConfigError("beta_rule auto (--beta auto) runs in one process for now; pass a number as --beta "
                          "with --nproc, or measure it with one process first (result.json names it)")
    student_params = [p for p in student.parameters() if p.requires_grad]
    # stop_step: the schedules span total_steps, the run ends earlier (a chosen stopping step)
    run_steps = min(total_steps, cfg.stop_step) if cfg.stop_step else total_steps
    ids_tr = tr.ids
    evaluator_val = _Evaluator(x_val, torch.as_tensor(val.labels, dtype=torch.long), cfg.eval_batch_size, device,
                               autocast, info) if val is not None and x_val is not None else None

    # --- state / resume ----------------------------------------------------------------------
    start_step, resumed_evals_since_best = 0, 0
    best_acc, best_step = -1.0, -1
    best_state: dict[str, Any] | None = None
    ckpt_dir = run_dir / "checkpoints" if run_dir is not None else None
    if resuming and ckpt_dir is not None:
        state = load_checkpoint(ckpt_dir)
        if state.get("config_hash") not in (_config_hash(cfg), _config_hash(cfg, legacy=True)):
            raise CheckpointError("the checkpoint was written with a different config; resume with the same settings")
        student.load_state_dict(state["student"])
        reg.load_state_dict(state["regularizer"])
        optimizer.load_state_dict(state["optimizer"])
        scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        start_step = int(state["step"])
        best_acc, best_step = float(state["best_acc"]), int(state["best_step"])
        best_state = state.get("best")
        beta_schedule.load_state_dict(state.get("beta_schedule"))
        resumed_evals_since_best = int(state.get("evals_since_best", 0))
        logger.info("resumed from step %d", start_step)
    metrics_path = run_dir / "metrics.jsonl" if (run_dir is not None and info.is_main) else None
    if run_dir is not None and info.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        cfg.save(run_dir / "config.yaml")
        if metrics_path is not None and metrics_path.exists():
            _truncate_metrics(metrics_path, start_step if resuming else 0)
    trackers = open_trackers(run_dir, cfg.to_dict(), cfg.report_to, cfg.tensorboard) if info.is_main else []
    # early stopping: evaluations without a better validation accuracy (kept in checkpoints)
    evals_since_best = resumed_evals_since_best if resuming and ckpt_dir is not None else 0

    # --- loop --------------------------------------------------------------------------------
    from tqdm.auto import tqdm

    bar = tqdm(total=run_steps, initial=start_step, disable=not (cfg.progress and info.is_main),
               desc=f"{cfg.method}", dynamic_ncols=True)
    history: list[dict[str, Any]] = []
    model.train()
    perm_epoch, perm = -1, torch.empty(0, dtype=torch.long)
    val_acc: float | None = None
    # the last logged record survives a resume (a run killed after its final checkpoint trains no step)
    last: dict[str, float] = dict(state.get("last") or {}) if resuming and ckpt_dir is not None else {}
    # lazy inputs (or augmentation) with workers: DataLoader processes read, augment and preprocess
    # the local micro-batches ahead, in the loop's own order (aft.training.data.TrainBatches)
    from aft.data.loader import iter_batches, resolve_workers

    n_workers = resolve_workers(cfg.workers, tr)
    batch_stream = None
    if n_workers > 0 and (tr.is_lazy or policy is not None):
        keys = TrainBatches(n=n, seed=cfg.seed, start=start_step, stop=run_steps, steps_per_epoch=steps_per_epoch,
                            global_bs=global_bs, micro_bs=micro_bs, local_bs=local_bs, rank=info.rank, accum=accum,
                            views=cfg.views if policy is not None else None)
        batch_stream = iter_batches(keys, functools.partial(read_train_batch, tr, student, policy), n_workers,
                                    pin_memory=device.type == "cuda")

    def micro_step(gidx: torch.Tensor, lidx: torch.Tensor, views_g: np.ndarray | None, log_now: bool,
                   beta_t: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, float]]:
        """Forward and backward of one (global) micro-batch; returns detached (task, R, loss, metrics)."""
        if batch_stream is not None:
            read_idx, xb = next(batch_stream)
            if not np.array_equal(read_idx, lidx.numpy()):  # pragma: no cover - a bug, never user input
                raise RuntimeError("the DataLoader read other samples than the training step uses")
            xb = xb.to(device, non_blocking=True)
        elif policy is not None:
            views_l = views_g[info.rank * local_bs : (info.rank + 1) * local_bs]  # type: ignore[index]
            xb = _augmented_inputs(student, tr, policy, lidx.numpy(), views_l).to(device, non_blocking=True)
        else:
            xb = x_tr[lidx].to(device, non_blocking=True)
        yb = labels[lidx].to(device)
        with autocast():
            logits, phi = model(xb)
        task = F.cross_entropy(logits.float(), yb)
        # the regularizer sees the GLOBAL (micro-)batch in float32: phi gathered with gradient; psi and
        # labels of the global batch are read locally (no communication)
        phi_g = D.gather_with_grad(phi.float(), info)
        psi_g = (torch.from_numpy(np.asarray(features.get([ids_tr[i] for i in gidx.tolist()], views_g),
                                             dtype=np.float32))
                 .to(device) if reg_cls.uses_teacher else None)
        y_g = labels[gidx].to(device) if info.enabled else yb
        with torch.autocast(device.type, enabled=False) if use_amp else nullcontext():
            if local_rows:
                # reg_term: this rank's surrogate (gradient only); reg_loss: the global R (logged)
                reg_term, reg_loss = D.local_rows_term(partial_sum, phi_g, psi_g, info)  # type: ignore[arg-type]
                reg_metrics = reg.metrics(reg_loss) if log_now else {}
            elif log_now:
                out = reg.compute(phi_g, psi_g, y_g)
                reg_loss, reg_metrics = out.loss, out.metrics
                reg_term = reg_loss
            else:
                reg_loss, reg_metrics = reg.loss_term(phi_g, psi_g, y_g), {}
                reg_term = reg_loss
        if beta_schedule.wants_spread:
            spreads.append(feature_spread(phi_g))  # phi_g is the global batch: the same on every rank
        if beta_schedule.measuring and not ratios:  # --beta auto: the first micro-batch's gradient norms
            ratios.append(_grad_norm(task, student_params) / max(_grad_norm(reg_term, student_params), 1e-12))
        objective = task + beta_t * reg_term
        loss = objective if reg_term is reg_loss else task.detach() + beta_t * reg_loss.detach()
        scaler.scale(objective / accum if accum > 1 else objective).backward()
        return task.detach(), reg_loss.detach(), loss.detach(), {k: float(v) for k, v in reg_metrics.items()}

    for step in range(start_step, run_steps):
        epoch, pos = divmod(step, steps_per_epoch)
        if epoch != perm_epoch:
            perm, perm_epoch = epoch_permutation(n, cfg.seed, epoch), epoch
        gidx_step = perm[pos * global_bs : (pos + 1) * global_bs]
        # views: a pure function of (seed, step, position in the global batch) -> resume-safe
        views_step = draw_views(cfg.seed, step, len(gidx_step), cfg.views) if policy is not None else None
        log_now = (step + 1) % cfg.log_every == 0 or step + 1 == run_steps
        beta_t = beta_schedule.value(step)
        factor = lr_factor(step, total_steps, cfg.warmup_steps, cfg.schedule)
        for g in optimizer.param_groups:
            g["lr"] = g["base_lr"] * factor
        optimizer.zero_grad(set_to_none=True)
        # gradient accumulation: the step's gradient is the mean of the micro-batches' gradients, and
        # the regularizer (its kernel) is computed per micro-batch (docs/training.md)
        micro_out: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, float]]] = []
        spreads: list[float] = []
        ratios: list[float] = []
        for micro in range(accum):
            gidx = gidx_step[micro * micro_bs : (micro + 1) * micro_bs]
            views_g = views_step[micro * micro_bs : (micro + 1) * micro_bs] if views_step is not None else None
            lidx = gidx[info.rank * local_bs : (info.rank + 1) * local_bs]
            last_micro = micro == accum - 1
            sync = model.no_sync() if info.enabled and not last_micro else nullcontext()  # type: ignore[operator]
            with sync:
                micro_out.append(micro_step(gidx, lidx, views_g, log_now, beta_t))
        task, reg_loss, loss = (torch.stack([m[k] for m in micro_out]).mean() for k in range(3))
        reg_metrics = {k: sum(m[3][k] for m in micro_out) / accum for k in micro_out[0][3]} if log_now else {}
        D.average_gradients(reg_params, info)
        if cfg.grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], cfg.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        if beta_schedule.gated:
            # the gate must open at the same step on every rank: decide on the global-batch task loss
            opened_before = beta_schedule.opened_at
            task_global = D.all_reduce_sum([float(task.detach())], info, device)[0] / info.world_size
            beta_schedule.observe(step, task_global, sum(spreads) / len(spreads) if spreads else None)
            if beta_schedule.opened_at is not None and opened_before is None and info.is_main:
                logger.info("beta warm-up: the student left chance at step %d (task loss %.3f, label entropy "
                            "%.3f); beta ramps to %s", beta_schedule.opened_at, task_global, chance_loss,
                            "the measured value" if cfg.beta_rule == "auto" else f"{cfg.beta:g}")
        if ratios:
            beta_schedule.observe_ratio(step, ratios[0])
            if beta_schedule.resolved is not None and info.is_main:
                logger.info("beta auto: %.4g (scale %g x median |grad CE| / |grad R| over %d steps)",
                            beta_schedule.resolved, cfg.beta_auto_scale, len(beta_schedule.state_dict()["ratios"]))

        done = step + 1
        record: dict[str, Any] = {}
        if log_now:
            # the losses of the GLOBAL batch (the mean over equal rank shards; reg_loss already is global)
            loss_v, task_v = D.all_reduce_sum([float(loss.detach()), float(task.detach())], info, device)
            record = {"step": done, "epoch": epoch, "loss": loss_v / info.world_size,
                      "task_loss": task_v / info.world_size, "reg_loss": float(reg_loss.detach()), "lr": optimizer.param_groups[0]["lr"], "beta": beta_t}
            record.update({f"reg/{k}": v for k, v in reg_metrics.items()})
            if len(optimizer.param_groups) > 1:
                record["lr_reg"] = optimizer.param_groups[1]["lr"]
        stop_early = False
        if evaluator_val is not None and ((cfg.eval_every and done % cfg.eval_every == 0) or done == run_steps):
            val_acc, val_loss = evaluator_val(student)
            record.update({"step": done, "val_accuracy": val_acc, "val_loss": val_loss})
            improved = val_acc > best_acc
            if improved and (cfg.select == "best" or cfg.early_stopping_patience):
                best_acc, best_step = val_acc, done
                if cfg.select == "best":
                    best_state = {"student": _cpu_state(student), "regularizer": _cpu_state(reg)}
            evals_since_best = 0 if improved else evals_since_best + 1
            # early stopping: every rank sees the same all-reduced accuracy, so all stop together
            stop_early = bool(cfg.early_stopping_patience) and evals_since_best >= cfg.early_stopping_patience
            if stop_early:
                record["early_stop"] = True
        if record:
            last = record
            history.append(record)
            _log_jsonl(metrics_path, record)
            log_all(trackers, record, done)
            bar.set_postfix({k: f"{v:.4g}" for k, v in record.items()
                             if k in ("loss", "task_loss", "reg_loss", "val_accuracy")}, refresh=False)
        bar.update(1)
        if ckpt_dir is not None and cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and info.is_main:
            save_checkpoint(ckpt_dir, {
                "step": done, "student": _cpu_state(student), "regularizer": _cpu_state(reg),
                "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict(), "rng": rng_state(),
                "best_acc": best_acc, "best_step": best_step, "best": best_state, "config_hash": _config_hash(cfg),
                "last": last, "beta_schedule": beta_schedule.state_dict(), "evals_since_best": evals_since_best,
            })
        if on_step is not None:
            on_step(done, record)
        if stop_early:
            if info.is_main:
                logger.info("early stopping at step %d: validation accuracy has not improved for %d evaluations "
                            "(best %.4f at step %d)", done, cfg.early_stopping_patience, best_acc, best_step)
            stopped_at = done
            break
    else:
        stopped_at = run_steps
    if batch_stream is not None:
        batch_stream.close()  # stops the workers (early stopping leaves batches unread)
    bar.close()
    close_all(trackers)

    # --- selection, test (once), outputs -----------------------------------------------------
    selected_step = stopped_at
    if cfg.select == "best" and best_state is not None:
        student.load_state_dict(best_state["student"])
        reg.load_state_dict(best_state["regularizer"])
        selected_step, val_acc = best_step, best_acc
    elif evaluator_val is not None and val_acc is None:
        val_acc, _ = evaluator_val(student)
    test_acc = None
    if x_te is not None and test_split is not None:
        ev = _Evaluator(x_te, torch.as_tensor(test_split.labels, dtype=torch.long), cfg.eval_batch_size, device,
                        autocast, info)
        test_acc, _ = ev(student)
    collapse = None
    if x_val is not None and val is not None and len(val) > 0:
        collapse = check_collapse(student, x_val, torch.as_tensor(val.labels, dtype=torch.long), chance_loss,
                                  history, stopped_at, "validation", device, cfg.eval_batch_size)
    else:
        collapse = check_collapse(student, x_tr, labels, chance_loss, history, stopped_at, "training", device,
                                  cfg.eval_batch_size)
    if collapse.collapsed and info.is_main:
        logger.warning("run did not learn: %s", collapse.reason)
    student.eval()
    result = TrainResult(
        run_dir=run_dir, val_accuracy=val_acc, test_accuracy=test_acc, steps=stopped_at,
        selected_step=selected_step, wall_time_s=time.perf_counter() - t0,
        student_params=student.num_parameters(), rho_summary=rho_summary(reg.importance(), column_ranges),
        student=student, regularizer=reg, history=history, collapse=collapse, beta_auto=beta_schedule.resolved,
    )
    if run_dir is not None and info.is_main:
        save_student(student, run_dir, extra={"method": cfg.method, "dataset": tr.dataset})
        reg_state = state_for_safetensors(reg)
        atomic_write_bytes(run_dir / "regularizer.safetensors",  # sorted metadata: same run, same bytes
                           safetensors_bytes(reg_state, {"method": cfg.method, "column_ranges": json.dumps(column_ranges)}))
        summary = result.to_json()
        summary.update({"method": cfg.method, "student": cfg.student, "dataset": tr.dataset, "beta": cfg.beta,
                        "beta_warmup": cfg.beta_warmup, "beta_opened_at": beta_schedule.opened_at,
                        "beta_rule": cfg.beta_rule,
                        "train_size": len(tr), "val_size": len(val) if val is not None else 0,
                        "test_size": len(test_split) if test_split is not None else 0,
                        "world_size": info.world_size, "device": str(device), "last_metrics": last,
                        "views": cfg.views, "augmentation": policy.config() if policy is not None else None})
        atomic_write_json(run_dir / "result.json", summary)
        _log_jsonl(metrics_path, {"step": stopped_at, "final": True, "val_accuracy": val_acc, "test_accuracy": test_acc})
    D.barrier(info)
    return result


__all__ = ["TrainResult", "epoch_permutation", "preflight", "resolve_device", "rho_summary", "train"]
