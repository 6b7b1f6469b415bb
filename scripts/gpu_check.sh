#!/usr/bin/env bash
# The prepared GPU run: everything dp's CUDA path needs, built on a CPU machine, checked in one call
# on a GPU machine that has a driver, the CUDA toolkit's libraries and PyTorch but no package
# registry, no compiler toolchain dp can rely on and only minutes to spend.
#
#   scripts/gpu_check.sh prepare [DIR]  on the CPU machine: builds the CUDA tests and the GPU benchmark
#                                       for sm_90 (H100, H200) and packs them, with every library
#                                       they load that is neither the system's nor CUDA's, into
#                                       DIR/bundle.tgz (default gpu-run/, ignored by git; about
#                                       20 MiB: the device tool carries 64 MiB with the tree).
#   scripts/gpu_check.sh run [DIR]      on the GPU machine, from the repository root: prints the GPU
#                                       and driver, checks that every binary's libraries load, runs
#                                       the CUDA tests, reruns a failing suite with
#                                       CUDA_LAUNCH_BLOCKING=1 and under compute-sanitizer memcheck
#                                       (memcheck and racecheck on every suite when all pass), then the
#                                       GPU benchmarks with their PyTorch peers. Log and JSON go to
#                                       $OUT (or DIR/out).
#   scripts/gpu_check.sh dry-run [DIR]  here, without a GPU: run's steps as far as a CPU allows.
#
# Time budget of run (seconds; the device tool allows 600 per command): tests 150 at most (about a
# minute when they pass), sanitizers 230, benchmarks 230. Each step has its own timeout, so a hang
# costs that step, not the run. With the device tool, from this machine:
#   scripts/gpu_check.sh prepare   then   run(command="bash scripts/gpu_check.sh run", carry=["gpu-run"],
#                                             timeout_s=600)
set -uo pipefail
cd "$(dirname "$0")/.."
mode="${1:-}"
dir="${2:-gpu-run}"
binaries=(dp_test_cuda dp_test_nccl bench_gpu)

