"""The bad-input matrix: one test per row, across the CLI and the Python API.

Every row must give ONE line naming the problem and the fix: exit code 2 and no traceback from
the CLI (``aft: error: ...``), a typed `AftError` subclass from the API; and nothing half written
(no run folder, no complete-looking store, no manifest). `ROWS` also generates the table in
docs/bad-inputs.md (regenerate with ``python tests/reliability/test_bad_inputs.py``).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from aft import errors as E
from aft.cli.main import main

DOC = Path(__file__).resolve().parents[2] / "docs" / "bad-inputs.md"
#: names that make a folder look like a finished store / run: never left behind by a refused input
COMPLETE_MARKS = {"manifest.json", "result.json", "student.safetensors", "student.json", "config.yaml", "ids.json"}


@dataclass(frozen=True)
class Row:
    id: str
    where: str                      # "cli" or "api"
    input: str                      # what is wrong (for the doc table)
    error: type[E.AftError]         # the typed error (API) / the one the CLI reports
    message: str                    # regex the one-line message must match
    run: Callable[[Path], Any]      # cli: tmp -> argv;  api: tmp -> None (raises)
    leaves_incomplete: bool = False  # an interrupted-looking store (progress.json, no manifest) may remain
    patch: Callable[[pytest.MonkeyPatch], None] | None = None  # e.g. simulate a full disk


# ------------------------------------------------------------------------------ builders
def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)
    return path


def extract_csv(content: str | bytes | None, *extra: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        f = tmp / "data" / "train.csv"
        if content is not None:
            write(f, content)
        return ["extract", "--teacher", "rp-text", "--dataset", "csv", "--data-option", f"path={f}",
                "--store", str(tmp / "store"), "--no-progress", *extra]
    return make


def extract_images(files: dict[str, Callable[[Path], None]]) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        for rel, maker in files.items():
            p = tmp / "imgs" / "train" / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            maker(p)
        return ["extract", "--teacher", "rp-image", "--dataset", "imagefolder", "--data-option",
                f"path={tmp / 'imgs'}", "--store", str(tmp / "store"), "--no-progress"]
    return make


def png(size: tuple[int, int], mode: str = "L") -> Callable[[Path], None]:
    def make(p: Path) -> None:
        from PIL import Image

        Image.new(mode, size, color=0 if mode == "L" else (1, 2, 3)).save(p)
    return make


def extract_digits(teacher: str = "rp-image", *extra: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["extract", "--teacher", teacher, "--dataset", "digits", "--split", "test",
                        "--store", str(tmp / "store"), "--no-progress", *extra]


def train(*extra: str) -> Callable[[Path], list[str]]:
    return lambda tmp: ["train", "--dataset", "digits", "--method", "none", "--steps", "2", "--batch-size", "16",
                        "--train-limit", "40", "--set", "tensorboard=false", "--device", "cpu", "--no-progress",
                        "--output", str(tmp / "run"), *extra]


def train_cfg(yaml_text: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        return [*train()(tmp), "--config", str(write(tmp / "cfg.yaml", yaml_text))]
    return make


def train_with_store(teachers: str) -> Callable[[Path], list[str]]:
    """A store holding rp-image features of digits/test only, then training on digits/train."""
    def make(tmp: Path) -> list[str]:
        assert main(extract_digits()(tmp)) == 0
        return [*train()(tmp)[:-2], "--method", "aft", "--teacher", teachers, "--store", str(tmp / "store"),
                "--output", str(tmp / "run")]
    return make


def train_into_existing(tmp: Path) -> list[str]:
    write(tmp / "run" / "notes.txt", "my earlier results")
    return train()(tmp)


def overwrite_with_typo(tmp: Path) -> list[str]:
    assert main(train()(tmp)) == 0
    return [*train("--overwrite", "--student", "cnn-smal")(tmp)]


def extract_other_dtype(tmp: Path) -> list[str]:
    assert main(extract_digits()(tmp)) == 0
    return extract_digits("rp-image", "--dtype", "float32")(tmp)


def no_space_left(mp: pytest.MonkeyPatch) -> None:
    def no_space(*_: Any, **__: Any) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    mp.setattr(os, "pwrite", no_space)  # the store writer's positioned writes fail as on a full disk


# ------------------------------------------------------------------------------ API callables
def digits_test():
    from aft.data import load_split

    return load_split("digits", "test")


def api_store(tmp: Path):
    from aft.features import extract
    from aft.teachers import build_teacher

    split = digits_test()
    extract(build_teacher("rp-image"), split, tmp / "store", progress=False)
    return split


def api_unseen_class(tmp: Path) -> None:
    from aft.data import load_split

    f = write(tmp / "d" / "train.csv", "text,label\ngood film,pos\nmeh,neutral\n")
    load_split("csv", "train", path=str(f), class_names=["neg", "pos"])


def api_subsample_too_many(tmp: Path) -> None:
    from aft.data import stratified_subsample

    stratified_subsample(digits_test(), 5000, seed=0)


def api_other_dataset(tmp: Path) -> None:
    from aft.features import FeatureStore

    api_store(tmp)
    (path,) = [p.parent for p in tmp.rglob("manifest.json")]
    from aft.data import load_split

    FeatureStore.open(path).verify(load_split("digits", "train"))


def api_other_teacher(tmp: Path) -> None:
    from aft.features import open_features
    from aft.teachers import build_teacher

    split = api_store(tmp)
    open_features(tmp / "store", [build_teacher("rp-image-v2")], split)


def api_wrong_dim(tmp: Path) -> None:
    from aft.features import open_features
    from aft.teachers import CallableTeacher

    split = api_store(tmp)
    t = CallableTeacher(lambda x: np.zeros((len(x), 8)), dim=8, modality="image", name="rp-image", version="1")
    open_features(tmp / "store", [t], split)


def api_nan_in_store(tmp: Path) -> None:
    from aft.features import open_features

    split = api_store(tmp)
    (arr,) = tmp.rglob("features.bin")
    data = np.memmap(arr, dtype=np.float16, mode="r+")
    data[:] = np.nan
    data.flush()
    del data
    open_features(tmp / "store", ["rp-image"], split)


def api_nan_features_inmemory(tmp: Path) -> None:
    from aft.features import InMemoryFeatures
    from aft.training import TrainConfig
    from aft.training import train as train_api

    split = digits_test()
    feats = np.ones((len(split), 4), dtype=np.float32)
    feats[5, 1] = np.inf
    train_api(TrainConfig(method="aft", steps=1, progress=False, tensorboard=False, device="cpu",
                          output=str(tmp / "run"), test_split=None),
              features=InMemoryFeatures(split.ids, feats, {"t": (0, 4)}), train_split=split)


def api_label_out_of_range(tmp: Path) -> None:
    from aft.data.split import DatasetSplit

    DatasetSplit("d", "train", ["a", "b"], ["x", "y"], np.array([0, 7]), ["neg", "pos"], "text")


def api_duplicate_ids(tmp: Path) -> None:
    from aft.data.split import DatasetSplit

    DatasetSplit("d", "train", ["a", "a"], ["x", "y"], np.array([0, 1]), ["neg", "pos"], "text")


def api_image_shape(tmp: Path) -> None:
    from aft.teachers.base import images_to_tensor

    images_to_tensor(np.zeros((2, 8, 8, 4), dtype=np.uint8))


def api_image_dtype(tmp: Path) -> None:
    from aft.teachers.base import images_to_tensor

    images_to_tensor(np.zeros((2, 8, 8), dtype=np.float32))


def api_text_teacher_on_images(tmp: Path) -> None:
    from aft.features import extract
    from aft.teachers import build_teacher

    extract(build_teacher("rp-text"), digits_test(), tmp / "store", progress=False)


def api_empty_split(tmp: Path) -> None:
    from aft.data.split import DatasetSplit
    from aft.training import TrainConfig
    from aft.training import train as train_api

    empty = DatasetSplit("d", "train", [], np.zeros((0, 8, 8), np.uint8), np.zeros(0, np.int64), ["a", "b"], "image")
    train_api(TrainConfig(method="none", steps=1, progress=False, tensorboard=False, device="cpu",
                          output=str(tmp / "run"), test_split=None), train_split=empty)


def api_unknown_key(tmp: Path) -> None:
    from aft.training import TrainConfig

    TrainConfig.from_dict({"method": "aft", "learning_rate": 0.1})


def api_hf_teacher_remote_code_flag_type(tmp: Path) -> None:
    from aft.training.config import load_config

    load_config(None, ["beta=[1, 2]"])


ROWS: list[Row] = [
    # --- data files (CLI) ----------------------------------------------------------------------
    Row("csv-missing-file", "cli", "`--data-option path=` names a CSV that does not exist", E.DataError,
        r"data file .*train\.csv not found; check the path option", extract_csv(None)),
    Row("csv-empty-file", "cli", "an empty (0-byte) CSV file", E.DataError,
        r"train\.csv is empty; it needs a header row", extract_csv("")),
    Row("csv-wrong-columns", "cli", "CSV without the `text` column", E.DataError,
        r"has no column 'text' \(columns present: 'body', 'label'\); pass text_column=",
        extract_csv("body,label\nhello,0\n")),
    Row("csv-label-not-integer", "cli", "label `1.5`", E.DataError,
        r"line 2: label '1\.5' is not an integer", extract_csv("text,label\nhello,1.5\nbye,0\n")),
    Row("csv-label-out-of-range", "cli", "integer label `-1`", E.DataError,
        r"label -1 is out of range; integer labels must be >= 0", extract_csv("text,label\nhello,-1\nbye,0\n")),
    Row("csv-empty-split", "cli", "CSV with a header and no rows", E.DataError,
        r"has no samples; add at least one row", extract_csv("text,label\n")),
    Row("csv-non-utf8", "cli", "bytes that are not UTF-8 (latin-1 `\\xe9`)", E.DataError,
        r"line 2 is not valid UTF-8 \(byte 0xe9\); re-save the file as UTF-8", extract_csv(b"text,label\ncaf\xe9,0\n")),
    Row("csv-empty-text", "cli", "a row whose text is the empty string", E.DataError,
        r"line 3: the text in column 'text' is empty", extract_csv("text,label\nhello,0\n,1\n")),
    Row("csv-duplicate-ids", "cli", "`id_column` with the same id twice", E.DataError,
        r"line 3: duplicate id 'a' \(first at line 2\); ids must be unique", extract_csv("id,text,label\na,hello,0\na,bye,1\n", "--data-option", "id_column=id")),
    Row("bad-data-option", "cli", "`--data-option path` without `=`", E.ConfigError,
        r"--data-option 'path' is not KEY=VALUE", extract_csv("text,label\nhi,0\n", "--data-option", "path")),
    # --- images (CLI) --------------------------------------------------------------------------
    Row("images-mixed-size", "cli", "image folder with 8x8 and 9x9 images", E.DataError,
        r"2\.png is 9x9 but 1\.png is 8x8; pass size=\(width, height\)", extract_images({"a/1.png": png((8, 8)), "a/2.png": png((9, 9)),
                                                         "b/3.png": png((8, 8))})),
    Row("images-mixed-mode", "cli", "image folder with gray and RGB images", E.DataError,
        r"2\.png is RGB but 1\.png is L; pass mode='RGB' or ", extract_images({"a/1.png": png((8, 8)), "b/2.png": png((8, 8), "RGB")})),
    Row("image-unreadable", "cli", "a `.png` holding garbage bytes", E.DataError,
        r"cannot read image .*broken\.png.*remove or replace the file",
        extract_images({"a/1.png": png((8, 8)), "b/broken.png": lambda p: p.write_bytes(b"not a png")})),
    # --- names (CLI) ---------------------------------------------------------------------------
    Row("unknown-teacher", "cli", "`--teacher nope`", E.UnknownNameError,
        r"unknown teacher 'nope'; valid teachers: .*minilm", extract_digits("nope")),
    Row("unknown-dataset", "cli", "`--dataset nope`", E.UnknownNameError,
        r"unknown dataset 'nope'; valid datasets: .*digits", lambda tmp: [*train()(tmp), "--dataset", "nope"]),
    Row("unknown-method", "cli", "`--method nope`", E.UnknownNameError,
        r"unknown method 'nope'; valid methods: .*aft", train("--method", "nope")),
    Row("unknown-student", "cli", "`--student nope`", E.UnknownNameError,
        r"unknown student 'nope'; valid students: .*cnn-small", train("--student", "nope")),
    Row("overwrite-with-typo", "cli", "`--overwrite` with a misspelled student: the old run is kept",
        E.UnknownNameError, r"unknown student 'cnn-smal'", overwrite_with_typo),
    Row("text-teacher-on-images", "api", "`extract(text teacher, image split)`", E.ConfigError,
        r"encodes texts but digits holds images; pick a image teacher", api_text_teacher_on_images),
    # --- config (CLI) --------------------------------------------------------------------------
    Row("config-missing-file", "cli", "`--config nope.yaml`", E.ConfigError,
        r"config file .*nope\.yaml' not found", lambda tmp: [*train()(tmp), "--config", str(tmp / "nope.yaml")]),
    Row("config-unknown-key", "cli", "config file with `learning_rate: 0.1`", E.ConfigError,
        r"unknown config key 'learning_rate'; valid keys: .*lr", train_cfg("learning_rate: 0.1\n")),
    Row("config-not-a-mapping", "cli", "config file holding a list", E.ConfigError,
        r"must hold a mapping of key: value", train_cfg("- a\n- b\n")),
    Row("config-wrong-type", "cli", "`--set eval_every=many`", E.ConfigError,
        r"config key 'eval_every' must be an integer, got 'many'", train("--set", "eval_every=many")),
    Row("beta-negative", "cli", "`--beta -1`", E.ConfigError, r"beta must be >= 0, got -1\.0", train("--beta", "-1")),
    Row("beta-non-numeric", "cli", "`--set beta=abc`", E.ConfigError,
        r"config key 'beta' must be a number, got 'abc'", train("--set", "beta=abc")),
    Row("beta-list", "api", "`load_config(overrides=['beta=[1, 2]'])`", E.ConfigError,
        r"config key 'beta' must be a number", api_hf_teacher_remote_code_flag_type),
    Row("lr-negative", "cli", "`--lr -0.1`", E.ConfigError, r"lr must be > 0, got -0\.1", train("--lr", "-0.1")),
    Row("lr-non-numeric", "cli", "`--set lr=fast`", E.ConfigError,
        r"config key 'lr' must be a number, got 'fast'", train("--set", "lr=fast")),
    Row("unknown-key-api", "api", "`TrainConfig.from_dict({'learning_rate': 0.1})`", E.ConfigError,
        r"unknown config key 'learning_rate'", api_unknown_key),
    Row("select-best-without-val", "cli", "`--select best --set val_fraction=0`", E.ConfigError,
        r"select: best needs a validation split; set val_fraction > 0",
        train("--select", "best", "--set", "val_fraction=0")),
    # --- splits and labels (API) ---------------------------------------------------------------
    Row("unseen-class-name", "api", "label `neutral` with `class_names=['neg', 'pos']`", E.DataError,
        r"line 3: unknown class 'neutral'; known classes: neg, pos", api_unseen_class),
    Row("label-out-of-range-api", "api", "`DatasetSplit` label 7 with 2 classes", E.DataError,
        r"label 7 out of range for 2 classes", api_label_out_of_range),
    Row("duplicate-ids-api", "api", "`DatasetSplit` with id `a` twice", E.DataError,
        r"duplicate sample id 'a'", api_duplicate_ids),
    Row("n-larger-than-split", "api", "`stratified_subsample(split of 359, 5000)`", E.DataError,
        r"cannot subsample 5000 of 359 samples; use n <= 359", api_subsample_too_many),
    Row("empty-split", "api", "`train()` on a split with 0 samples", E.DataError,
        r"training split d/train is empty", api_empty_split),
    Row("image-wrong-shape", "api", "uint8 images of shape (n, 8, 8, 4)", E.ConfigError,
        r"images must have shape \(n, H, W\) or \(n, H, W, 3\), got \(2, 8, 8, 4\)", api_image_shape),
    Row("image-wrong-dtype", "api", "float32 images", E.ConfigError,
        r"images must be uint8 \(got float32\)", api_image_dtype),
    # --- feature stores ------------------------------------------------------------------------
    Row("store-other-split", "cli", "store holds digits/test, training on digits/train", E.FeatureStoreError,
        r"no features for teacher 'rp-image' on digits/train .*run `aft extract --teacher rp-image --dataset digits "
        r"--split train", train_with_store("rp-image")),
    Row("store-other-teacher-name", "cli", "`--teacher rp-text` but only rp-image was extracted",
        E.FeatureStoreError, r"no features for teacher 'rp-text'", train_with_store("rp-text")),
    Row("store-other-dataset", "api", "`FeatureStore.verify(another split)`", E.FingerprintMismatchError,
        r"does not match: split is 'test' in the store but 'train' here", api_other_dataset),
    Row("store-other-teacher-version", "api", "same teacher name, other weights (version)",
        E.FingerprintMismatchError, r"teacher version is '1' in the store but '2' here", api_other_teacher),
    Row("store-wrong-dim", "api", "same teacher name/version, dim 8 instead of 16", E.FingerprintMismatchError,
        r"dim is 16 in the store but 8 here", api_wrong_dim),
    Row("store-nan", "api", "NaN written into a store's array", E.NonFiniteError,
        r"holds NaN/Inf .*re-run `aft extract`", api_nan_in_store),
    Row("teacher-nan", "cli", "a teacher that outputs NaN", E.NonFiniteError,
        r"teacher 'nan-image' gave non-finite features for sample .* is NaN/Inf", extract_digits("nan-image"),
        leaves_incomplete=True),
    Row("features-inf-api", "api", "in-memory features holding Inf", E.NonFiniteError,
        r"Inf", api_nan_features_inmemory),
    Row("store-exists-other-dtype", "cli", "complete float16 store, `--dtype float32` without `--overwrite`",
        E.OutputExistsError, r"other settings .*pass --overwrite", extract_other_dtype),
    Row("disk-full", "cli", "no space left while writing the store (ENOSPC)", E.DiskFullError,
        r"no space left on device while writing .*features\.bin; free disk space", extract_digits(),
        leaves_incomplete=True, patch=no_space_left),
    # --- outputs -------------------------------------------------------------------------------
    Row("output-exists", "cli", "`--output` folder exists and is not empty", E.OutputExistsError,
        r"output folder .* exists; pass --overwrite to replace it or --resume", train_into_existing),
    Row("predict-no-model", "cli", "`aft predict --model` on a folder without a student", E.CheckpointError,
        r"holds no saved student .*train one first",
        lambda tmp: ["predict", "--model", str(tmp), "--texts", "hello"]),
]


# ------------------------------------------------------------------------------ issue 14 (harden-a)
# Untrusted run folders, archives, names and cached assets. Kept in this separate block (appended to
# ROWS) so that other additions to ROWS merge cleanly.
def predict_remote_code(tmp: Path) -> list[str]:
    """A run folder whose student.json asks to run the model folder's own Python code."""
    import json

    import torch
    from safetensors.torch import save_file

    run = tmp / "model"
    run.mkdir()
    save_file({"head.weight": torch.zeros(2, 4)}, str(run / "student.safetensors"))
    write(run / "student.json", json.dumps({"name": "hf", "num_classes": 2, "class_names": ["a", "b"],
                                            "options": {"model_id": str(run), "trust_remote_code": True}}))
    return ["predict", "--model", str(run), "--texts", "hello"]


