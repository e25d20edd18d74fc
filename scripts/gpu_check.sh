#!/usr/bin/env bash
# GPU check for a machine with CUDA (make gpu-check): the package test suite with every
# numeric test also on CUDA, and CUDA required, so that a missing GPU fails instead of skipping.
# Includes autocast (bf16/fp16), channels_last and torch.compile (inductor) equivalence.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
"$PY" - <<'PY'
import torch
assert torch.cuda.is_available(), "gpu-check needs a CUDA device; torch sees none"
print("torch", torch.__version__, "on", torch.cuda.get_device_name(0))
PY
DENSENET_EDU_REQUIRE_CUDA=1 timeout 280 "$PY" -m pytest -q -rs -m "not book" -k "cuda" tests "$@"
# The benchmark on the GPU (autocast and channels_last variants); tables go to benchmarks/.
timeout 240 "$PY" -m densenet_edu.bench --device cuda --out benchmarks
