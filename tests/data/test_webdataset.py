"""The `webdataset` dataset: tar shards indexed once, samples read by seek; ids = keys; CLI; malformed shards."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from _data_helpers import PROJ, _tiny, learnable_images, png_bytes
from PIL import Image

from aft.cli.main import main
from aft.data import load_split
from aft.data import webdataset as wds_mod
from aft.data.lazy import LazyInputs
from aft.errors import ConfigError, DataError
from aft.features import FeatureStore, extract


def _shard(path: Path, samples: list[tuple[str, dict[str, bytes]]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tf:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def _image_shards(root: Path, split: str, n: int, per_shard: int, seed: int = 0,
                  names: tuple[str, ...] | None = None) -> list[bytes]:
    images, labels = learnable_images(n, seed=seed)
    for s in range(0, n, per_shard):
        _shard(root / f"{split}-{s // per_shard:06d}.tar",
               [(f"{split}/{i:05d}", {"png": images[i], "cls": (names[labels[i]] if names else str(labels[i])).encode()})
                for i in range(s, min(s + per_shard, n))])
    return images


def _independent(shards: list[Path]) -> list[tuple[str, bytes, str]]:
    out: dict[str, dict[str, bytes]] = {}
    for shard in shards:
        with tarfile.open(shard) as tf:
            for m in tf.getmembers():
                key, ext = m.name.split(".", 1)
                out.setdefault(key, {})[ext] = tf.extractfile(m).read()
    return [(k, v["png"], v["cls"].decode()) for k, v in out.items()]


def test_shards_indexed_lazily_with_keys_as_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "birds"
    images = _image_shards(root, "train", 11, per_shard=4, names=("crow", "owl"))
    _shard(root / "test-000000.tar", [("t/0", {"png": png_bytes(9), "cls": b"wren"})])
    reads: list[int] = []
    orig = wds_mod.TarRows.read
    monkeypatch.setattr(wds_mod.TarRows, "read", lambda self, rows: reads.append(len(rows)) or orig(self, rows))
    tr = load_split("webdataset", "train", path=str(root))
    assert isinstance(tr.inputs, LazyInputs) and tr.modality == "image" and reads == []
    sub = tr.subset([10, 0, 5])
    assert reads == []
    ref = _independent(sorted(root.glob("train-*.tar")))
    assert list(tr.ids) == [k for k, _, _ in ref]
    assert tr.class_names == ["crow", "owl", "wren"]  # pooled with the test shard's class
    assert [tr.class_names[k] for k in tr.labels] == [c for _, _, c in ref]
    got = sub.inputs[:]
    assert reads == [3]
    np.testing.assert_array_equal(got, np.stack([np.asarray(Image.open(io.BytesIO(images[i]))) for i in (10, 0, 5)]))
    assert tr.dataset == "birds"
    braces = load_split("webdataset", "train", path=str(root / "{split}-{000000..000002}.tar"))
    assert list(braces.ids) == list(tr.ids) and braces.fingerprint() == tr.fingerprint()
    one = load_split("webdataset", "train", path=str(root / "train-000001.tar"))
    assert list(one.ids) == [k for k, _, _ in ref[4:8]]


def test_text_and_json_labels(tmp_path: Path) -> None:
    samples = [(f"doc{i}", {"txt": t.encode(), "json": json.dumps({"topic": lab, "n": i}).encode()})
               for i, (t, lab) in enumerate([("hello world", "news"), ("ünïcode ✓", "arts"), ("third", "news")])]
    f = _shard(tmp_path / "docs.tar", samples)
    ds = load_split("webdataset", "any", path=str(f), label_ext="json", label_column="topic")
    assert ds.modality == "text" and list(ds.inputs) == ["hello world", "ünïcode ✓", "third"]
    assert ds.class_names == ["arts", "news"] and ds.labels.tolist() == [1, 0, 1]
    assert ds.text_lengths().tolist() == [11, 9, 5] and list(ds.ids) == ["doc0", "doc1", "doc2"]
    assert ds.dataset == "docs"


def test_extraction_in_workers_equals_in_process(tmp_path: Path) -> None:
    images = _image_shards(tmp_path / "s", "train", 20, per_shard=6)
    ds = load_split("webdataset", "train", path=str(tmp_path / "s"))
    outs = []
    for workers in (0, 2):
        [path] = extract([_tiny()], ds, tmp_path / f"st{workers}", batch_size=7, dtype="float32", progress=False,
                         workers=workers)
        outs.append(FeatureStore.open(path).get(list(ds.ids)))
    np.testing.assert_array_equal(outs[0], outs[1])
    decoded = np.stack([np.asarray(Image.open(io.BytesIO(b))) for b in images]).reshape(20, -1).astype(np.float32)
    np.testing.assert_allclose(outs[0], decoded @ PROJ / 255.0, rtol=1e-5)


def test_extract_and_train_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _image_shards(tmp_path / "shards", "train", 24, per_shard=10)
    _image_shards(tmp_path / "shards", "test", 4, per_shard=4, seed=1)
    data = ["--dataset", "webdataset", "--data-option", f"path={tmp_path / 'shards' / '{split}-*.tar'}"]
    assert main(["extract", "--teacher", "test-data-tiny", *data, "--split", "train", "--store", "st",
                 "--no-progress", "--batch-size", "8"]) == 0
    assert "shards/train (24 samples" in capsys.readouterr().out
    assert main(["train", *data, "--teacher", "test-data-tiny", "--store", "st", "--method", "aft", "--beta", "1",
                 "--student", "cnn-small", "--steps", "3", "--batch-size", "8", "--no-progress", "--device", "cpu",
                 "--set", "tensorboard=false"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert Path(res["run_dir"]).name == "shards-aft-cnn-small"
    assert main(["predict", "--model", res["run_dir"], *data, "--split", "test", "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["input"] for r in rows] == [f"test/{i:05d}" for i in range(4)]


def test_malformed_shards_are_one_line_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = [("a", {"png": png_bytes(1), "cls": b"0"}), ("b", {"png": png_bytes(2), "cls": b"1"})]
    f = _shard(tmp_path / "ok.tar", good)
    gz = tmp_path / "zipped.tar"
    gz.write_bytes(gzip.compress(f.read_bytes()))
    with pytest.raises(DataError, match="is a compressed tar; random access needs uncompressed shards"):
        load_split("webdataset", "train", path=str(gz))
    cut = tmp_path / "cut.tar"
    cut.write_bytes(f.read_bytes()[:700])  # the first member's data is cut short
    with pytest.raises(DataError, match=r"cut.tar: .*(past the end of the file|malformed tar)"):
        load_split("webdataset", "train", path=str(cut))
    monkeypatch.setattr(wds_mod, "MAX_MEMBER_BYTES", 50)
    with pytest.raises(DataError, match=r"member 'a.png' claims \d+ bytes \(over the limit of 50\)"):
        load_split("webdataset", "train", path=str(f))
    monkeypatch.undo()
    split_up = _shard(tmp_path / "split.tar", [("a", {"png": png_bytes(1)}), ("b", {"png": png_bytes(1), "cls": b"0"}),
                                                ("a", {"cls": b"1"})])
    with pytest.raises(DataError, match="sample 'a' has no .cls label member"):
        load_split("webdataset", "train", path=str(split_up))
    apart = _shard(tmp_path / "apart.tar", [("a", {"png": png_bytes(1), "cls": b"0"}), ("b", {"png": png_bytes(1), "cls": b"0"}),
                                            ("a", {"txt": b"x"})])
    with pytest.raises(DataError, match="the members of sample 'a' are not consecutive"):
        load_split("webdataset", "train", path=str(apart))
    noext = _shard(tmp_path / "noext.tar", [("README", {})])
    with tarfile.open(noext, "w") as tf:
        info = tarfile.TarInfo("README")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(DataError, match=r"member 'README' is not <key>.<ext>"):
        load_split("webdataset", "train", path=str(noext))
    (tmp_path / "junk.tar").write_bytes(b"\x01" * 2048)
    with pytest.raises(DataError, match="junk.tar"):
        load_split("webdataset", "train", path=str(tmp_path / "junk.tar"))
    bad_img = _shard(tmp_path / "badimg.tar", [*good, ("c", {"png": b"nope", "cls": b"0"})])
    ds = load_split("webdataset", "train", path=str(bad_img))
    with pytest.raises(DataError, match=r"cannot read image .*badimg.tar: c.png \(not an image format"):
        ds.take([2])
    with pytest.raises(DataError, match=r"no file matches .*/nope-\*.tar"):
        load_split("webdataset", "nope", path=str(tmp_path / "{split}-*.tar"))
    with pytest.raises(ConfigError, match="brace range"):
        load_split("webdataset", "train", path=str(tmp_path / "s-{9..1}.tar"))
    empty = _shard(tmp_path / "e" / "train-000000.tar", [])
    with pytest.raises(DataError, match="split 'train' has no samples"):
        load_split("webdataset", "train", path=str(empty.parent))
    _shard(tmp_path / "dup" / "train-000000.tar", good)
    _shard(tmp_path / "dup" / "train-000001.tar", good[1:])
    with pytest.raises(DataError, match="duplicate sample id 'b'"):
        load_split("webdataset", "train", path=str(tmp_path / "dup"))
    assert main(["extract", "--teacher", "test-data-tiny", "--dataset", "webdataset", "--data-option",
                 f"path={gz}", "--store", str(tmp_path / "st"), "--no-progress"]) == 2
    assert not (tmp_path / "st").exists()


def test_brace_patterns_and_data_names() -> None:
    from aft.data.options import dataset_label
    from aft.data.shards import expand_braces

    assert expand_braces("s-{08..11}.tar") == ["s-08.tar", "s-09.tar", "s-10.tar", "s-11.tar"]
    assert expand_braces("{a,b}/x-{1..2}.tar") == ["a/x-1.tar", "a/x-2.tar", "b/x-1.tar", "b/x-2.tar"]
    assert expand_braces("keep{this}.tar") == ["keep{this}.tar"]
    with pytest.raises(ConfigError, match="brace range"):
        expand_braces("s-{0..99999999}.tar")
    assert dataset_label("webdataset", {"path": "data/imagenet/{split}-{000000..000146}.tar"}) == "imagenet"
    assert dataset_label("webdataset", {"path": "data/birds-{split}-*.tar"}) == "birds"
    assert dataset_label("parquet", {"path": "hub/train-*.parquet"}) == "train"
    assert dataset_label("hf", {"path": "my/cifar10"}) == "cifar10"
