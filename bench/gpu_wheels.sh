#!/usr/bin/env bash
# Run HERE (a machine with PyPI), before a session's call to a lent GPU machine: fetches
# into .whl/ the wheels of the packages tickpath needs that the GPU machine's image
# lacks, and tickpath's own wheel built from this tree (its python3 is 3.12 with numba, numba-cuda, CuPy, numpy, scipy, pytest,
# hypothesis, mpmath, rich; nothing can be fetched there). .whl/ is git-ignored locally
# (.git/info/exclude) and travels with `carry`. Then run bench/gpu_device.sh there.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >>.git/info/exclude
rm -rf .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  --platform manylinux1_x86_64 -d .whl 'pyzmq==27.1.0' 'msgspec==0.23.0' \
  'hdrhistogram==0.10.8' 'pbr==7.1.3'
# tickpath itself, from this tree (pure Python: the wheel installs on any CPython 3.11+)
python3 -m pip wheel -q --no-deps -w .whl .
ls -l .whl
