"""Never execute untrusted data: no pickle loads, weights/stores without pickles, remote code off by
default, and file names from configs/manifests confined to their folder."""

from __future__ import annotations

import ast
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from aft.errors import CheckpointError, UnsafePathError
from aft.features import store_path
from aft.paths import safe_join
from aft.training.checkpoint import load_checkpoint

SRC = Path(__file__).resolve().parents[2] / "src" / "aft"


def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else ""
            yield node, owner, name


def test_no_unsafe_deserialization_in_src():
    """AST scan: no pickle/marshal/dill loads, torch.load only with weights_only=True, yaml only safe_load."""
    bad = []
    for py in sorted(SRC.rglob("*.py")):
        for node, owner, name in _calls(ast.parse(py.read_text(), str(py))):
            where = f"{py.relative_to(SRC.parent)}:{node.lineno}"
            if owner in ("pickle", "cPickle", "dill", "marshal", "cloudpickle", "joblib") and name in ("load", "loads"):
                bad.append(f"{where} {owner}.{name}")
            elif name in ("Unpickler",):
                bad.append(f"{where} Unpickler")
            elif owner == "torch" and name == "load":
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                    bad.append(f"{where} torch.load without weights_only=True")
            elif owner == "yaml" and name in ("load", "unsafe_load", "full_load", "load_all"):
                bad.append(f"{where} yaml.{name} (use yaml.safe_load)")
            elif owner == "np" and name == "load":
                kw = {k.arg: k.value for k in node.keywords}
                if isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is True:
                    bad.append(f"{where} np.load(allow_pickle=True)")
            elif isinstance(node.func, ast.Name) and name in ("eval", "exec"):
                bad.append(f"{where} {name}()")
    assert not bad, "unsafe deserialization:\n" + "\n".join(bad)


def test_scanner_catches_a_bad_call():
    tree = ast.parse("import torch, pickle\ntorch.load('x')\npickle.loads(b'')\ntorch.load('y', weights_only=True)\n")
    found = [(o, n) for _, o, n in _calls(tree)]
    assert ("torch", "load") in found and ("pickle", "loads") in found


def test_run_and_store_hold_no_pickles(tmp_path, digits):
    from aft.cli.main import main

    store = tmp_path / "store"
    assert main(["extract", "--teacher", "rp-image", "--dataset", "digits", "--split", "train", "--store", str(store),
                 "--no-progress"]) == 0
    assert main(["train", "--dataset", "digits", "--method", "aft", "--teacher", "rp-image", "--store", str(store),
                 "--steps", "4", "--set", "checkpoint_every=2", "--batch-size", "32", "--train-limit", "100",
                 "--set", "student_options={image_size: 8, width: 4}", "--set", "tensorboard=false",
                 "--device", "cpu", "--no-progress", "--output", str(tmp_path / "run")]) == 0
    for root in (store, tmp_path / "run"):
        names = [p for p in root.rglob("*") if p.is_file()]
        assert names
        for p in names:
            assert p.suffix not in (".pkl", ".pickle", ".pt", ".pth", ".bin", ".npy") or (
                p.name == "features.bin" or p.parent.name == "checkpoints"), p
    outputs = {p.name for p in (tmp_path / "run").iterdir() if p.is_file()}
    assert {"student.safetensors", "regularizer.safetensors", "student.json", "result.json"} <= outputs
    # checkpoints are torch zip files loaded only with weights_only=True (no arbitrary objects)
    for ck in (tmp_path / "run" / "checkpoints").glob("*.pt"):
        torch.load(ck, weights_only=True)


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_malicious_checkpoint_is_refused_without_running_code(tmp_path):
    marker = tmp_path / "pwned"
    ck = tmp_path / "checkpoints"
    ck.mkdir()
    torch.save({"step": 1, "x": _Evil(marker)}, ck / "checkpoint.pt")
    with pytest.raises(CheckpointError, match="no intact checkpoint"):
        load_checkpoint(ck)
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Evil(marker)))  # sanity: the payload does run when unpickled naively
    assert marker.exists()