def compare_escaping_suite_name(tmp: Path) -> list[str]:
    suite = write(tmp / "suite.yaml", "name: ../../escaped\ndataset: digits\nstudents: [cnn-small]\n"
                  "teacher_sets: [[rp-image]]\nmethods: [aft]\ntrain_sizes: [10]\n")
    return ["compare", str(suite), "--store", str(tmp / "store"), "--no-progress"]


def api_wheel_member_escapes(tmp: Path) -> None:
    import zipfile

    from aft.assets.pip_wheel import extract_from_wheel, prefix_selector

    wheel = tmp / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("pkg/data/../../../escaped.txt", b"x")
    (tmp / "staging").mkdir()
    extract_from_wheel(wheel, prefix_selector("pkg/data/"), tmp / "staging")


def api_cached_asset_modified(tmp: Path) -> None:
    """A pinned asset in the cache whose file has the right size but one flipped byte, then used."""
    import hashlib

    import aft.assets.core as core
    from aft.registry import Registry

    payload = b"weights!" * 64
    pin = core.tree_digest({"w.bin": {"size": len(payload), "sha256": hashlib.sha256(payload).hexdigest()}})
    reg: Registry[core.AssetSpec] = Registry("asset")
    reg.add("weights", core.AssetSpec("weights", "pinned weights", "fake", lambda d, p: (d / "w.bin").write_bytes(payload),
                                      result="w.bin", tree_sha256=pin))
    saved = core.ASSETS, core._CATALOG_LOADED
    core.ASSETS, core._CATALOG_LOADED = reg, True
    try:
        path = core.fetch("weights", tmp / "cache", progress=False)
        path.write_bytes(b"W" + payload[1:])
        core.ensure("weights", tmp / "cache")
    finally:
        core.ASSETS, core._CATALOG_LOADED = saved


