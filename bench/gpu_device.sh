#!/usr/bin/env bash
# Run ON a lent GPU machine, from the repository root, with .whl/ carried (see
# bench/gpu_wheels.sh): installs the carried wheels, records the GPU, then runs
# bench/gpu_check.py (GPU tests, Black-Scholes roofline, crossover calibration, kernel
# benchmarks) inside a time budget. Everything it writes goes to $OUT (or bench/out).
set -uo pipefail
out=${OUT:-bench/out}
mkdir -p "$out"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem,temperature.gpu \
  --format=csv >"$out/nvidia-smi.csv" 2>&1
python3 bench/gpu_check.py --json "$out/gpu_check.json" --budget "${BUDGET:-480}" "$@" 2>&1 |
  tee "$out/gpu_check.log"
