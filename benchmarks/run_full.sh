#!/usr/bin/env bash
# The full benchmark recipe behind the README's results table. Run from the repository root after `make setup`:
#   bash benchmarks/run_full.sh [ARTIFACTS]
# It trains the default model if ARTIFACTS has none, converts it (checks on all 10,000 test images),
# benchmarks every backend (full test set, 1000 timed batch-1 calls, batch 1 and 64, cold starts, a soak),
# copies the results here and checks the targets.
set -euo pipefail
ART=${1:-artifacts}
BIN=${BIN:-.venv/bin}
[ -f "$ART/saved_model/saved_model.pb" ] || "$BIN/fmnist-edge" train --out "$ART"
[ -f "$ART/manifest.json" ] || "$BIN/fmnist-edge" convert "$ART" --format openvino,onnx,tflite --precision fp32,fp16,int8 --check all
"$BIN/fmnist-edge" bench "$ART" --iters 1000 --warmup 100 --batch-sizes 1,64 --soak 20000 --out "$ART/bench"
cp "$ART/bench/bench.json" "$ART/bench/bench.csv" "$ART/bench/bench.png" benchmarks/results/
cp "$ART/metadata.json" benchmarks/results/model_metadata.json
cp "$ART/manifest.json" benchmarks/results/manifest.json
"$BIN/python" benchmarks/check_targets.py benchmarks/results/bench.json
