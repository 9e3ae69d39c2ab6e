"""Typed exceptions of the library. The CLI maps every `AftError` to one line and exit code 2."""

from __future__ import annotations


class AftError(Exception):
    """Base class for errors caused by the user's input or environment (not bugs).

    The message is one line that names the problem and, where possible, the fix.
    """


class ConfigError(AftError, ValueError):
    """A configuration value or command-line option is invalid."""


class UnknownNameError(ConfigError, KeyError):
    """A name (method, teacher, student, dataset, asset...) is not in its registry."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class DataError(AftError, ValueError):
    """A dataset file or split is missing, empty or malformed."""


class AssetError(AftError, RuntimeError):
    """An offline asset could not be fetched, assembled or verified."""


class FeatureStoreError(AftError, ValueError):
    """A feature store is missing, corrupt, or does not match what it is used with."""


class FingerprintMismatchError(FeatureStoreError):
    """A feature store was built for another dataset, teacher, preprocessing or split."""


class CheckpointError(AftError, RuntimeError):
    """A checkpoint or saved model is missing or corrupt."""


class NonFiniteError(AftError, FloatingPointError):
    """NaN or Inf values were found where finite numbers are required."""


class OutputExistsError(AftError, FileExistsError):
    """An output path exists and `--overwrite` was not given."""


class DiskFullError(AftError, OSError):
    """A write failed because the disk (or quota) is full (``errno`` is ENOSPC)."""

    def __str__(self) -> str:  # OSError would prefix "[Errno 28]"
        return str(self.strerror) if self.strerror else super().__str__()


class UnsafePathError(ConfigError):
    """A path taken from a config or manifest would leave the folder it must stay in."""