ROWS += [
    Row("predict-remote-code", "cli", "`aft predict` on a run folder whose `student.json` asks for `trust_remote_code`",
        E.ConfigError, r"asks to run the model's own Python code \(trust_remote_code: true\); refused: .*"
        r"pass --trust-remote-code", predict_remote_code),
    Row("suite-name-escapes", "cli", "suite YAML with `name: ../../escaped` (it becomes `results/<name>/`)",
        E.UnsafePathError, r"suite name '\.\./\.\./escaped' is not a plain folder name", compare_escaping_suite_name),
    Row("wheel-member-escapes", "api", "a wheel member `pkg/data/../../../escaped.txt` (extracting an asset)",
        E.AssetError, r"unsafe path .*escaped\.txt.* outside the asset folder", api_wheel_member_escapes),
    Row("cached-asset-modified", "api", "a cached asset file with one byte changed (same size), then used",
        E.AssetError, r"w\.bin has the wrong sha256 .*run .aft assets fetch --force weights.",
        api_cached_asset_modified),
]
# ------------------------------------------------------------------------------ end issue 14 (harden-a)


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Row, tmp_path: Path, capsys, monkeypatch):
    message = check_refusal(row, tmp_path, capsys, monkeypatch)
    assert re.search(row.message, message), message


def check_refusal(row: Row, tmp_path: Path, capsys: Any, monkeypatch: Any) -> str:
    """Run `row`, check it is refused in one line (exit 2 from the CLI) touching no file; return the message."""
    monkeypatch.chdir(tmp_path)
    if row.where == "cli":
        argv = row.run(tmp_path)
        before = files(tmp_path)
        if row.patch is not None:
            row.patch(monkeypatch)
        capsys.readouterr()
        rc = main(argv)
        err = capsys.readouterr().err
        assert rc == 2, err
        assert "Traceback" not in err
        assert err.startswith("aft: error: ") and err.count("\n") == 1, err
        assert re.search(row.message, err), err
        with pytest.raises(row.error, match=row.message):  # --debug re-raises the typed error
            main(["--debug", *argv])
    else:
        before = {}
        with pytest.raises(row.error, match=row.message) as info:
            row.run(tmp_path)
        err = str(info.value)
        assert "\n" not in err
    after = files(tmp_path)
    new = {k for k in after if k not in before}
    changed = {k for k in before if k in after and before[k] != after[k]}
    assert not changed, f"refused input changed existing files: {changed}"
    assert not (set(before) - set(after)), "refused input deleted files"
    if row.where == "cli":
        complete = [k for k in new if Path(k).name in COMPLETE_MARKS]
        assert not complete, f"left complete-looking files: {complete}"
        assert not (tmp_path / "run").exists() or any(k.startswith("run/") for k in before), "created a run folder"
        if not row.leaves_incomplete:
            assert not new, f"left files behind: {sorted(new)}"
        else:
            assert all(Path(k).name in ("features.bin", "progress.json") for k in new), sorted(new)
    return err


