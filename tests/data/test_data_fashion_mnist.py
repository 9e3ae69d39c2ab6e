"""Fashion-MNIST through the idx parser: counts, shapes, balance; idx validation errors."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest

from aft.data import load_split
from aft.data.idx import read_idx_images, read_idx_labels
from aft.errors import DataError


def test_fashion_mnist_official_split(real_asset) -> None:  # type: ignore[no-untyped-def]
    real_asset("fashion-mnist")
    for split, n in (("train", 60000), ("test", 10000)):
        ds = load_split("fashion-mnist", split)
        assert len(ds) == n and ds.inputs.shape == (n, 28, 28) and ds.inputs.dtype == np.uint8
        assert ds.labels.dtype == np.int64 and ds.labels.shape == (n,)
        assert np.bincount(ds.labels, minlength=10).tolist() == [n // 10] * 10
        assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
        assert ds.ids[0] == f"fmnist-{split}-00000" and len(set(ds.ids)) == n
        assert ds.modality == "image" and 0 < ds.inputs.mean() < 255


def _write_idx(path: Path, magic: int, dims: tuple[int, ...], payload: bytes) -> Path:
    header = struct.pack(">I" + "I" * len(dims), magic, *dims)
    with gzip.open(path, "wb") as fh:
        fh.write(header + payload)
    return path


def test_idx_roundtrip_independent_of_the_asset(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(5, 3, 4), dtype=np.uint8)
    labels = np.array([0, 9, 3, 3, 1], dtype=np.uint8)
    fi = _write_idx(tmp_path / "i.gz", 2051, (5, 3, 4), imgs.tobytes())
    fl = _write_idx(tmp_path / "l.gz", 2049, (5,), labels.tobytes())
    np.testing.assert_array_equal(read_idx_images(fi), imgs)
    np.testing.assert_array_equal(read_idx_labels(fl), labels.astype(np.int64))


def test_idx_errors(tmp_path: Path) -> None:
    bad_magic = _write_idx(tmp_path / "m.gz", 2049, (1, 1, 1), b"\x00")
    with pytest.raises(DataError, match="not an idx image file"):
        read_idx_images(bad_magic)
    truncated = _write_idx(tmp_path / "t.gz", 2051, (2, 2, 2), b"\x00" * 7)
    with pytest.raises(DataError, match="truncated"):
        read_idx_images(truncated)
    labels = _write_idx(tmp_path / "l.gz", 2049, (3,), b"\x00\x01\x02")
    with pytest.raises(DataError, match="holds 3 labels, expected 4"):
        read_idx_labels(labels, expected_count=4)
    with pytest.raises(DataError, match="not found"):
        read_idx_labels(tmp_path / "missing.gz")
    (tmp_path / "junk.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="unreadable"):
        read_idx_labels(tmp_path / "junk.gz")


def test_fashion_mnist_from_a_folder_with_a_broken_file(tmp_path: Path) -> None:
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2051, (10000, 28, 28), b"\x00" * 100)
    with pytest.raises(DataError, match="truncated"):
        load_split("fashion-mnist", "test", path=str(tmp_path))
