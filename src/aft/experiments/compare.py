"""`compare`: run a suite end to end (features once, the grid, the report) from Python or the CLI."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from aft.errors import ConfigError
from aft.experiments.executor import KEEP_MODES, TrainingExecutor
from aft.experiments.grid import GridProgress, run_grid
from aft.experiments.records import RunRecord, read_records, records_lock
from aft.experiments.suite import SuiteConfig

log = logging.getLogger(__name__)


def builtin_suites() -> list[str]:
    """Names of the suites shipped with aft."""
    folder = resources.files("aft.experiments") / "suites"
    return sorted(p.name[: -len(".yaml")] for p in folder.iterdir() if p.name.endswith(".yaml"))


def load_suite(name_or_path: str | Path) -> SuiteConfig:
    """A built-in suite by name (e.g. ``"fashion-mnist"``) or a YAML file."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return SuiteConfig.from_yaml(p)
    name = str(name_or_path)
    if name not in builtin_suites():
        raise ConfigError(f"unknown suite {name!r}; built-in suites: {', '.join(builtin_suites())}, or pass a YAML file")
    with resources.as_file(resources.files("aft.experiments") / "suites" / f"{name}.yaml") as path:
        return SuiteConfig.from_yaml(path)


@dataclass
class CompareResult:
    """What `compare` did and where its outputs are."""

    suite: SuiteConfig
    records_path: Path
    progress: GridProgress
    records: list[RunRecord]


def compare(
    suite: SuiteConfig,
    records_path: str | Path,
    store_root: str | Path,
    *,
    device: str = "cpu",
    cache_dir: str | None = None,
    progress: bool = True,
    jobs: int = 1,
    keep: str | None = None,
) -> CompareResult:
    """Extract the suite's teacher features (once), run its grid, and return all its records.

    Args:
        suite: the grid to run (`load_suite`, optionally `.quick()`).
        records_path: JSON-lines file; finished runs found there are skipped.
        store_root: feature-store root, shared between suites and reruns.
        device: torch device for teachers and students.
        cache_dir: asset cache override.
        progress: show progress bars.
        jobs: worker processes for the grid's runs (`aft.experiments.parallel`); the features are
            extracted here first, once.
        keep: ``"best"``: keep the trained students of the final runs (the selected configurations),
            ``"all"``: of every trained run, in ``<records folder>/students/<run>/`` (student.safetensors +
            student.json, loadable by `aft predict`/`aft export`); their records name the folder in
            ``extra["student_dir"]``. Runs already recorded are not retrained (so keep nothing).
    """
    if keep is not None and keep not in KEEP_MODES:
        raise ConfigError(f"keep must be one of {', '.join(KEEP_MODES)}, got {keep!r}")
    keep_root = Path(records_path).parent / "students" if keep else None
    with records_lock(records_path):  # before extraction: a second compare on this file stops at once
        executor = TrainingExecutor(suite, Path(store_root), device=device, cache_dir=cache_dir, progress=progress,
                                    keep=keep, keep_root=keep_root)
        executor.prepare_features()
        grid = run_grid(suite, records_path, executor, progress=progress, jobs=jobs)
    records = [r for r in read_records(records_path) if r.suite == suite.name]
    return CompareResult(suite=suite, records_path=Path(records_path), progress=grid, records=records)
