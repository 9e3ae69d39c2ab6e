#!/usr/bin/env bash
# Idempotent setup: a virtual environment in .venv with torch (CPU wheel) and aft[all].
# Versions come from constraints.txt (the lock the suite was last run with; pyproject.toml keeps ranges).
# A second run reuses the environment and only reinstalls when pyproject.toml or constraints.txt changed.
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
# pip install with the lock; its output minus noise; a failed install stops the setup (no stamp written).
pip_install() {
    set +e
    "${PIP[@]}" install -c constraints.txt "$@" 2>&1 | { grep -v "is ignored" || true; }
    local rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" != 0 ]; then echo "[setup] pip install $* failed (exit $rc)" >&2; exit "$rc"; fi
}
if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    # Install the pinned CPU wheel first so the library's range (torch>=2.2) never pulls a CUDA build.
    echo "[setup] installing torch==2.13.0"
    pip_install "torch==2.13.0"
fi
STAMP="$VENV/.aft-installed"
WANT="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "[setup] installing aft[all] (editable, versions from constraints.txt)"
    pip_install -e ".[all]"
    "$VENV/bin/python" -c "import aft, torch; print('[setup] aft', aft.__version__, 'torch', torch.__version__)"
    echo "$WANT" > "$STAMP"
fi
# Debian's headless Chromium for the report's browser test (tests/report/test_report_browser.py): the `chromium`
# asset, `apt-get download` + `dpkg-deb -x` into the aft cache (nothing installed system-wide). Without apt the
# test skips with one line.
if command -v apt-get >/dev/null 2>&1 && command -v dpkg-deb >/dev/null 2>&1; then
    if "$VENV/bin/python" -m aft assets fetch chromium >/dev/null 2>&1; then
        echo "[setup] chromium (report browser test) ready in the aft cache"
    else
        echo "[setup] chromium could not be fetched (apt lists or mirror); the report browser test will skip"
    fi
fi
