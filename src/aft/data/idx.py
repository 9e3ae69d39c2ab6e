"""Reader for the idx format of (Fashion-)MNIST (optionally gzip-compressed)."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from aft.errors import DataError

IDX_IMAGES_MAGIC = 2051  # 0x00000803: unsigned byte, 3 dimensions
IDX_LABELS_MAGIC = 2049  # 0x00000801: unsigned byte, 1 dimension


def _read(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"idx file {path} not found; fetch it (e.g. `aft assets fetch fashion-mnist`)") from None
    except (OSError, EOFError) as exc:
        raise DataError(
            f"idx file {path} is unreadable ({exc}); fetch it again (e.g. `aft assets fetch --force fashion-mnist`)"
        ) from None


def read_idx_images(path: str | Path, expected_count: int | None = None) -> np.ndarray:
    """uint8 images ``(N, rows, cols)`` from an idx3 file (header 16 bytes: magic, N, rows, cols)."""
    path = Path(path)
    raw = _read(path)
    if len(raw) < 16:
        raise DataError(f"idx file {path} is too short ({len(raw)} bytes); fetch it again")
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != IDX_IMAGES_MAGIC:
        raise DataError(f"{path} is not an idx image file (magic {magic}, expected {IDX_IMAGES_MAGIC})")
    if expected_count is not None and n != expected_count:
        raise DataError(f"{path} holds {n} images, expected {expected_count}; fetch it again")
    if len(raw) != 16 + n * rows * cols:
        raise DataError(
            f"{path} has {len(raw) - 16} bytes of pixels, expected {n * rows * cols} ({n}x{rows}x{cols}); "
            "the file is truncated: fetch it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols).copy()


def read_idx_labels(path: str | Path, expected_count: int | None = None) -> np.ndarray:
    """int64 labels ``(N,)`` from an idx1 file (header 8 bytes: magic, N)."""
    path = Path(path)
    raw = _read(path)
    if len(raw) < 8:
        raise DataError(f"idx file {path} is too short ({len(raw)} bytes); fetch it again")
    magic, n = struct.unpack(">II", raw[:8])
    if magic != IDX_LABELS_MAGIC:
        raise DataError(f"{path} is not an idx label file (magic {magic}, expected {IDX_LABELS_MAGIC})")
    if expected_count is not None and n != expected_count:
        raise DataError(f"{path} holds {n} labels, expected {expected_count}; fetch it again")
    if len(raw) != 8 + n:
        raise DataError(f"{path} has {len(raw) - 8} label bytes, expected {n}; the file is truncated: fetch it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=8).astype(np.int64)