# ============================================================================== issue 14 (items 3, 4, 6, 7)
# New rows, kept in their own block (and test function) to ease merging; the doc table lists them too.
_HELD: list[int] = []  # fds of flocks held by rows (a running `aft train` elsewhere)
LONG = "n" * 4000


def run_once(tmp: Path, *extra: str) -> None:
    assert main([*train(*extra)(tmp)]) == 0


def overwrite_with_bad_student_option(tmp: Path) -> list[str]:
    run_once(tmp)
    return train("--overwrite", "--set", "student_options.widht=3")(tmp)


def overwrite_with_bad_method_option(tmp: Path) -> list[str]:
    run_once(tmp)
    return train("--overwrite", "--set", "method_options.rnk=2")(tmp)


def overwrite_with_symlinked_checkpoints(tmp: Path) -> list[str]:
    run_once(tmp)
    write(tmp / "elsewhere" / "precious.txt", "not aft's")
    (tmp / "run" / "checkpoints").symlink_to(tmp / "elsewhere", target_is_directory=True)
    return train("--overwrite")(tmp)


def train_while_locked(tmp: Path) -> list[str]:
    import fcntl

    (tmp / "run").mkdir()
    fd = os.open(tmp / "run" / ".aft-train.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what the first `aft train` holds while it runs
    _HELD.append(fd)
    return train()(tmp)


def output_is_a_file(tmp: Path) -> list[str]:
    write(tmp / "out.txt", "a file where the run folder should be")
    return [*train()(tmp)[:-2], "--output", str(tmp / "out.txt")]


def mkdir_fails(name: str, err: int) -> Callable[[pytest.MonkeyPatch], None]:
    """Make creating the folder `name` fail as on a read-only disk / folder (works as root too)."""
    def patch(mp: pytest.MonkeyPatch) -> None:
        real = Path.mkdir

        def mkdir(self: Path, *a: Any, **kw: Any) -> None:
            if name in self.parts:
                raise OSError(err, os.strerror(err), str(self))
            real(self, *a, **kw)

        mp.setattr(Path, "mkdir", mkdir)
    return patch


def no_cuda(mp: pytest.MonkeyPatch) -> None:
    import torch

    mp.setattr(torch.cuda, "is_available", lambda: False)


def store_is_a_file(tmp: Path) -> list[str]:
    write(tmp / "store", "a file where the store should be")
    return extract_digits()(tmp)


def edited_manifest(edit: Callable[[dict], None]) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        import json

        assert main(extract_digits()(tmp)) == 0
        (manifest,) = tmp.rglob("manifest.json")
        data = json.loads(manifest.read_text())
        edit(data)
        manifest.write_text(json.dumps(data))
        return ["features", "info", str(manifest.parent)]
    return make


def student_json_without(key: str) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        import json

        run_once(tmp)
        f = tmp / "run" / "student.json"
        data = json.loads(f.read_text())
        del data[key]
        f.write_text(json.dumps(data))
        return ["predict", "--model", str(tmp / "run"), "--texts", "hello"]
    return make


def predict_corrupt_image(tmp: Path) -> list[str]:
    png((8, 8))(write(tmp / "imgs" / "ok.png", b""))
    write(tmp / "imgs" / "broken.png", b"\x89PNG\r\n\x1a\n truncated")
    return ["predict", "--model", str(tmp), str(tmp / "imgs")]


def report_with(field: str, value: Any) -> Callable[[Path], list[str]]:
    def make(tmp: Path) -> list[str]:
        import json

        rec = {"suite": "s", "dataset": "d", "student": "cnn", "teachers": [], "method": "none", "beta": 0.0,
               "train_size": 100, "seed": 0, "phase": "final", "val_acc": 0.5, "test_acc": 0.5}
        rec[field] = value
        write(tmp / "records.jsonl", json.dumps(rec) + "\n")
        return ["report", "--records", str(tmp / "records.jsonl"), "--out", str(tmp / "report")]
    return make


def corrupt_subsample_store(how: str) -> Callable[[Path], list[str]]:
    """`aft extract --limit 40` (the store of exactly the training subsample), damaged, then training on it."""
    def make(tmp: Path) -> list[str]:
        assert main(["extract", "--teacher", "rp-image", "--dataset", "digits", "--split", "train", "--limit", "40",
                     "--store", str(tmp / "store"), "--no-progress"]) == 0
        (arr,) = tmp.rglob("features.bin")
        data = bytearray(arr.read_bytes())
        if how == "truncated":
            arr.write_bytes(bytes(data[: len(data) // 2]))
        else:
            data[10] ^= 0xFF
            arr.write_bytes(bytes(data))
        return [*train()(tmp)[:-2], "--method", "aft", "--teacher", "rp-image", "--store", str(tmp / "store"),
                "--output", str(tmp / "run")]
    return make


ROWS_14: list[Row] = [
    # --- item 3: --overwrite validates everything before deleting ---------------------------------
    Row("overwrite-bad-student-option", "cli", "`--overwrite --set student_options.widht=3`: the old run is kept",
        E.ConfigError, r"student 'cnn-small': bad options \['widht'\]", overwrite_with_bad_student_option),
    Row("overwrite-bad-method-option", "cli", "`--overwrite --set method_options.rnk=2`: the old run is kept",
        E.ConfigError, r"method 'none' has no option 'rnk'; valid method_options:", overwrite_with_bad_method_option),
    Row("overwrite-symlink-outside", "cli", "`--overwrite` with `checkpoints/` a symlink out of the run",
        E.UnsafePathError, r"--overwrite refuses to clear .*checkpoints.*symlink .*outside the run folder",
        overwrite_with_symlinked_checkpoints),
    # --- item 4: one `aft train` per run folder ---------------------------------------------------
    Row("train-run-locked", "cli", "a second `aft train` into a run folder another one is writing", E.OutputExistsError,
        r"another `aft train` is writing to .*run.*wait for it to finish or choose another --output", train_while_locked),
    # --- item 6: numbers and labels ---------------------------------------------------------------
    Row("beta-nan", "cli", "`--beta nan`", E.ConfigError, r"beta must be a finite number, got nan", train("--beta", "nan")),
    Row("beta-inf", "cli", "`--beta inf`", E.ConfigError, r"beta must be a finite number, got inf", train("--beta", "inf")),
    Row("lr-nan", "cli", "`--lr nan`", E.ConfigError, r"lr must be a finite number, got nan", train("--lr", "nan")),
    Row("epochs-inf", "cli", "`--epochs inf`", E.ConfigError, r"epochs must be a finite number, got inf",
        train("--epochs", "inf")),
    Row("grad-clip-negative", "cli", "`--set grad_clip=-1`", E.ConfigError,
        r"grad_clip must be > 0 \(or null for no clipping\), got -1\.0", train("--set", "grad_clip=-1")),
    Row("csv-label-huge", "cli", "integer label `99999999999999999999`", E.DataError,
        r"integer label 99999999999999999999 would mean .* classes for 2 distinct label\(s\).*pass class_names",
        extract_csv("text,label\nhello,99999999999999999999\nbye,0\n")),
    Row("csv-label-sparse", "cli", "label `1000000` on two rows", E.DataError,
        r"integer label 1000000 would mean 1000001 classes for 1 distinct label\(s\); .*pass class_names",
        extract_csv("text,label\nhello,1000000\nbye,1000000\n")),
    # --- item 7: environment and input files -------------------------------------------------------
    Row("teacher-st-missing", "cli", "`--teacher st:/no/such/model` (a path that does not exist)", E.AssetError,
        r"cannot load teacher 'st:/no/such/model': .*check the path or model id", extract_digits("st:/no/such/model")),
    Row("teacher-hf-offline", "cli", "`--teacher hf:no-such-org/no-such-model` offline", E.AssetError,
        r"cannot load teacher 'hf:no-such-org/no-such-model': .*check the path or model id",
        extract_digits("hf:no-such-org/no-such-model")),
    Row("teacher-name-too-long", "cli", "`--teacher st:` + a 4,000-character path", E.AssetError,
        r"cannot load teacher 'st:nnn.*\(4003 characters\)'", extract_digits(f"st:{LONG}")),
    Row("output-name-too-long", "cli", "`--output` a 4,000-character name", E.ConfigError,
        r"output path .*\(4000 characters\).* is unusable \(File name too long\)",
        lambda tmp: [*train()(tmp)[:-2], "--output", LONG]),
    Row("store-name-too-long", "cli", "`--store` a 4,000-character name", E.ConfigError,
        r"store path is unusable \(File name too long\); choose another --store",
        lambda tmp: [*extract_digits()(tmp), "--store", LONG]),
    Row("extract-device-cuda-unavailable", "cli", "`aft extract --device cuda` without CUDA", E.ConfigError,
        r"device 'cuda' requested but CUDA is not available; use --device cpu", extract_digits("rp-image", "--device", "cuda"),
        patch=no_cuda),
    Row("extract-device-unknown", "cli", "`aft extract --device banana`", E.ConfigError,
        r"unknown device 'banana'; use cpu, cuda, cuda:N, mps or auto", extract_digits("rp-image", "--device", "banana")),
    Row("output-is-a-file", "cli", "`--output` names a file", E.ConfigError,
        r"output .*out\.txt' is a file, not a folder; choose a folder for --output", output_is_a_file),
    Row("output-read-only", "cli", "`--output` under a read-only folder (EACCES)", E.ConfigError,
        r"cannot write to run folder .*run' \(Permission denied\); choose a writable --output folder", train(),
        patch=mkdir_fails("run", errno.EACCES)),
    Row("store-is-a-file", "cli", "`--store` names a file", E.ConfigError,
        r"--store .*store' is a file, not a folder", store_is_a_file),
    Row("store-read-only", "cli", "`--store` on a read-only file system (EROFS)", E.ConfigError,
        r"read-only file system \('.*store.*'\); check the path and its permissions", extract_digits(),
        patch=mkdir_fails("store", errno.EROFS)),
    Row("config-non-utf8", "cli", "a `--config` file with a latin-1 byte", E.ConfigError,
        r"config file .*cfg\.yaml' is not valid UTF-8 \(byte 0xe9 at offset 13\); re-save it as UTF-8",
        lambda tmp: [*train()(tmp), "--config", str(write(tmp / "cfg.yaml", b"beta: 1\n# caf\xe9\n"))]),
    Row("suite-non-utf8", "cli", "an `aft compare` suite file with a latin-1 byte", E.AftError,
        r"not valid UTF-8.*re-save it as UTF-8",
        lambda tmp: ["compare", str(write(tmp / "suite.yaml", b"name: caf\xe9\n")), "--records", str(tmp / "r.jsonl")]),
    Row("suite-invalid-yaml", "cli", "an `aft compare` suite file that is not YAML", E.AftError,
        r"YAML",
        lambda tmp: ["compare", str(write(tmp / "suite.yaml", "name: [unclosed\n")), "--records", str(tmp / "r.jsonl")]),
    Row("predict-text-non-utf8", "cli", "`aft predict --text FILE` with a latin-1 byte", E.DataError,
        r"--text .*texts\.txt' is not valid UTF-8 \(byte 0xe9 at offset 3\); re-save it as UTF-8",
        lambda tmp: ["predict", "--model", str(tmp), "--text", str(write(tmp / "texts.txt", b"caf\xe9\n"))]),
    Row("manifest-count-not-int", "cli", "a store manifest with `\"count\": \"many\"`", E.FeatureStoreError,
        r"manifest\.json: field 'count' is 'many', expected an integer >= 0; .*re-run `aft extract --overwrite`",
        edited_manifest(lambda m: m.update(count="many"))),
    Row("manifest-ids-not-mapping", "cli", "a store manifest with `\"ids\": \"ids.json\"`", E.FeatureStoreError,
        r"manifest\.json: field 'ids' is 'ids\.json', expected a mapping",
        edited_manifest(lambda m: m.update(ids="ids.json"))),
    Row("manifest-teacher-missing", "cli", "a store manifest without `teacher`", E.FeatureStoreError,
        r"manifest\.json: field 'teacher' is missing", edited_manifest(lambda m: m.pop("teacher"))),
    Row("student-json-missing-key", "cli", "`student.json` without `num_classes`", E.CheckpointError,
        r"student\.json has no field 'num_classes'; the saved student is incomplete: retrain it",
        student_json_without("num_classes")),
    Row("predict-corrupt-image", "cli", "`aft predict` on a truncated `.png`", E.DataError,
        r"cannot read image .*broken\.png.*remove or replace the file", predict_corrupt_image),
    Row("report-wrong-type", "cli", "a run record with `\"test_acc\": \"0.9\"`", E.DataError,
        r"run record 1 \(none, seed 0\): field 'test_acc' is '0\.9', expected a number or null",
        report_with("test_acc", "0.9")),
    Row("report-teachers-not-list", "cli", "a run record with `\"teachers\": 5`", E.DataError,
        r"field 'teachers' is 5, expected a list of names", report_with("teachers", 5)),
    Row("resolution-too-large", "cli", "`aft extract --resolution 100000`", E.ConfigError,
        r"resolution 100000 is too large \(max 2048", extract_digits("rp-image", "--resolution", "100000")),
    Row("student-hf-offline", "cli", "`--student hf:no-such-org/no-such-model` offline (the hub's message spans lines)",
        E.AftError, r"cannot load hf model 'no-such-org/no-such-model': .*couldn't connect",
        train("--student", "hf:no-such-org/no-such-model")),
    Row("predict-device-unknown", "cli", "`aft predict --device banana`", E.ConfigError,
        r"unknown device 'banana'; use cpu, cuda, cuda:N, mps or auto",
        lambda tmp: ["predict", "--model", str(tmp), "--device", "banana", "--texts", "hello"]),
    Row("predict-device-cuda-unavailable", "cli", "`aft predict --device cuda` without CUDA", E.ConfigError,
        r"device 'cuda' requested but CUDA is not available",
        lambda tmp: ["predict", "--model", str(tmp), "--device", "cuda", "--texts", "hello"], patch=no_cuda),
    Row("report-out-is-a-file", "cli", "`aft report --out` names a file", E.DataError,
        r"--out .*report\.txt' is a file, not a folder",
        lambda tmp: [*report_with("seed", 0)(tmp)[:-1], str(write(tmp / "report.txt", "x"))]),
    Row("train-limit-store-truncated", "cli", "`--train-limit` with its (`extract --limit`) store truncated",
        E.FeatureStoreError, r"features\.bin has \d+ bytes, expected \d+ .*truncated or corrupt",
        corrupt_subsample_store("truncated")),
    Row("train-limit-store-checksum", "cli", "`--train-limit` with a flipped byte in its store", E.FeatureStoreError,
        r"features\.bin fails its sha256 check", corrupt_subsample_store("flipped")),
]
ROWS = [*ROWS, *ROWS_14]  # rebound (the first test keeps its own rows): the doc table lists every row


@pytest.mark.parametrize("row", ROWS_14, ids=[r.id for r in ROWS_14])
def test_bad_input_issue14(row: Row, tmp_path: Path, capsys, monkeypatch):
    try:
        message = check_refusal(row, tmp_path, capsys, monkeypatch)
        assert re.search(row.message, message), message
    finally:
        while _HELD:
            os.close(_HELD.pop())


def test_csv_field_over_128_kib_is_read(tmp_path):
    """csv's default 128 KiB field limit is not a quoting error: long texts load."""
    from aft.data import load_split

    text = "word " * 60_000  # 300 KB in one field
    f = write(tmp_path / "train.csv", f'text,label\n"{text}",0\nshort,1\n')
    split = load_split("csv", "train", path=str(f))
    assert len(split.inputs[0]) == len(text) and split.class_names == ["0", "1"]


def test_integer_labels_with_a_few_classes_missing_are_still_accepted(tmp_path):
    from aft.data import load_split

    f = write(tmp_path / "train.csv", "text,label\na,0\nb,3\nc,9\n")  # 3 of 10 classes seen
    assert load_split("csv", "train", path=str(f)).num_classes == 10


def test_environment_errors_map_to_one_line_but_bugs_keep_their_traceback():
    from aft.cli.main import environment_error

    assert isinstance(environment_error(OSError(errno.ENOSPC, "No space left on device", "/x")), E.DiskFullError)
    assert isinstance(environment_error(PermissionError(errno.EACCES, "Permission denied", "/x")), E.ConfigError)
    assert isinstance(environment_error(MemoryError()), E.ConfigError)
    assert isinstance(environment_error(UnicodeDecodeError("utf-8", b"\xe9", 0, 1, "invalid")), E.DataError)
    for bug in (KeyError("x"), TypeError("x"), ValueError("x"), AttributeError("x"), FileNotFoundError(2, "x")):
        assert environment_error(bug) is None


# ------------------------------------------------------------------------------ the doc table
def render_table() -> str:
    lines = ["| id | where | input | message (regex it must match) | CLI exit / API error |", "|---|---|---|---|---|"]
    for r in ROWS:
        msg = r.message.replace("|", "\\|")
        outcome = f"exit 2, `{r.error.__name__}`" if r.where == "cli" else f"raises `{r.error.__name__}`"
        lines.append(f"| `{r.id}` | {r.where} | {r.input} | `{msg}` | {outcome} |")
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- rows: generated by tests/reliability/test_bad_inputs.py -->", "<!-- end rows -->"


def test_doc_table_lists_every_row():
    text = DOC.read_text()
    table = text[text.index(BEGIN) + len(BEGIN):text.index(END)].strip() + "\n"
    assert table == render_table(), "docs/bad-inputs.md is stale: run python tests/reliability/test_bad_inputs.py"
    assert len(ROWS) >= 25 and len({r.id for r in ROWS}) == len(ROWS)


if __name__ == "__main__":  # regenerate the table in docs/bad-inputs.md
    text = DOC.read_text()
    head, rest = text.split(BEGIN)
    _, tail = rest.split(END)
    DOC.write_text(head + BEGIN + "\n" + render_table() + END + tail)
