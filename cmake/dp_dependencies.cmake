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
if(DP_HAS_ONEDNN)
  message(STATUS "dp: host GEMMs through OpenBLAS and oneDNN (${DP_ONEDNN_LIBRARY})")
else()
  message(STATUS "dp: host GEMMs through OpenBLAS (oneDNN not used: DP_WITH_ONEDNN=${DP_WITH_ONEDNN})")
endif()
