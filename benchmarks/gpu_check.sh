#!/usr/bin/env bash
# On a machine with a CUDA GPU: every probe on CUDA against its CPU result (same numbers within
# float tolerance), training, HVP and surface throughput on both devices. Prints a line a
# check and writes the results as JSON (default gpu_check.json). Uses the python on PATH (or
# $PYTHON) with torch (a CUDA build), numpy, scipy, scikit-learn, h5py and tqdm.
#   bash benchmarks/gpu_check.sh [OUT.json]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_check: no CUDA device (torch.cuda.is_available() is False)')"
PYTHONPATH=. "$PYTHON" benchmarks/gpu_check.py --json "${1:-gpu_check.json}"
