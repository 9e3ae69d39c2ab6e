#!/usr/bin/env bash
# Idempotent setup: a virtual environment in .venv with torch (CPU wheel) and aft[all].
# A second run reuses the environment and only reinstalls when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
# Fashion-MNIST comes from Debian's dataset-fashion-mnist package (`apt-get download`, no install):
# on a fresh machine the package lists may be empty, so refresh them once when the package is unknown.
if command -v apt-cache >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
    POLICY="$(apt-cache policy dataset-fashion-mnist 2>/dev/null || true)"
    if ! grep -q "Candidate: [0-9]" <<<"$POLICY"; then
        echo "[setup] apt-get update (package lists)"
        apt-get update -qq >/dev/null 2>&1 || echo "[setup] apt-get update failed; fashion-mnist will try its download URL"
    fi
fi
VENV=".venv"
if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    # Install the pinned CPU wheel first so the library's range (torch>=2.2) never pulls a CUDA build.
    echo "[setup] installing torch==2.13.0"
    "${PIP[@]}" install "torch==2.13.0" 2>&1 | grep -v "is ignored" || true
fi
STAMP="$VENV/.aft-installed"
WANT="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "[setup] installing aft[all] (editable)"
    "${PIP[@]}" install -e ".[all]" 2>&1 | grep -v "is ignored" || true
    "$VENV/bin/python" -c "import aft, torch; print('[setup] aft', aft.__version__, 'torch', torch.__version__)"
    echo "$WANT" > "$STAMP"
fi
