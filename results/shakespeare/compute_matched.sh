#!/usr/bin/env bash
# Compute-matched comparison on Tiny Shakespeare (issue 14): minGRU, minLSTM, the Transformer and
# Mamba, each trained with the paper preset for the same budget of process CPU seconds of training
# (--budget-clock cpu_time: validation excluded, and another process's load on the machine does
# not inflate it), one run at a time on one thread, then tabulated by `minrnn report`.
#
#   bash results/shakespeare/compute_matched.sh                 # BUDGET=3600 CPU-s per model
#   BUDGET=14400 bash results/shakespeare/compute_matched.sh    # later: extend every run to 4 h
#
# Every run goes to runs/cm-<model> and continues with --resume where it exists, so running the
# script again with a larger BUDGET extends the runs exactly (the budget counts over sessions);
# with the same BUDGET a finished run is left as it is. The lr schedule stays the preset's
# 5000-step one. A run stops at the first step that ends past its budget (Mamba's steps are the
# longest, ~2 CPU-min each), with a validation and a checkpoint.
#
# Settings (environment): BUDGET seconds (default 3600); MODELS (default "mingru minlstm
# transformer mamba"; gru / lstm also train); RUNS folder (default runs); OUT report stem (default
# results/shakespeare/compute-matched); PYTHON (default python; minrnn and its mamba extra
# installed: pip install -e ".[mamba,plot]").
#
# Validation: the same 128 evenly spaced non-overlapping windows of the held-out split for every
# model (--validation windows --val-windows 128: 32,768 of its 111,540 characters, window i * 435 //
# 128 of the 435 windows of 256), every 10 steps and at the budget's end.
# Mamba trains in micro-batches of 16 (--grad-accum 4: the same global batch of 64 x 256 per
# step): the pure-PyTorch scan keeps (batch, 256, 768, 16) float tensors per layer for backward,
# about 27 GB for 64 sequences at once.
set -euo pipefail
cd "$(dirname "$0")/../.."

BUDGET=${BUDGET:-3600}
MODELS=${MODELS:-"mingru minlstm transformer mamba"}
RUNS=${RUNS:-runs}
OUT=${OUT:-results/shakespeare/compute-matched}
PYTHON=${PYTHON:-python}
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 NUMBA_NUM_THREADS=1

COMMON=(--preset paper --time-budget "$BUDGET" --budget-clock cpu_time --validation windows --val-windows 128 --eval-every 10)
dirs=()
for model in $MODELS; do
    out="$RUNS/cm-$model"
    dirs+=("$out")
    extra=()
    if [ "$model" = mamba ]; then
        extra=(--batch-size 16 --grad-accum 4)
    fi
    echo "== $model -> $out ($(date -u +%H:%M:%S) UTC)"
    if [ -f "$out/ckpt.safetensors" ]; then
        nice -n 19 "$PYTHON" -m minrnn train shakespeare --out "$out" --resume --time-budget "$BUDGET"
    else
        nice -n 19 "$PYTHON" -m minrnn train shakespeare --model "$model" --out "$out" "${COMMON[@]}" ${extra[@]+"${extra[@]}"}
    fi
done
"$PYTHON" -m minrnn report "${dirs[@]}" --clock cpu_time --at-time "$BUDGET" --out "$OUT" \
    --title "Tiny Shakespeare, paper preset, ${BUDGET} CPU-s of training per model (1 thread)"
