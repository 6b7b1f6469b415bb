#!/usr/bin/env bash
# Sets up a fresh Debian machine, builds the digits example and trains it (extra flags pass through).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build=${DP_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDP_BUILD_TESTS=OFF -DDP_BUILD_BENCHMARKS=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target train_digits
"$build/examples/train_digits" "$@"
