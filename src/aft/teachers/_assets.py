"""Find offline assets through `aft.assets` when it is installed, with a local fallback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from aft.errors import AssetError, UnknownNameError

log = logging.getLogger(__name__)


def asset_path(name: str, fallback: Callable[[], Path] | None = None) -> Path:
    """``aft.assets.ensure(name)``; if `aft.assets` is missing or does not know `name`, `fallback()`.

    Raises:
        AssetError: the asset is unavailable and there is no fallback (or the fallback failed).
    """
    try:
        from aft.assets import ensure  # type: ignore[attr-defined]
    except ImportError:
        ensure = None
    if ensure is not None:
        try:
            return Path(ensure(name))
        except UnknownNameError:
            if fallback is None:
                raise
        except AssetError:
            if fallback is None:
                raise
            log.info("aft.assets could not provide %s; trying the installed package", name)
    if fallback is None:
        raise AssetError(f"asset {name!r} is unavailable: aft.assets is not installed; run `aft assets fetch {name}`")
    try:
        return Path(fallback())
    except (ImportError, OSError) as exc:
        raise AssetError(f"asset {name!r} is unavailable ({exc}); run `aft assets fetch {name}`") from None
