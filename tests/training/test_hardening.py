"""Issue 14 (items 3, 4, 6): no data lost by --overwrite, one `aft train` per run folder, a full disk
inside torch.save, numbers validated before anything is written, resume independent of path spelling."""

from __future__ import annotations

import errno
import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _training_helpers import TinyNet

import aft
from aft.errors import CheckpointError, ConfigError, DiskFullError, OutputExistsError, UnsafePathError
from aft.training import TrainConfig, load_config, train
from aft.training.checkpoint import load_checkpoint, save_checkpoint
from aft.training.runlock import LOCK_NAME, RunLockedError, run_lock

SRC = Path(aft.__file__).resolve().parents[1]  # the aft these tests import (subprocesses use the same)


def cfg(out: Path | None, **kw) -> TrainConfig:
    base = dict(method="none", batch_size=16, steps=3, progress=False, tensorboard=False, device="cpu",
                output=str(out) if out is not None else None, test_split=None)
    base.update(kw)
    return TrainConfig(**base)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------ item 6: numbers
@pytest.mark.parametrize("key,value,match", [
    ("beta", float("nan"), "beta must be a finite number, got nan"),
    ("beta", float("inf"), "beta must be a finite number, got inf"),
    ("lr", float("nan"), "lr must be a finite number"),
    ("lr", float("inf"), "lr must be a finite number"),
    ("weight_decay", float("nan"), "weight_decay must be a finite number"),
    ("prior_lr", float("-inf"), "prior_lr must be a finite number"),
    ("epochs", float("inf"), "epochs must be a finite number"),
    ("grad_clip", float("nan"), "grad_clip must be a finite number"),
    ("grad_clip", -1.0, r"grad_clip must be > 0 \(or null"),
    ("grad_clip", 0.0, r"grad_clip must be > 0"),
    ("val_fraction", float("nan"), "val_fraction must be a finite number"),
])
def test_non_finite_and_out_of_range_numbers_are_refused(key, value, match):
    with pytest.raises(ConfigError, match=match) as info:
        TrainConfig(**{key: value}).validate()
    assert "\n" not in str(info.value)


def test_yaml_nan_is_refused_before_config_yaml_is_written(tmp_path, splits):
    out = tmp_path / "run"
    with pytest.raises(ConfigError, match="beta must be a finite number"):
        train(load_config(None, {"beta": float("nan"), "method": "none", "output": str(out), "steps": 2,
                                 "progress": False}), train_split=splits[0])
    with pytest.raises(ConfigError, match="grad_clip must be > 0"):
        load_config(None, ["grad_clip=-1"])
    assert not out.exists()


def test_grad_clip_none_and_positive_are_accepted():
    assert TrainConfig(grad_clip=None).validate().grad_clip is None
    assert TrainConfig(grad_clip=1.5).validate().grad_clip == 1.5


# ------------------------------------------------------------------ item 3: --overwrite loses nothing
def test_overwrite_with_a_bad_student_option_keeps_the_previous_run(tmp_path, splits):
    out = tmp_path / "run"
    train(cfg(out, student="cnn-small"), train_split=splits[0])
    before = snapshot(out)
    with pytest.raises(ConfigError, match=r"student 'cnn-small': bad options \['widht'\]"):
        train(cfg(out, student="cnn-small", overwrite=True, student_options={"widht": 3}), train_split=splits[0])
    assert snapshot(out) == before


@pytest.mark.parametrize("method,options,match", [
    ("aft", {"rnk": 3}, r"method 'aft' has no option 'rnk'; valid method_options: .*kernel_form"),
    ("aft", {"kernel_form": "banana"}, r"kernel_form|banana"),
])
def test_overwrite_with_a_bad_method_option_keeps_the_previous_run(tmp_path, splits, features, method, options, match):
    out = tmp_path / "run"
    train(cfg(out, method=method), features=features, train_split=splits[0], student_module=TinyNet())
    before = snapshot(out)
    with pytest.raises(ConfigError, match=match) as info:
        train(cfg(out, method=method, overwrite=True, method_options=options), features=features,
              train_split=splits[0], student_module=TinyNet())
    assert "\n" not in str(info.value)
    assert snapshot(out) == before


def test_overwrite_refuses_a_checkpoints_symlink_outside_the_run(tmp_path, splits):
    out, outside = tmp_path / "run", tmp_path / "elsewhere"
    train(cfg(out), train_split=splits[0])
    (outside / "precious").mkdir(parents=True)
    (outside / "precious" / "data.txt").write_text("keep me")
    link = out / "checkpoints"
    if link.exists():
        import shutil

        shutil.rmtree(link)
    link.symlink_to(outside, target_is_directory=True)
    before = snapshot(out)
    with pytest.raises(UnsafePathError, match="--overwrite refuses to clear .*checkpoints.*symlink"):
        train(cfg(out, overwrite=True), train_split=splits[0])
    assert (outside / "precious" / "data.txt").read_text() == "keep me"
    assert snapshot(out) == before and link.is_symlink()


def test_overwrite_removes_a_symlink_inside_the_run_not_its_target(tmp_path, splits):
    out = tmp_path / "run"
    train(cfg(out), train_split=splits[0])
    (out / "mine").mkdir()
    (out / "mine" / "notes.txt").write_text("mine")
    (out / "tensorboard").symlink_to(out / "mine", target_is_directory=True)
    train(cfg(out, overwrite=True), train_split=splits[0])
    assert (out / "mine" / "notes.txt").read_text() == "mine" and not (out / "tensorboard").is_symlink()


