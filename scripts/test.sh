#!/usr/bin/env bash
# Sets up a fresh Debian machine, builds dp's tests (and the CUDA tests when nvcc is present:
# built, not run, without a GPU), examples and benchmarks, and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build=${DP_BUILD_DIR:-build}
start=$(date +%s)
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release
cmake --build "$build" -j "$(nproc)"
echo "build took $(( $(date +%s) - start )) s"
labels="cpu"
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then labels="cpu|cuda"; fi
ctest --test-dir "$build" -L "$labels" --output-on-failure -j "$(nproc)"
