#!/usr/bin/env bash
# The main job's accuracy over seeds 1-5 and 1, 2 and 3 host workers, as a Markdown table, checked
# against README's promise: every run >= 98.0% test accuracy and the mean >= 98.3%.
#   digits_table.sh [path/to/train_digits]   (default: build/examples/train_digits)
set -euo pipefail
exe=${1:-build/examples/train_digits}
[ -x "$exe" ] || { echo "digits_table.sh: '$exe' is not an executable (build the train_digits target)" >&2; exit 2; }
devices=(cpu:0 cpu:0-1 cpu:0-2)
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
echo
echo "| seed | 1 worker (cpu:0) | 2 workers (cpu:0-1) | 3 workers (cpu:0-2) |"
echo "|------|------------------|---------------------|---------------------|"
all=()
for seed in 1 2 3 4 5; do
  row="| $seed"
  for d in "${devices[@]}"; do
    out=$("$exe" --seed "$seed" --devices "$d" | tail -n 1)
    acc=$(sed -n 's/^test accuracy \([0-9.]*\)%.*/\1/p' <<<"$out")
    [ -n "$acc" ] || { echo "digits_table.sh: no accuracy in the output of seed $seed on $d: $out" >&2; exit 1; }
    all+=("$acc")
    row="$row | $acc%"
  done
  echo "$row |"
done
printf '%s\n' "${all[@]}" | awk '
  { s += $1; if (NR == 1 || $1 < lo) lo = $1; if (NR == 1 || $1 > hi) hi = $1 }
  END {
    mean = s / NR
    printf "\nmin %.2f%%, mean %.2f%%, max %.2f%% over %d runs (required: min >= 98.0%%, mean >= 98.3%%)\n", lo, mean, hi, NR
    if (lo < 98.0 || mean < 98.3) { print "digits_table.sh: FAILED: the main job is below its promise on this CPU"; exit 1 }
  }'
