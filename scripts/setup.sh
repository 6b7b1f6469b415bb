#!/usr/bin/env bash
# Installs what dp's build, tests, examples and benchmarks need on Debian 12 (idempotent).
# The CUDA toolkit, when present, is expected at /usr/local/cuda (it is not an apt package here).
set -euo pipefail
# libdnnl-dev and libxsmm-dev: oneDNN and LIBXSMM, which dp uses for the float GEMMs they are faster on.
packages=(cmake make g++ python3 python3-pip doctest-dev libopenblas-dev libeigen3-dev libbenchmark-dev zlib1g-dev
          libopenmpi-dev openmpi-bin clang-14 libclang-rt-14-dev pkg-config git libdnnl-dev libxsmm-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -q
  $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# clang-format and clang-tidy 18 from PyPI (Debian's 14 does not know InsertBraces, which
# .clang-format uses; clang-tidy 14 cannot parse all of dp's C++20).
pip_install() {
  python3 -m pip install -q --disable-pip-version-check "$@" 2>/dev/null ||
    python3 -m pip install -q --disable-pip-version-check --break-system-packages "$@"
}
clang-format --version 2>/dev/null | grep -q "version 18" || pip_install clang-format==18.1.8
clang-tidy --version 2>/dev/null | grep -q "version 18" || pip_install clang-tidy==18.1.8
