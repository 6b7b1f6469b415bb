# Install rules: headers, the dp::dp export and one export per feature target (each loaded by
# dpConfig.cmake only when its component is asked for), the version file and dp.pc for pkg-config.
# dp is header-only and its files name no machine path, so everything goes to the arch-independent
# share/ (share/cmake/dp, share/pkgconfig), which find_package and pkg-config both search.
include(CMakePackageConfigHelpers)

set(DP_INSTALL_CMAKEDIR ${CMAKE_INSTALL_DATADIR}/cmake/dp CACHE STRING "Where dpConfig.cmake is installed")
set(DP_INSTALL_PKGCONFIGDIR ${CMAKE_INSTALL_DATADIR}/pkgconfig CACHE STRING "Where dp.pc is installed")
mark_as_advanced(DP_INSTALL_CMAKEDIR DP_INSTALL_PKGCONFIGDIR)

install(DIRECTORY ${PROJECT_SOURCE_DIR}/include/dp DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

install(TARGETS dp EXPORT dpTargets)
install(EXPORT dpTargets NAMESPACE dp:: FILE dpTargets.cmake DESTINATION ${DP_INSTALL_CMAKEDIR})

# Feature targets exist when their dependency was found at configure time; only those are installed.
set(DP_INSTALLED_COMPONENTS "")
foreach(component IN ITEMS cuda nccl mpi)
  if(TARGET dp_${component})
    string(SUBSTRING ${component} 0 1 first)
    string(SUBSTRING ${component} 1 -1 rest)
    string(TOUPPER ${first} first)
    set(export_name dp${first}${rest}Targets)  # dpCudaTargets, dpNcclTargets, dpMpiTargets
    install(TARGETS dp_${component} EXPORT ${export_name})
    install(EXPORT ${export_name} NAMESPACE dp:: FILE ${export_name}.cmake DESTINATION ${DP_INSTALL_CMAKEDIR})
    list(APPEND DP_INSTALLED_COMPONENTS ${component})
  endif()
endforeach()
message(STATUS "dp: install components: dp ${DP_INSTALLED_COMPONENTS}")

configure_package_config_file(${CMAKE_CURRENT_LIST_DIR}/dpConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/dpConfig.cmake INSTALL_DESTINATION ${DP_INSTALL_CMAKEDIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/dpConfigVersion.cmake
                                 COMPATIBILITY SameMajorVersion ARCH_INDEPENDENT)
install(FILES ${PROJECT_BINARY_DIR}/dpConfig.cmake ${PROJECT_BINARY_DIR}/dpConfigVersion.cmake
        DESTINATION ${DP_INSTALL_CMAKEDIR})

# pkg-config: a relocatable dp.pc (prefix relative to the file) with fixed flags; pkg-config
# consumers get no feature targets. cblas.h gets an -I only where the compiler does not see it by
# default (on Debian it does, through /usr/include/<multiarch>/cblas.h).
set(DP_PC_CBLAS_CFLAGS "")
find_path(DP_CBLAS_DEFAULT_DIR cblas.h PATHS ${CMAKE_CXX_IMPLICIT_INCLUDE_DIRECTORIES} NO_DEFAULT_PATH)
mark_as_advanced(DP_CBLAS_DEFAULT_DIR)
if(NOT DP_CBLAS_DEFAULT_DIR)
  set(DP_PC_CBLAS_CFLAGS "-I${DP_CBLAS_INCLUDE_DIR} ")
endif()
file(RELATIVE_PATH DP_PC_PREFIX /prefix/${DP_INSTALL_PKGCONFIGDIR} /prefix)
string(REGEX REPLACE "/$" "" DP_PC_PREFIX "${DP_PC_PREFIX}")
configure_file(${CMAKE_CURRENT_LIST_DIR}/dp.pc.in ${PROJECT_BINARY_DIR}/dp.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/dp.pc DESTINATION ${DP_INSTALL_PKGCONFIGDIR})

# The license (Apache-2.0) travels with every installed copy.
install(FILES ${PROJECT_SOURCE_DIR}/LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR})
