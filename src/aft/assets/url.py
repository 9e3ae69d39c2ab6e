"""Source kind "url": plain HTTP(S) downloads with urllib (the fallback for users with a network)."""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from aft.errors import AssetError

logger = logging.getLogger(__name__)


def download_url(url: str, dest: Path, *, progress: bool = True, timeout: float = 60) -> None:
    """Download `url` to the file `dest` (raises `AssetError` naming the URL when unreachable)."""
    logger.info("downloading %s", url)
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(tmp, "wb") as out:  # noqa: S310
            total = int(resp.headers.get("Content-Length") or 0)
            bar = None
            if progress:
                from tqdm import tqdm

                bar = tqdm(total=total or None, unit="B", unit_scale=True, desc=dest.name, leave=False)
            while block := resp.read(1 << 20):
                out.write(block)
                if bar is not None:
                    bar.update(len(block))
            if bar is not None:
                bar.close()
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        tmp.unlink(missing_ok=True)
        reason = getattr(exc, "reason", None) or exc
        raise AssetError(f"cannot download {url} ({reason}); check the network or proxy settings") from None
