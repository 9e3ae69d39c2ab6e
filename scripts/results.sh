#!/usr/bin/env bash
# Regenerate docs/RESULTS.md and docs/CLAIMS.md from the comparison records (runs only what the
# records lack: a finished comparison is reused). `make results`; ~2 h on 2 free cores from scratch.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
AFT=.venv/bin/aft
# demo-regret is the demo suite plus the selection-regret runs (its finals equal `aft demo`'s)
RECORDS=(results/demo-regret/records.jsonl results/digits/records.jsonl results/austen/records.jsonl
         results/spam-assassin/records.jsonl)
$AFT compare benchmarks/suites/demo-regret.yaml --records results/demo-regret/records.jsonl --no-progress
$AFT compare digits --records results/digits/records.jsonl --no-progress --analysis regret --analysis beta-auto
$AFT compare austen --records results/austen/records.jsonl --no-progress --analysis regret --analysis beta-auto
$AFT compare spam-assassin --records results/spam-assassin/records.jsonl --no-progress --analysis regret
$AFT report --records "${RECORDS[@]}" --out results/report --markdown docs/RESULTS.md \
  --findings results/FINDINGS.md --command "make results"
.venv/bin/python benchmarks/claims.py --records "${RECORDS[@]}" --out docs/CLAIMS.md --command "make results" > /dev/null
echo "docs/RESULTS.md and docs/CLAIMS.md regenerated"
