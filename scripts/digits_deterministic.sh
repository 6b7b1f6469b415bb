#!/usr/bin/env bash
# The main job in the deterministic mode (--deterministic 8) must end with the same test accuracy
# and the same weights (their fingerprint) on 1, 2 and 3 host workers, and on 2 MPI ranks when
# train_digits is built with MPI and mpirun is found.
#   digits_deterministic.sh [path/to/train_digits] [mpirun]
set -euo pipefail
exe=${1:-build/examples/train_digits}
mpirun=${2:-}
[ -x "$exe" ] || { echo "digits_deterministic.sh: '$exe' is not an executable" >&2; exit 2; }
runs=()
summary() {  # the accuracy line without its timing, and the fingerprint
  local out acc fp
  out=$("$@")
  acc=$(sed -n 's/^\(test accuracy [0-9.]*% ([0-9]* samples)\).*/\1/p' <<<"$out")
  fp=$(sed -n 's/^weights fingerprint \([0-9a-f]*\)$/\1/p' <<<"$out")
  [ -n "$acc" ] && [ -n "$fp" ] || { echo "digits_deterministic.sh: no accuracy or fingerprint from: $*" >&2; exit 1; }
  echo "$acc, weights $fp"
}
for d in cpu:0 cpu:0-1 cpu:0-2; do
  line=$(summary "$exe" --deterministic 8 --devices "$d")
  echo "$d: $line"
  runs+=("$line")
done
if [ -n "$mpirun" ]; then
  line=$(summary env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
    "$mpirun" -np 2 --oversubscribe --bind-to none "$exe" --deterministic 8 --devices cpu:0)
  echo "2 ranks x cpu:0: $line"
  runs+=("$line")
fi
if [ "$(printf '%s\n' "${runs[@]}" | sort -u | wc -l)" != 1 ]; then
  echo "digits_deterministic.sh: FAILED: the deterministic runs differ"
  exit 1
fi
echo "digits_deterministic.sh: the same accuracy and weights on every configuration"
