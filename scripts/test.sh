#!/usr/bin/env bash
# Sets up a fresh Debian machine and runs everything CI checks:
#   1. lint: clang-format and clang-tidy (scripts/lint.sh)
#   2. build dp's tests, examples, docs snippets, benchmarks (and the CUDA tests when nvcc is present:
#      built, not run, without a GPU); print the compile time of the test suite and its heaviest units
#   3. the test suite (ctest: unit, compile-fail, examples, docs snippets; CUDA too when a GPU is present),
#      then the MPI tests (label mpi: mpirun -np 2 and -np 3, a stalled and a killed rank)
#   4. packaging: install, find_package and pkg-config consumers, conan create (scripts/package_test.sh)
#   5. fuzzing the loaders under ASan/UBSan (scripts/fuzz.sh)
#   6. the CPU suite under ASan+UBSan, host workers and the loader under TSan (scripts/sanitize.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
root=$(pwd)
build=${DP_BUILD_DIR:-build}

bash scripts/lint.sh

labels="cpu"
cuda_arch=()
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  labels="cpu|cuda"
  # The defaults, also where this build folder was configured on a machine without a GPU.
  cuda_arch=(-UDP_CUDA_ARCHITECTURES -DDP_CUDA_TESTS_COMPILE_ONLY=OFF)
else
  # No GPU to run the CUDA tests: they are compiled to PTX for one architecture (compute_90, what
  # scripts/gpu_check.sh builds for), which takes every line through nvcc's front end and device
  # compiler; ptxas and the default's second architecture doubled their compile time (expr.cu 75 s
  # against 36 s). Host and device code at -O0 since none of it runs.
  cuda_arch=(-DDP_CUDA_ARCHITECTURES=90-virtual -DDP_CUDA_TESTS_COMPILE_ONLY=ON)
fi

start=$SECONDS
times="$root/$build/compile_times.txt"
mkdir -p "$build"
: >"$times"
# DP_WITH_ONEDNN=ON, DP_WITH_LIBXSMM=ON: the suite must test both GEMM paths (a missing library is an
# error here).
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDP_WITH_ONEDNN=ON -DDP_WITH_LIBXSMM=ON \
  -DCMAKE_CXX_COMPILER_LAUNCHER="$root/scripts/time_tu.sh;$times" \
  -DCMAKE_CUDA_COMPILER_LAUNCHER="$root/scripts/time_tu.sh;$times" "${cuda_arch[@]}"
cmake --build "$build" -j "$(nproc)"
echo "build took $((SECONDS - start)) s (wall, $(nproc) jobs)"
awk -v root="$root/" '{ sub(root, "", $2) } $2 ~ /^tests\// { t += $1; n++ } END {
  printf "test suite: %d translation units, %.0f s of compile time\n", n, t }' "$times"
echo "heaviest translation units (seconds):"
# sed reads all of sort's output (head would close the pipe early: SIGPIPE, exit 141 under pipefail).
sort -rn "$times" | sed -n "1,10{s|$root/||;p}"
# The build-time budget: no test translation unit over 60 s in this build (printed, not enforced:
# a shared CI machine's timings are noisy).
awk -v root="$root/" '{ sub(root, "", $2) } $2 ~ /^tests\// && $1 > 60 { over = over sprintf(" %s (%.0f s)", $2, $1) }
  END { print (over == "" ? "budget: every test translation unit compiled in 60 s or less" : "budget NOT MET, over 60 s:" over) }' "$times"

ctest --test-dir "$build" -L "$labels" --output-on-failure -j "$(nproc)"
# MPI: the suite under mpirun at 2 and 3 ranks and the stalled/killed-rank programs, one at a time
# (each job takes the machine's cores).
ctest --test-dir "$build" -L "^mpi$" --output-on-failure --no-tests=error

bash scripts/package_test.sh
DP_FUZZ_RUNS=${DP_FUZZ_RUNS:-100000} bash scripts/fuzz.sh
bash scripts/sanitize.sh
echo "test.sh: all checks passed"
