#!/usr/bin/env bash
# Set everything up, fetch the small offline assets, lint, and run the whole test suite.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
.venv/bin/aft assets fetch fashion-mnist spam-assassin austen minilm efficientnet-lite0 wordllama || exit 1
echo "[test] ruff check"
.venv/bin/ruff check src tests benchmarks examples || exit 1
echo "[test] pytest"
.venv/bin/python -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
    echo "[test] pytest collected no tests"; exit 1
fi
[ "$rc" -eq 0 ] || exit "$rc"
# The second environment (torch 2.14 + torchvision, timm, open_clip): the tests marked `full`.
bash scripts/setup-full.sh || exit 1
if [ -f .venv-full/.aft-installed ]; then
    echo "[test] pytest -m full (.venv-full)"
    .venv-full/bin/python -m pytest -q -m full -p no:cacheprovider tests
    rc=$?
    if [ "$rc" -eq 5 ]; then echo "[test] .venv-full: no tests marked full were collected"; exit 1; fi
fi
exit "$rc"
