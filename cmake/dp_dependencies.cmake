# Dependencies of the dp::dp target: threads, CBLAS (OpenBLAS preferred), zlib, dlopen.
include(GNUInstallDirs)
find_package(Threads REQUIRED)
if(NOT DEFINED BLA_VENDOR)
  set(BLA_VENDOR OpenBLAS)
endif()
find_package(BLAS REQUIRED)
find_package(ZLIB REQUIRED)
# cblas.h lives in the default include path on Debian; elsewhere it may sit in an openblas folder.
find_path(DP_CBLAS_INCLUDE_DIR cblas.h PATH_SUFFIXES openblas openblas-pthread)
if(NOT DP_CBLAS_INCLUDE_DIR)
  message(FATAL_ERROR "dp: cblas.h was not found; install OpenBLAS (Debian: apt-get install libopenblas-dev)")
endif()
