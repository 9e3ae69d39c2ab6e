"""imagefolder loader: layout, modes and sizes, and DataErrors for bad images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aft.data import load_split
from aft.errors import DataError

Image = pytest.importorskip("PIL.Image")


def _img(path: Path, mode: str = "L", size: tuple[int, int] = (6, 4), value: int = 100) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    color = value if mode == "L" else (value, 0, 255 - value)
    Image.new(mode, size, color).save(path)


def test_gray_folder(tmp_path: Path) -> None:
    _img(tmp_path / "train" / "cat" / "a.png", value=10)
    _img(tmp_path / "train" / "dog" / "b.png", value=20)
    _img(tmp_path / "train" / "dog" / "c.png", value=30)
    (tmp_path / "train" / "dog" / "notes.txt").write_text("ignored")
    _img(tmp_path / "test" / "bird" / "z.png")
    ds = load_split("imagefolder", "train", path=str(tmp_path))
    assert ds.class_names == ["bird", "cat", "dog"]  # union over split folders
    assert ds.ids == ["cat/a.png", "dog/b.png", "dog/c.png"] and ds.labels.tolist() == [1, 2, 2]
    assert ds.is_lazy and len(ds.inputs) == 3
    images = ds.inputs[:]  # read on access
    assert images.shape == (3, 4, 6) and images.dtype == np.uint8
    assert images[:, 0, 0].tolist() == [10, 20, 30] and ds.inputs[2][0, 0] == 30
    eager = load_split("imagefolder", "train", path=str(tmp_path), lazy=False)
    assert not eager.is_lazy and np.array_equal(eager.inputs, images) and eager.ids == ds.ids


def test_mode_and_size_conversion(tmp_path: Path) -> None:
    _img(tmp_path / "train" / "a" / "1.png", "L", (6, 4))
    _img(tmp_path / "train" / "b" / "2.png", "RGB", (8, 8))
    with pytest.raises(DataError, match=r"2\.png is RGB but 1\.png is L; pass mode='RGB'"):
        load_split("imagefolder", "train", path=str(tmp_path), lazy=False)
    lazy = load_split("imagefolder", "train", path=str(tmp_path))  # lazy: the odd file fails when read
    assert lazy.inputs[0].shape == (4, 6)
    with pytest.raises(DataError, match=r"2\.png is RGB but 1\.png is L; pass mode='RGB'"):
        lazy.inputs[[0, 1]]
    with pytest.raises(DataError, match=r"2\.png is 8x8 but 1\.png is 6x4; pass size="):
        load_split("imagefolder", "train", path=str(tmp_path), mode="RGB", lazy=False)
    with pytest.raises(DataError, match=r"2\.png is 8x8 but 1\.png is 6x4; pass size="):
        load_split("imagefolder", "train", path=str(tmp_path), mode="RGB").inputs[1]
    ds = load_split("imagefolder", "train", path=str(tmp_path), mode="RGB", size=[5, 3])
    assert ds.inputs[:].shape == (2, 3, 5, 3)
    gray = load_split("imagefolder", "train", path=str(tmp_path), mode="L", size=7)
    assert gray.inputs[:].shape == (2, 7, 7) and gray.materialize().inputs.shape == (2, 7, 7)


def test_unreadable_image_and_layout_errors(tmp_path: Path) -> None:
    _img(tmp_path / "train" / "a" / "1.png")
    (tmp_path / "train" / "a" / "2.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"cannot read image .*2\.png"):
        load_split("imagefolder", "train", path=str(tmp_path), lazy=False)
    with pytest.raises(DataError, match=r"cannot read image .*2\.png"):
        load_split("imagefolder", "train", path=str(tmp_path)).inputs[:]
    with pytest.raises(DataError, match=r"no folder .*test \(sub-folders present: train\)"):
        load_split("imagefolder", "test", path=str(tmp_path))
    _img(tmp_path / "val" / "loose.png")
    with pytest.raises(DataError, match="not inside a class folder"):
        load_split("imagefolder", "val", path=str(tmp_path))
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(DataError, match="no images under"):
        load_split("imagefolder", "empty", path=str(tmp_path))
    with pytest.raises(DataError, match="not found"):
        load_split("imagefolder", "train", path=str(tmp_path / "missing"))


def test_class_names_option(tmp_path: Path) -> None:
    _img(tmp_path / "train" / "b" / "1.png")
    ds = load_split("imagefolder", "train", path=str(tmp_path), class_names=["a", "b"])
    assert ds.labels.tolist() == [1]
    with pytest.raises(DataError, match="class folder .*b is not one of class_names"):
        load_split("imagefolder", "train", path=str(tmp_path), class_names=["a"])