# ------------------------------------------------------------------ item 3: disk full in torch.save
def _state() -> dict:
    return {"step": 1, "w": torch.arange(4096, dtype=torch.float32)}


@pytest.mark.parametrize("how", ["dev-full", "enospc", "runtime-message"])
def test_disk_full_inside_torch_save_is_one_line_and_leaves_no_partial_checkpoint(tmp_path, monkeypatch, how):
    d = tmp_path / "checkpoints"
    save_checkpoint(d, {"step": 0, "w": torch.zeros(3)})
    before = snapshot(d)
    real_save = torch.save

    def full_disk(obj, f, *a, **kw):
        if how == "dev-full":  # torch's real error on a full device (RuntimeError "unexpected pos ...")
            Path(f).write_bytes(b"PK\x03\x04partial")
            real_save(obj, "/dev/full")
        elif how == "enospc":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        raise RuntimeError("[enforce fail at inline_container.cc:595] . PytorchStreamWriter failed writing file "
                           "data/0: file write failed")

    if how == "dev-full" and not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full")
    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(DiskFullError, match="no space left on device while writing .*checkpoint") as info:
        save_checkpoint(d, _state())
    assert "\n" not in str(info.value)
    assert snapshot(d) == before  # no temp file, no .checkpoint.new.pt; the old checkpoint intact
    monkeypatch.setattr(torch, "save", real_save)
    assert load_checkpoint(d)["step"] == 0


def test_other_torch_save_errors_are_not_called_disk_full(tmp_path, monkeypatch):
    def broken(*_a, **_kw):
        raise RuntimeError("some other failure")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="some other failure"):
        save_checkpoint(tmp_path / "c", _state())


# ------------------------------------------------------------------ item 4: one `aft train` per run folder
def test_a_held_run_lock_refuses_a_second_train(tmp_path, splits):
    out = tmp_path / "run"
    out.mkdir()
    fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what a running `aft train` holds
    try:
        with pytest.raises(RunLockedError, match=r"another `aft train` is writing to .*run.*choose another --output"):
            train(cfg(out), train_split=splits[0])
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]  # nothing written
    finally:
        os.close(fd)
    res = train(cfg(out), train_split=splits[0])  # released (like a killed holder): the run goes ahead
    assert (res.run_dir / "result.json").exists() and not (out / LOCK_NAME).exists()


def test_lock_is_held_during_the_run_and_released_after(tmp_path, splits):
    out, seen = tmp_path / "run", []

    def probe(step, _):
        with pytest.raises(RunLockedError), run_lock(out):
            pass
        seen.append(step)

    train(cfg(out), train_split=splits[0], on_step=probe)
    assert seen == [1, 2, 3]
    with run_lock(out):  # free again
        pass


def test_stale_lock_file_from_a_killed_run_does_not_block_resume(tmp_path, splits):
    out = tmp_path / "run"
    train(cfg(out, steps=4, checkpoint_every=2), train_split=splits[0])
    (out / LOCK_NAME).write_text("")  # left by a process killed with SIGKILL
    res = train(cfg(out, steps=4, checkpoint_every=2, resume=True), train_split=splits[0])
    assert res.steps == 4
    with pytest.raises(OutputExistsError, match="exists; pass --overwrite"):
        train(cfg(out), train_split=splits[0])
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / LOCK_NAME).write_text("")  # a folder holding only a stale lock counts as empty
    assert train(cfg(fresh), train_split=splits[0]).steps == 3


HOLDER = """
import sys
from aft.training.runlock import run_lock
with run_lock(sys.argv[1]):
    print("locked", flush=True)
    sys.stdin.readline()
"""


def test_a_second_process_refuses_and_a_killed_holder_frees_the_folder(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "aft", "train", "--dataset", "digits", "--method", "none", "--steps", "2",
            "--batch-size", "16", "--train-limit", "40", "--set", "tensorboard=false", "--set", "test_split=null",
            "--device", "cpu", "--no-progress", "--output", str(out)]
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        second = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        assert second.stderr.count("\n") == 1 and "another `aft train` is writing to" in second.stderr, second.stderr
        assert sorted(p.name for p in out.iterdir()) == [LOCK_NAME]
    finally:
        holder.kill()  # SIGKILL: no cleanup runs, the lock file stays behind
        holder.wait()
    assert (out / LOCK_NAME).exists()
    third = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert third.returncode == 0, third.stderr
    assert (out / "result.json").exists() and not (out / LOCK_NAME).exists()


# ------------------------------------------------------------------ item 7: resume and path spelling
def test_resume_does_not_depend_on_how_the_output_is_spelled(tmp_path, splits, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def stop(step, _):
        if step == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(cfg(Path("./out/run"), steps=4, checkpoint_every=2, feature_store=None), train_split=splits[0],
              on_step=stop)
    res = train(TrainConfig(**{**cfg(None, steps=4, checkpoint_every=2).to_dict(), "output": "out//run/",
                               "resume": True}), train_split=splits[0])
    assert res.steps == 4
    with pytest.raises(CheckpointError, match="different config"):  # a real difference is still refused
        train(TrainConfig(**{**cfg(None, steps=4, checkpoint_every=2, lr=0.5).to_dict(), "output": "out/run",
                             "resume": True}), train_split=splits[0])
