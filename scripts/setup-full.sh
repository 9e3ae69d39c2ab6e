#!/usr/bin/env bash
# Idempotent setup of the second test environment, .venv-full: torch 2.14.1 + torchvision 0.29.1 + timm +
# open_clip_torch beside aft[text,vision,hf,dev]. The main .venv holds the CPU torch 2.13, with which the
# registries' torchvision wheels (CUDA builds) fail at import, so timm and open_clip are tested here.
# Versions come from constraints-full.txt (the lock this environment was last tested with).
# A second run reuses the environment and only reinstalls when pyproject.toml or constraints-full.txt changed.
# Where pip's indexes do not offer the pinned torch/torchvision, it prints one line and exits 0 (skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV=".venv-full"
LOCK="constraints-full.txt"
STAMP="$VENV/.aft-installed"
WANT="$(cat pyproject.toml "$LOCK" | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/python" ]; then
    exit 0  # up to date
fi
TORCH="$(grep -E '^torch==' "$LOCK" | cut -d= -f3)"
VISION="$(grep -E '^torchvision==' "$LOCK" | cut -d= -f3)"
# A cheap probe (index pages only, nothing downloaded): are the pinned wheels offered to this machine?
has_version() {
    "$PY" -m pip --disable-pip-version-check index versions "$1" 2>/dev/null \
        | grep -E "^Available versions:" | tr -d ' ' | tr ':,' '\n\n' | grep -qxF "$2"
}
if ! has_version torch "$TORCH" || ! has_version torchvision "$VISION"; then
    echo "[setup-full] skipped: pip offers no torch==$TORCH / torchvision==$VISION wheels here; the timm/open_clip tests (-m full) do not run"
    exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup-full] creating $VENV"
    "$PY" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
pip_install() {
    set +e
    "${PIP[@]}" install -c "$LOCK" "$@" 2>&1 | { grep -v "is ignored" || true; }
    local rc=${PIPESTATUS[0]}
    set -e
    if [ "$rc" != 0 ]; then echo "[setup-full] pip install $* failed (exit $rc)" >&2; exit "$rc"; fi
}
echo "[setup-full] installing torch==$TORCH torchvision==$VISION timm open_clip_torch, then aft[text,vision,hf,dev] (versions from $LOCK)"
pip_install "torch==$TORCH" "torchvision==$VISION" timm open_clip_torch
# torch is pinned by the lock, so aft's own range (torch>=2.2) keeps the installed build
pip_install -e ".[text,vision,hf,dev]"
"$VENV/bin/python" -c "import aft, torch, torchvision, timm, open_clip; print('[setup-full] aft', aft.__version__, 'torch', torch.__version__, 'torchvision', torchvision.__version__, 'timm', timm.__version__, 'open_clip', open_clip.__version__)"
echo "$WANT" > "$STAMP"
