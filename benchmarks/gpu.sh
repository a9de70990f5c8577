#!/usr/bin/env bash
# The GPU benchmark in one call (fits a 15-minute lease: about 5 minutes on one
# GPU): checks the device, then benchmarks/gpu_benchmark.py writes
# $OUT/gpu_benchmark.md (or ./gpu_benchmark.md). Needs jax[cuda12], flax,
# optax, orbax, absl, ml_collections; not TensorFlow, not PyTorch.
set -euo pipefail
cd "$(dirname "$0")/.."
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
PYTHON=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
timeout 540 "$PYTHON" benchmarks/gpu_benchmark.py "$@"
