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

# oneDNN computes the float GEMMs it is faster on (include/dp/exec/onednn.hpp); AUTO uses it when
# found. Found by header and library, not by its CMake package: Debian's requires OpenCL's
# development files even for CPU use. dpConfig.cmake looks for it again on the consumer's machine.
set(DP_WITH_ONEDNN "AUTO" CACHE STRING "Host float GEMMs of small and medium shapes through oneDNN: ON, OFF or AUTO")
set_property(CACHE DP_WITH_ONEDNN PROPERTY STRINGS ON OFF AUTO)
set(DP_HAS_ONEDNN OFF)
if(NOT DP_WITH_ONEDNN STREQUAL "OFF")
  find_path(DP_ONEDNN_INCLUDE_DIR oneapi/dnnl/dnnl.h)
  find_library(DP_ONEDNN_LIBRARY dnnl)
  if(DP_ONEDNN_INCLUDE_DIR AND DP_ONEDNN_LIBRARY)
    set(DP_HAS_ONEDNN ON)
  elseif(DP_WITH_ONEDNN STREQUAL "ON")
    message(FATAL_ERROR "dp: DP_WITH_ONEDNN=ON but oneDNN was not found (oneapi/dnnl/dnnl.h, libdnnl; "
                        "Debian: apt-get install libdnnl-dev)")
  endif()
endif()
# LIBXSMM computes the small float GEMMs it is faster on (include/dp/exec/libxsmm.hpp); AUTO uses it
# when found (Debian's libxsmm-dev: a static library, which needs libdl, librt and libm beside it).
set(DP_WITH_LIBXSMM "AUTO" CACHE STRING "Host float GEMMs of small shapes through LIBXSMM: ON, OFF or AUTO")
set_property(CACHE DP_WITH_LIBXSMM PROPERTY STRINGS ON OFF AUTO)
set(DP_HAS_LIBXSMM OFF)
if(NOT DP_WITH_LIBXSMM STREQUAL "OFF")
  find_path(DP_LIBXSMM_INCLUDE_DIR libxsmm.h)
  find_library(DP_LIBXSMM_LIBRARY xsmm)
  if(DP_LIBXSMM_INCLUDE_DIR AND DP_LIBXSMM_LIBRARY)
    set(DP_HAS_LIBXSMM ON)
  elseif(DP_WITH_LIBXSMM STREQUAL "ON")
    message(FATAL_ERROR "dp: DP_WITH_LIBXSMM=ON but LIBXSMM was not found (libxsmm.h, libxsmm; "
                        "Debian: apt-get install libxsmm-dev)")
  endif()
endif()
set(_dp_gemm_libs "OpenBLAS")
if(DP_HAS_ONEDNN)
  string(APPEND _dp_gemm_libs ", oneDNN (${DP_ONEDNN_LIBRARY})")
endif()
if(DP_HAS_LIBXSMM)
  string(APPEND _dp_gemm_libs ", LIBXSMM (${DP_LIBXSMM_LIBRARY})")
endif()
message(STATUS "dp: host GEMMs through ${_dp_gemm_libs} (DP_WITH_ONEDNN=${DP_WITH_ONEDNN}, "
               "DP_WITH_LIBXSMM=${DP_WITH_LIBXSMM})")
unset(_dp_gemm_libs)
