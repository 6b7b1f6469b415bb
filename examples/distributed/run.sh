#!/usr/bin/env bash
# The main job on several processes: sets up a fresh Debian machine (Open MPI included), builds
# train_digits and runs it as `mpirun -np N` (default 2). The program is the single-process one: a
# dp::dist::session is rank world.rank() of N under mpirun, and alone a session of one. Each rank
# trains on its share of every global batch; the weights, and so the accuracy, are those of one
# process with N workers. Extra flags go to train_digits.
#   bash examples/distributed/run.sh [-np N] [train_digits flags]
set -euo pipefail
cd "$(dirname "$0")/../.."
np=2
if [ "${1:-}" = "-np" ]; then
  np=${2:-}
  # Checked before the setup and the build it would otherwise wait for.
  if ! [[ "$np" =~ ^[1-9][0-9]{0,3}$ ]]; then
    echo "run.sh: -np takes a process count from 1 to 9999, got '${np}'" >&2
    exit 2
  fi
  shift 2
fi
bash scripts/setup.sh
build=${DP_BUILD_DIR:-build}
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDP_BUILD_TESTS=OFF -DDP_BUILD_BENCHMARKS=OFF -DDP_WITH_MPI=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target train_digits
flags=(-np "$np" --bind-to none)
[ "$np" -gt "$(nproc)" ] && flags+=(--oversubscribe)
[ "$(id -u)" -eq 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
exec mpirun "${flags[@]}" "$build/examples/train_digits" "$@"
