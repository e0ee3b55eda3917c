#!/usr/bin/env bash
# The four-model comparison on the real small benchmark (README "Comparison of the four models").
# Same data, batch, number of steps, patience and seed for every model; each keeps its own loss,
# optimiser and schedule (warm-ups given in epochs so they fit the short budget).
# Usage: bash benchmarks/compare_models.sh [GPRA_DIR] [OUT_DIR] [EPOCHS] [STEPS_PER_EPOCH]
set -euo pipefail
G=${1:-../shared/data/gpra}
OUT=${2:-runs/compare}
EPOCHS=${3:-3}
STEPS=${4:-100}
COMMON=(--data "$G/SSWM_complex.csv" "$G/Random_complex.csv" --test "$G/Native_complex.csv" "$G/Drift_complex.csv"
        --preset small --epochs "$EPOCHS" --steps-per-epoch "$STEPS" --batch-size 64 --patience 10 --seed 0)
python -m seq2exp.train --model cnn_bilstm "${COMMON[@]}" --run-dir "$OUT/cnn_bilstm"
python -m seq2exp.train --model crmnet "${COMMON[@]}" --run-dir "$OUT/crmnet" \
    --schedule '{"name": "warmup_cosine", "warmup_epochs": 1}'
python -m seq2exp.train --model legnet "${COMMON[@]}" --run-dir "$OUT/legnet"
python -m seq2exp.train --model macaron "${COMMON[@]}" --run-dir "$OUT/macaron" \
    --schedule '{"name": "inverse_sqrt", "d_model": 512, "warmup_epochs": 1}'
