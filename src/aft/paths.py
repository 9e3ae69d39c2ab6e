"""Path safety helpers: confine names from configs/manifests to a root folder; name full disks.

`safe_join(root, *parts)` is used wherever a file name comes from user- or manifest-provided data
(a manifest's ``ids.file``, a run's sub-path...): ``..``, absolute parts and symlinks that point
outside `root` raise `UnsafePathError` instead of reading or writing elsewhere.
`safe_name(name)` checks a config string that becomes ONE folder name (a suite name).
"""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

from aft.errors import DiskFullError, UnsafePathError

_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def safe_join(root: str | os.PathLike[str], *parts: str | os.PathLike[str]) -> Path:
    """``root / parts...``, refusing anything that resolves outside `root`.

    `root` itself may be (or sit under) a symlink; the joined path is resolved (following any
    symlinks inside `root`) and must stay under the resolved `root`.

    Raises:
        UnsafePathError: an absolute part, a ``..`` escaping `root`, or a symlink pointing outside.

    >>> safe_join("/data/store", "a", "b.json").as_posix()
    '/data/store/a/b.json'
    """
    base = Path(root)
    for part in parts:
        text = os.fspath(part)
        if not text or "\x00" in text or os.path.isabs(text) or (len(text) > 1 and text[1] == ":"):
            raise UnsafePathError(f"path {text!r} must be a relative name inside {str(base)!r}; fix the config/manifest")
    joined = base.joinpath(*parts)
    real_root = os.path.realpath(base)
    real = os.path.realpath(joined)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        shown = os.path.join(*map(os.fspath, parts)) if parts else ""
        raise UnsafePathError(
            f"path {shown!r} escapes {str(base)!r} (resolves to {real!r}); use a plain relative name without '..' or symlinks"
        )
    return joined


#: longest name accepted by `safe_name` (file systems allow 255 bytes; leave room for suffixes)
MAX_NAME_BYTES = 200


def safe_name(name: object, what: str = "name") -> str:
    """`name` if it is usable as ONE plain folder/file name, else `UnsafePathError`.

    For config strings that become paths (a suite ``name`` -> ``results/<name>/``): refuses empty
    names, ``.``/``..``, absolute names, path separators (``/`` and ``\\``), drive letters, NUL,
    leading ``-`` or ``~`` and names longer than `MAX_NAME_BYTES` bytes.

    >>> safe_name("fashion-mnist")
    'fashion-mnist'
    """
    text = name if isinstance(name, str) else None
    bad = (
        text is None or not text.strip() or text in (".", "..") or "\x00" in text
        or "/" in text or "\\" in text or os.sep in text or (os.altsep is not None and os.altsep in text)
        or os.path.isabs(text) or (len(text) > 1 and text[1] == ":") or text[0] in "-~"
        or len(text.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES
        or any(ord(c) < 32 for c in text)
    )
    if bad:
        shown = repr(name) if not isinstance(name, str) or len(name) <= 60 else repr(name[:57] + "...")
        raise UnsafePathError(
            f"{what} {shown} is not a plain folder name; use letters, digits, '-', '_' or '.' without '/', '..' "
            f"or a leading '-' (at most {MAX_NAME_BYTES} bytes)"
        )
    return text  # type: ignore[return-value]


def is_disk_full(exc: BaseException) -> bool:
    """True for an `OSError` meaning "no space left on device" (or disk quota exceeded)."""
    return isinstance(exc, OSError) and not isinstance(exc, DiskFullError) and exc.errno in _DISK_FULL


@contextlib.contextmanager
def disk_full_as_error(path: str | os.PathLike[str], what: str = "writing") -> Iterator[None]:
    """Turn ENOSPC/EDQUOT raised inside the block into a one-line `DiskFullError` naming `path`."""
    try:
        yield
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError(
                errno.ENOSPC, f"no space left on device while {what} {os.fspath(path)}; free disk space or "
                "write to another disk, then re-run"
            ) from None
        raise


__all__ = ["MAX_NAME_BYTES", "disk_full_as_error", "is_disk_full", "safe_join", "safe_name"]
