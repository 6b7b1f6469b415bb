# Overlay port that packages the checkout it lives in (ports/dp/../..), with dp's own CMake install:
#   vcpkg install dp --overlay-ports=ports            (or dp[cuda,mpi])
# vcpkg hashes the port files, not these sources: after changing dp, `vcpkg remove dp` first.
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)

# Header-only: nothing differs between configurations.
set(VCPKG_BUILD_TYPE release)

# Features turn the targets on (and make a missing CUDA or MPI an error); without them they are off.
vcpkg_check_features(OUT_FEATURE_OPTIONS FEATURE_OPTIONS
  FEATURES
    cuda DP_WITH_CUDA
    mpi DP_WITH_MPI
)

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    ${FEATURE_OPTIONS}
    -DDP_BUILD_TESTS=OFF
    -DDP_BUILD_EXAMPLES=OFF
    -DDP_BUILD_BENCHMARKS=OFF
    -DDP_INSTALL=ON
)
vcpkg_cmake_install()
# dp installs to share/cmake/dp; vcpkg wants share/dp.
vcpkg_cmake_config_fixup(CONFIG_PATH share/cmake/dp)
vcpkg_fixup_pkgconfig()

file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
# Apache-2.0 (the LICENSE file at the top of the source tree).
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
