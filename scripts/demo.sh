#!/usr/bin/env bash
# Set everything up and run the bundled offline demo (`aft demo`).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/aft demo "$@"
