#!/usr/bin/env bash
# The bundled model's recipe on one CUDA GPU, within about 9 minutes of training:
#   bash tools/train_gpu.sh [OUT]           (default OUT: runs/gpu)
# Uses data/motion-open and data/procedural when they exist (carry them to the GPU machine),
# otherwise rebuilds them from ../shared/data/motion first (about 5 minutes on 16 cores).
# Stage 1 trains Φ alone on batched frames; stage 2 the whole fitter on 64-frame streaming
# windows after a 32-frame burn-in. Written for the device machine; it has not run on a GPU
# yet (none was lent to this project when it was written).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu}
JOBS=$(nproc)

if [ ! -d data/motion-open ]; then
    trainer import-bvh ../shared/data/motion --out data/motion-open --jobs "$JOBS"
fi
if [ ! -d data/procedural ]; then
    trainer make-motion --out data/procedural --count 30 --shape-std 0.8
fi
DATA=(data/motion-open data/procedural)

trainer fit-amass --amass-root "${DATA[@]}" --out "$OUT/phi" --device cuda \
    --stage regressor --init tracker/fitter/models/default.pt --window 64 --burn-in 60 \
    --batch 128 --lr 1e-3 --warmup-steps 100 --workers 4 --max-minutes 3
trainer fit-amass --amass-root "${DATA[@]}" --out "$OUT/full" --device cuda \
    --init "$OUT/phi/final.pt" --window 64 --burn-in 32 --batch 64 --lr 3e-4 \
    --warmup-steps 50 --workers 4 --mesh-vertices 0 --max-minutes 6
echo "checkpoint: $OUT/full/final.pt"