class _FakeHF:
    calls: list[dict] = []

    @classmethod
    def from_pretrained(cls, path, **kw):
        cls.calls.append(kw)
        raise OSError("stop here")


def test_trust_remote_code_off_by_default(monkeypatch):
    transformers = pytest.importorskip("transformers")
    from aft.errors import AssetError, ConfigError
    from aft.students.base import build_student
    from aft.teachers import build_teacher

    monkeypatch.setattr(transformers, "AutoModel", _FakeHF)
    monkeypatch.setattr(transformers, "AutoTokenizer", _FakeHF)
    monkeypatch.setattr(transformers, "AutoConfig", _FakeHF)  # hf: reads the config first to pick the adapter
    for flag in (None, True):
        _FakeHF.calls.clear()
        opts = {} if flag is None else {"trust_remote_code": True}
        with pytest.raises((OSError, ConfigError, AssetError)):  # a load failure is a one-line AssetError
            build_teacher("hf:some/model", **opts)
        with pytest.raises((OSError, ConfigError)):
            build_student("hf:some/model", 2, **opts)
        assert _FakeHF.calls and all(c.get("trust_remote_code") is bool(flag) for c in _FakeHF.calls), _FakeHF.calls
    # the CLI offers no way to turn it on for teachers: `aft extract` passes only device/resolution
    src = (SRC / "cli" / "commands" / "extract.py").read_text()
    assert "trust_remote_code" not in src


@pytest.mark.parametrize("name", ["hf:../../x", "../../../etc", "/abs/path", "..", "st:/models/../../y", "a/../../b",
                                  "C:\\windows", "x\x00y"])
def test_store_paths_stay_inside_the_root(tmp_path, name):
    root = tmp_path / "store"
    path = store_path(root, name, name, name, "f" * 64)
    rel = path.relative_to(root)  # raises if outside
    assert len(rel.parts) == 3 and ".." not in rel.parts
    safe_join(root, *rel.parts)


def test_safe_join_refuses_escapes(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    assert safe_join(root, "a", "b.json") == root / "a" / "b.json"
    for parts in (("..", "x"), ("a/../../x",), (str(tmp_path / "abs"),), ("",)):
        with pytest.raises(UnsafePathError):
            safe_join(root, *parts)
    (root / "link").symlink_to(tmp_path)  # a symlink inside the root pointing outside
    with pytest.raises(UnsafePathError, match="escapes"):
        safe_join(root, "link", "x.json")
    linked_root = tmp_path / "alias"
    linked_root.symlink_to(root)  # the root itself may be a symlink
    assert safe_join(linked_root, "a.json") == linked_root / "a.json"


def test_store_writer_refuses_symlinked_array_outside(tmp_path, digits):
    """A manifest whose array file is a symlink to a file outside the store is refused on open."""
    from aft.features import FeatureStore, extract
    from aft.teachers import build_teacher

    split = digits[1].subset(np.arange(20))
    (path,) = extract(build_teacher("rp-image"), split, tmp_path / "store", progress=False)
    outside = tmp_path / "outside.bin"
    outside.write_bytes((path / "features.bin").read_bytes())
    (path / "features.bin").unlink()
    (path / "features.bin").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="escapes"):
        FeatureStore.open(path)


def test_no_pickle_protocol_in_store_pickling(tmp_path, digits):
    """A FeatureStore pickles as its path only (never its content)."""
    from aft.features import FeatureStore, extract
    from aft.teachers import build_teacher

    split = digits[1].subset(np.arange(20))
    (path,) = extract(build_teacher("rp-image"), split, tmp_path / "store", progress=False)
    blob = pickle.dumps(FeatureStore.open(path))
    assert len(blob) < 500 and str(path).encode() in blob
    assert sys.getsizeof(blob) < 1000
