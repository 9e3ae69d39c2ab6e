"""aft: Adaptive Feature Transfer from large foundation models to small task-specific models."""

from __future__ import annotations

__version__ = "0.1.0"

from aft.errors import AftError

__all__ = ["AftError", "__version__"]