prepare() {
  set -e
  local build=build-gpu
  # No MPI: the GPU machine has no Open MPI; the NCCL test then bootstraps its one rank itself. No
  # oneDNN (host GEMMs only, 40 MB more to carry with its OpenMP and OpenCL loaders).
  cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDP_WITH_CUDA=ON -DDP_WITH_MPI=OFF -DDP_WITH_ONEDNN=OFF \
    -DDP_CUDA_ARCHITECTURES=90 -DDP_BUILD_TESTS=ON -DDP_BUILD_BENCHMARKS=ON -DDP_BUILD_EXAMPLES=OFF \
    -DDP_INSTALL=OFF >/dev/null
  cmake --build "$build" -j "$(nproc)" --target "${binaries[@]}"
  local stage="$build/gpu-run-stage"
  rm -rf "$dir" "$stage"
  mkdir -p "$dir" "$stage/bin" "$stage/lib"
  cp "$build/tests/dp_test_cuda" "$build/tests/dp_test_nccl" "$build/benchmarks/gpu/bench_gpu" "$stage/bin/"
  strip --strip-debug "$stage"/bin/*
  # Libraries to carry: what ldd resolves outside the C runtime and outside CUDA's own libraries
  # (the GPU machine's toolkit and PyTorch provide cuBLAS, NCCL and the runtime in matching versions).
  local skip='^(linux-vdso|ld-linux|libc\.|libm\.|libstdc\+\+|libgcc_s|libpthread|libdl\.|librt\.|libcuda\.|libcudart|libcublas|libcublasLt|libnccl)'
  for b in "$stage"/bin/*; do
    ldd "$b" | awk '/=>/ {print $1, $3}' | while read -r name path; do
      if ! [[ "$name" =~ $skip ]] && [ -f "$path" ]; then
        cp -L "$path" "$stage/lib/$name"
      fi
    done
  done
  strip --strip-unneeded "$stage"/lib/* 2>/dev/null || true
  git rev-parse HEAD >"$stage/commit"
  git status --porcelain --untracked-files=no | grep -q . && echo "(with uncommitted changes)" >>"$stage/commit"
  tar -C "$stage" -czf "$dir/bundle.tgz" bin lib commit
  local size
  size=$(du -sm "$dir" | cut -f1)
  echo "gpu_check: prepared $dir/bundle.tgz ($size MiB, commit $(head -c10 "$stage/commit")): $(ls "$stage/bin" | tr '\n' ' ')"
  echo "gpu_check: libraries carried: $(ls "$stage/lib" | tr '\n' ' ')"
  if [ "$size" -ge 40 ]; then
    echo "gpu_check: $dir is $size MiB; the device tool carries at most 64 MiB with the tree" >&2
    exit 1
  fi
}

# Directories holding CUDA's libraries on the GPU machine: PyTorch's wheels' first (the benchmark's
# PyTorch peer inherits this path and must keep the versions it was built with), then the toolkit's.
cuda_library_path() {
  local dirs=()
  local py
  py=$(python3 - 2>/dev/null <<'EOF'
import glob, os
try:
    import nvidia
    for root in nvidia.__path__:
        for lib in sorted(glob.glob(os.path.join(root, "*", "lib"))):
            print(lib)
except Exception:
    pass
EOF
)
  for d in $py; do dirs+=("$d"); done
  for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do
    [ -d "$d" ] && dirs+=("$d")
  done
  (IFS=:; echo "${dirs[*]}")
}

log() { echo "gpu_check: $*"; }

# The kernels of one small-MLP training step (between two launches of the optimizer's update), as
# ncu lists them: what a step launches beyond its GEMMs. Needs ncu (clocks left alone).
kernels_per_step() {
  local bin="$1" out="$2" ncu
  ncu=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null) || { log "no ncu: kernels per step not counted"; return; }
  log "== kernels of one small-MLP step (ncu)"
  timeout 90 "$ncu" --clock-control none --metrics gpu__time_duration.sum --launch-skip 2000 --launch-count 200 --csv \
    "$bin/bench_gpu" --benchmark_filter='mlp/small/trainer' --benchmark_min_time=0.05 >"$out/ncu_step.csv" 2>/dev/null
  python3 - "$out/ncu_step.csv" <<'PY'
import csv, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if len(rows) < 2:
    sys.exit("gpu_check: ncu gave no kernels")
head = rows[0]
name, value = head.index("Kernel Name"), head.index("Metric Value")
seq = [(r[name], float(r[value].replace(",", ""))) for r in rows[1:]]
ends = [i for i, (n, _) in enumerate(seq) if "sgd_update" in n]
if len(ends) < 3:
    sys.exit("gpu_check: fewer than three optimizer updates among the kernels")
step = seq[ends[1] + 1 : ends[2] + 1]
print(f"gpu_check: {len(step)} kernels in one small-MLP step, {sum(t for _, t in step) / 1000:.1f} us of kernel time (ncu, serialised)")
for n, t in step:
    print(f"  {t / 1000:6.1f} us  {n[:110]}")
PY
}

run() {
  local dry="$1" out="${OUT:-$dir/out}" failed=0 t0=$SECONDS
  mkdir -p "$out"
  exec > >(tee -a "$out/gpu_check.log") 2>&1
  [ -f "$dir/bundle.tgz" ] || { log "no $dir/bundle.tgz: run 'scripts/gpu_check.sh prepare' on the CPU machine and carry $dir"; exit 2; }
  local unpacked
  unpacked=$(mktemp -d /tmp/dp-gpu-run.XXXXXX)
  tar -C "$unpacked" -xzf "$dir/bundle.tgz"
  local bin="$unpacked/bin"
  log "binaries of commit $(tr '\n' ' ' <"$unpacked/commit") (tree $(git rev-parse --short HEAD 2>/dev/null || echo unknown)), $(date -u +%FT%TZ)"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv
  else
    log "no nvidia-smi: no GPU here"
  fi
  export LD_LIBRARY_PATH="$unpacked/lib:$(cuda_library_path)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  log "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"

  local missing=0
  for b in "$bin"/*; do
    local nf
    nf=$(ldd "$b" | grep "not found" || true)
    if [ -n "$nf" ]; then
      log "$(basename "$b") cannot load: $(echo "$nf" | awk '{print $1}' | tr '\n' ' ')"
      missing=1
    else
      log "$(basename "$b"): every library found ($(ldd "$b" | grep -cE 'cublas|nccl|cudart') from CUDA)"
    fi
  done
  if [ "$missing" = 1 ]; then
    log "libraries are missing: nothing can run"
    exit 3
  fi
  if [ "$dry" = 1 ]; then
    log "dry run: libraries checked; a test binary without a GPU:"
    timeout 60 "$bin/dp_test_cuda" --test-case="*matches the host*" 2>&1 | tail -5
    log "dry run done in $((SECONDS - t0)) s"
    return 0
  fi

  # The suites. doctest's own output names each failing case and assertion.
  local suites=(dp_test_cuda dp_test_nccl) failing=()
  for s in "${suites[@]}"; do
    log "== $s"
    timeout 150 "$bin/$s" --duration=true >"$out/$s.log" 2>&1
    local rc=$?
    if [ "$rc" = 0 ]; then
      log "$s passed: $(grep -E '^\[doctest\] test cases' "$out/$s.log")"
      grep -E 'MESSAGE' "$out/$s.log" || true  # cases that could not check here (one GPU) say so
    else
      failing+=("$s")
      log "$s FAILED (exit $rc$([ "$rc" = 124 ] && echo ': timed out')):"
      grep -E 'ERROR|FATAL|test cases|TEST CASE|exception' "$out/$s.log" | head -40
    fi
  done
  # First in its process, the capture is where the fault status words would be made (ctest runs it
  # alone too: dp_test_cuda_graph_fault).
  log "== the captured fault case alone"
  if timeout 60 "$bin/dp_test_cuda" "--test-case=*captured kernel that meets a fault*" >"$out/graph_fault.log" 2>&1; then
    log "passed: $(grep -E '^\[doctest\] test cases' "$out/graph_fault.log")"
  else
    failed=1
    grep -E 'ERROR|FATAL|test cases|TEST CASE|exception' "$out/graph_fault.log" | head -20
  fi
  # The 2^31-element case moves 8.6 GB: too long under a sanitizer, and it has no shared memory of its own.
  local no_big='--test-case-exclude=*more than 2^31*'
  if [ ${#failing[@]} -gt 0 ]; then
    for s in "${failing[@]}"; do
      log "== $s again with CUDA_LAUNCH_BLOCKING=1"
      CUDA_LAUNCH_BLOCKING=1 timeout 120 "$bin/$s" "$no_big" 2>&1 | grep -E 'ERROR|FATAL|test cases|TEST CASE|exception' | head -30
      log "== $s under compute-sanitizer memcheck"
      timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 "$bin/$s" "$no_big" >"$out/$s.memcheck.log" 2>&1
      log "memcheck exit $?"; grep -E '=========|ERROR|test cases' "$out/$s.memcheck.log" | head -30
    done
    failed=1
  elif command -v compute-sanitizer >/dev/null; then
    # NCCL's communicator setup asks cudaFuncGetAttributes about each of its kernels and skips those
    # built for no architecture of this GPU, draining the error (src/enqueue.cc,
    # ncclInitKernelsForDevice): 16 API errors that are NCCL's by design (H200, 2026-12-04). Its
    # suite is checked for memory errors with API errors unreported; dp's suite keeps the default.
    for check in "memcheck dp_test_cuda 90 explicit" "memcheck dp_test_nccl 50 no" "racecheck dp_test_cuda 90 explicit"; do
      set -- $check
      log "== compute-sanitizer $1 on $2"
      timeout "$3" compute-sanitizer --tool "$1" --report-api-errors "$4" --error-exitcode 9 "$bin/$2" "$no_big" \
        >"$out/$1.$2.log" 2>&1
      local rc=$?
      log "$1 on $2: exit $rc: $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|test cases' "$out/$1.$2.log" | tr '\n' ' ')"
      [ "$rc" = 0 ] || { grep -E '=========' "$out/$1.$2.log" | head -20; failed=1; }
    done
  else
    log "compute-sanitizer not found: sanitizers skipped"
  fi

  log "== benchmarks (benchmarks/gpu/run --quick, prebuilt bench_gpu)"
  timeout 230 python3 benchmarks/gpu/run --quick --budget 200 --prebuilt "$bin/bench_gpu" --json "$out/bench.json" \
    2>&1 | tee "$out/bench.txt" | tail -40
  kernels_per_step "$bin" "$out"
  log "done in $((SECONDS - t0)) s; $( [ "$failed" = 0 ] && echo "all CUDA tests passed" || echo "FAILURES above")"
  return "$failed"
}

case "$mode" in
  prepare) prepare ;;
  run) run 0 ;;
  dry-run) run 1 ;;
  *)
    sed -n '2,20p' "$0"
    exit 2
    ;;
esac
