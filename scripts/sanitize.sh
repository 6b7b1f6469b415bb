#!/usr/bin/env bash
# Builds the CPU test suite under AddressSanitizer + UndefinedBehaviorSanitizer and runs it; then
# builds the tests of host workers, communicators and the prefetching loader under ThreadSanitizer
# and runs them. Compile-fail tests are skipped (they check diagnostics, not behaviour).
#
#   scripts/sanitize.sh            both
#   scripts/sanitize.sh asan|tsan  one of them
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
jobs="$(nproc)"
# -g1: line tables only. The sanitizers' reports need file and line, not variables; full -g made
# the suite's build 40% slower (tests/io/model.cpp under ASan+UBSan at -O1: 174 s with -g, 122 s).
# -O0 (DP_TEST_OPTIMIZATION): GCC's sanitizers at -O1 tripled the suite's compile time.
common=(-DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG=-g1 -DDP_WITH_CUDA=OFF -DDP_WITH_MPI=OFF -DDP_BUILD_BENCHMARKS=OFF
        -DDP_INSTALL=OFF -DDP_TEST_OPTIMIZATION=-O0)

if [ "$what" = all ] || [ "$what" = asan ]; then
  start=$SECONDS
  # UBSan's null and alignment checks on every member access and reference cost 28% of the build
  # (tests/nn/loss.cpp at -O0: 41 s with them, 30 s without); ASan reports a null dereference itself,
  # and the fuzz targets (scripts/fuzz.sh), where bytes become values, keep the full set.
  cmake -S . -B build-asan "${common[@]}" -DDP_BUILD_EXAMPLES=OFF \
    -DCMAKE_CXX_FLAGS="-fsanitize=address,undefined -fno-sanitize=null,alignment -fno-sanitize-recover=undefined -fno-omit-frame-pointer" >/dev/null
  cmake --build build-asan -j "$jobs"
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan -L cpu -LE compile_fail --output-on-failure -j "$jobs"
  echo "sanitize: ASan+UBSan suite passed in $((SECONDS - start)) s"
fi
if [ "$what" = all ] || [ "$what" = tsan ]; then
  start=$SECONDS
  cmake -S . -B build-tsan "${common[@]}" -DDP_BUILD_EXAMPLES=OFF \
    -DCMAKE_CXX_FLAGS="-fsanitize=thread -fno-omit-frame-pointer" >/dev/null
  cmake --build build-tsan -j "$jobs" --target dp_test_dist dp_test_data dp_test_exec
  for t in dp_test_exec dp_test_dist dp_test_data; do
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" "build-tsan/tests/$t"
  done
  echo "sanitize: ThreadSanitizer (workers, communicators, loader) passed in $((SECONDS - start)) s"
fi
