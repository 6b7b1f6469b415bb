#!/usr/bin/env bash
# Quality gates: includes must point down the layers (scripts/check_layers.sh), clang-format must
# leave every C++ file unchanged, and clang-tidy (checks and the reasons for each in .clang-tidy)
# must report nothing on the tests, examples and fuzz targets, which between them instantiate every
# public header. Both are clang 18 from PyPI (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/check_layers.sh --self-test
bash scripts/check_layers.sh
# The PyPI wheels' binaries, wherever pip put their launchers (PATH may not name the folder).
tool() {
  command -v "$1" 2>/dev/null && "$1" --version | grep -q "version 18" && return
  python3 -c "import os, $2 as m; print(os.path.join(os.path.dirname(m.__file__), 'data', 'bin', '$1'))"
}
clang_format=$(tool clang-format clang_format | tail -1)
clang_tidy=$(tool clang-tidy clang_tidy | tail -1)
mapfile -t files < <(git ls-files '*.hpp' '*.cpp' '*.cu' '*.h')
start=$SECONDS
"$clang_format" --dry-run --Werror "${files[@]}"
echo "lint: clang-format clean on ${#files[@]} files ($((SECONDS - start)) s)"

start=$SECONDS
mapfile -t units < <(git ls-files 'tests/*.cpp' 'examples/*.cpp' | grep -v -e '^tests/compile_fail/' -e '^tests/consumer/' \
  -e '^tests/fuzz/')
defs=(-DDP_TEST_PROJECT_DIR=\".\" -DDP_TEST_SOURCE_DIR=\"tests\" -DDP_EXAMPLE_DATA=\"examples/data\" -DDP_ENABLE_COUNTERS=1)
# MPI's headers and dp's MPI code for every unit (tests/mpi and examples/distributed need them).
read -r -a mpi_flags <<<"$(mpicxx --showme:compile)"
defs+=(-DDP_HAS_MPI=1 "${mpi_flags[@]}")
# oneDNN's and LIBXSMM's GEMM paths too (scripts/setup.sh installs libdnnl-dev and libxsmm-dev):
# without them exec/onednn.hpp and exec/libxsmm.hpp are preprocessed away and never checked.
defs+=(-DDP_HAS_ONEDNN=1 -DDP_HAS_LIBXSMM=1)
printf '%s\n' "${units[@]}" | xargs -P "$(nproc)" -I{} "$clang_tidy" -quiet {} -- -std=c++20 -Iinclude "${defs[@]}"
echo "lint: clang-tidy clean on ${#units[@]} translation units ($((SECONDS - start)) s)"
