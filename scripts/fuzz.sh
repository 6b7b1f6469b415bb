#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz (the safetensors, CSV and IDX parsers, and the file paths
# of gzip, checkpoint and IDX loading) with ASan and UBSan, then runs each for a fixed number of
# inputs on a copy of its seed corpus (the committed corpus is never modified). Exits non-zero on any crash, sanitizer report, leak, timeout or
# out-of-memory; the reproducer is left in the build folder and its path printed.
#
#   scripts/fuzz.sh                 build and run every target
#   scripts/fuzz.sh csv idx         only these targets
#
# Environment: DP_FUZZ_DIR (build folder, default build-fuzz), DP_FUZZ_RUNS (inputs per target,
# default 20000), DP_FUZZ_TIME (seconds per target; when set, runs for that long instead of
# DP_FUZZ_RUNS inputs), CXX (default clang++-14), DP_FUZZ_JOBS (parallel builds, default 2).
# Needs clang-14, libclang-rt-14-dev, zlib1g-dev and libopenblas-dev (scripts/setup.sh).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${DP_FUZZ_DIR:-build-fuzz}"
case "$dir" in /*) ;; *) dir="$root/$dir" ;; esac
runs="${DP_FUZZ_RUNS:-20000}"
cxx="${CXX:-clang++-14}"
jobs="${DP_FUZZ_JOBS:-2}"
all_targets=(safetensors csv idx files)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all_targets[@]}")

command -v "$cxx" >/dev/null || { echo "fuzz.sh: $cxx not found (run scripts/setup.sh)" >&2; exit 2; }
for t in "${targets[@]}"; do
  [ -f "$root/tests/fuzz/$t.cpp" ] || { echo "fuzz.sh: no target tests/fuzz/$t.cpp" >&2; exit 2; }
done
mkdir -p "$dir"

flags=(-std=c++20 -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
       -fno-sanitize-recover=undefined -Wno-bitwise-conditional-parentheses -Wno-pass-failed -I "$root/include")
libs=(-lz -lopenblas -lpthread -ldl)

# Build (at most $jobs compilers at once); a target is rebuilt when its source or any dp header is newer.
start=$SECONDS
pids=() names=()
for t in "${targets[@]}"; do
  bin="$dir/fuzz_$t"
  if [ -x "$bin" ] && [ -z "$(find "$root/tests/fuzz/$t.cpp" "$root/include" -newer "$bin" -print -quit)" ] &&
     [ "$(cat "$bin.flags" 2>/dev/null)" = "$cxx ${flags[*]} ${libs[*]}" ]; then
    continue
  fi
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  echo "== building fuzz_$t"
  ( "$cxx" "${flags[@]}" "$root/tests/fuzz/$t.cpp" -o "$bin.tmp" "${libs[@]}" > "$dir/fuzz_$t.build.log" 2>&1 &&
    mv "$bin.tmp" "$bin" && echo "$cxx ${flags[*]} ${libs[*]}" > "$bin.flags" ) &
  pids+=($!) names+=("$t")
done
failed=0
for i in "${!pids[@]}"; do
  if ! wait "${pids[$i]}"; then
    echo "fuzz.sh: building fuzz_${names[$i]} failed:" >&2
    cat "$dir/fuzz_${names[$i]}.build.log" >&2
    failed=1
  fi
done
[ $failed -eq 0 ] || exit 1
echo "== build: $((SECONDS - start)) s"

# Run each target on a fresh copy of its seed corpus (with tests/fuzz/<target>.dict when there is one).
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:allocator_may_return_null=0:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
if [ -n "${DP_FUZZ_TIME:-}" ]; then
  limit=(-max_total_time="$DP_FUZZ_TIME")
else
  limit=(-runs="$runs")
fi
status=0
for t in "${targets[@]}"; do
  work="$dir/run_$t"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  cp -R "$root/tests/fuzz/corpus/$t/." "$work/corpus/"
  dict=()
  [ -f "$root/tests/fuzz/$t.dict" ] && dict=(-dict="$root/tests/fuzz/$t.dict")
  start=$SECONDS
  rc=0
  "$dir/fuzz_$t" "${limit[@]}" ${dict[@]+"${dict[@]}"} -max_len=4096 -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" > "$work/log" 2>&1 || rc=$?
  took=$((SECONDS - start))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -n 1)
  if [ $rc -eq 0 ]; then
    echo "== fuzz_$t: ok, ${execs:-?} inputs in ${took} s (corpus $(ls "$work/corpus" | wc -l) files)"
  else
    status=1
    echo "== fuzz_$t: FAILED (exit $rc) after ${took} s; log $work/log" >&2
    grep -E "ERROR|runtime error|SUMMARY|Test unit written|deadly signal|leak" "$work/log" | head -n 20 >&2 || true
    tail -n 40 "$work/log" >&2
  fi
done
exit $status
