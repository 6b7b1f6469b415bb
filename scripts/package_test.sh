#!/usr/bin/env bash
# Checks dp's packaging end to end, offline: installs dp to a temporary prefix, builds and runs
# tests/consumer against it with find_package (plus every feature component the install has) and
# with pkg-config flags, then creates the Conan package with its test_package. One PASS/FAIL line
# per step; exits non-zero when a step fails. Expects scripts/setup.sh to have run (cmake, g++,
# OpenBLAS, zlib, pkg-config); installs Conan 2 with pip when it is missing.
# Environment: DP_JOBS (build jobs, default 2), DP_PACKAGE_TEST_KEEP=1 keeps the work folder.
# shellcheck disable=SC2317  # the step functions are called through step()
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
jobs=${DP_JOBS:-2}
python=/usr/bin/python3
work=$(mktemp -d "${TMPDIR:-/tmp}/dp-package-test.XXXXXX")
prefix=$work/prefix
if [ "${DP_PACKAGE_TEST_KEEP:-0}" = 1 ]; then
  echo "work folder: $work"
else
  trap 'rm -rf "$work"' EXIT
fi

failed=0
# step NAME FUNCTION: runs FUNCTION with its output in $work/NAME.log, prints PASS or FAIL (and the
# log's tail), and returns its status.
step() {
  local name=$1 fn=$2 start rc
  start=$(date +%s)
  "$fn" >"$work/$name.log" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then
    echo "PASS $name ($(( $(date +%s) - start )) s)"
  else
    echo "FAIL $name ($(( $(date +%s) - start )) s), last lines of $name.log:"
    tail -n 30 "$work/$name.log" | sed 's/^/    /'
    failed=1
  fi
  return $rc
}
skip() {
  echo "SKIP $1 ($2)"
  failed=1
}

install_dp() {
  cmake -S . -B "$work/build" -DDP_BUILD_TESTS=OFF -DDP_BUILD_EXAMPLES=OFF -DDP_BUILD_BENCHMARKS=OFF \
    -DCMAKE_INSTALL_PREFIX="$prefix" &&
    cmake --install "$work/build" &&
    test -f "$prefix/share/cmake/dp/dpConfig.cmake" -a -f "$prefix/share/pkgconfig/dp.pc" -a -f "$prefix/include/dp/dp.hpp" \
      -a -f "$prefix/share/doc/dp/LICENSE"
}

consumer_cmake() {
  # Every component this install has (those whose dependency was found) is required and built against.
  local components=() c
  for c in cuda nccl mpi; do
    local file="$prefix/share/cmake/dp/dp${c^}Targets.cmake"
    [ -f "$file" ] && components+=("$c")
  done
  echo "components: ${components[*]:-none}"
  cmake -S tests/consumer -B "$work/consumer" -DCMAKE_PREFIX_PATH="$prefix" \
    "-DDP_CONSUMER_COMPONENTS=$(IFS=';'; echo "${components[*]}")" &&
    cmake --build "$work/consumer" -j "$jobs" &&
    "$work/consumer/dp_consumer"
}

consumer_pkgconfig() {
  export PKG_CONFIG_PATH=$prefix/share/pkgconfig
  local version
  version=$(pkg-config --modversion dp) || return 1
  echo "dp.pc version $version, flags: $(pkg-config --cflags --libs dp)"
  grep -q "project(dp VERSION $version " CMakeLists.txt || { echo "dp.pc version $version differs from CMakeLists.txt"; return 1; }
  # shellcheck disable=SC2046  # the flags are meant to split
  g++ tests/consumer/main.cpp -o "$work/consumer_pc" $(pkg-config --cflags --libs dp) && "$work/consumer_pc"
}

conan() { "$python" -m conans.conan "$@"; }

install_conan() {
  if conan --version 2>/dev/null | grep -q "version 2\."; then
    conan --version
    return 0
  fi
  "$python" -m pip install -q --disable-pip-version-check "conan>=2,<3" ||
    "$python" -m pip install -q --disable-pip-version-check --break-system-packages "conan>=2,<3" || return 1
  conan --version
}

conan_create() {
  # A private Conan home with no remote: the user's configuration stays untouched, nothing is
  # downloaded, and dp's system requirements (OpenBLAS, zlib) must come from the system.
  export CONAN_HOME=$work/conan-home
  conan profile detect --exist-ok && conan remote disable "*" || return 1
  # test_package builds inside its own folder: work on a copy so the checkout stays clean.
  local src=$work/conan-src
  mkdir -p "$src" &&
    cp -r conanfile.py CMakeLists.txt cmake include test_package "$src"/ &&
    cp LICENSE "$src"/ &&
    (cd "$src" && conan create . --build=missing)
}

start=$(date +%s)
if step install install_dp; then
  step consumer-cmake consumer_cmake
  if command -v pkg-config >/dev/null 2>&1; then
    step consumer-pkgconfig consumer_pkgconfig
  else
    skip consumer-pkgconfig "pkg-config is not installed: apt-get install pkg-config"
  fi
else
  skip consumer-cmake "install failed"
  skip consumer-pkgconfig "install failed"
fi
if step conan-install install_conan; then
  step conan-create conan_create
else
  skip conan-create "Conan 2 is not installed and pip could not install it"
fi
echo "NOTE vcpkg: ports/dp is not exercised (vcpkg is not installable offline)"

total=$(( $(date +%s) - start ))
if [ $failed -eq 0 ]; then
  echo "PASS package_test ($total s)"
else
  echo "FAIL package_test ($total s)"
fi
exit $failed
