# MPI: dp::mpi (MPI::MPI_CXX, DP_HAS_MPI=1) when MPI is found. FindMPI runs the compiler wrappers,
# so it is skipped entirely with DP_WITH_MPI=OFF.
set(DP_HAS_MPI_BUILD OFF)
if(DP_WITH_MPI STREQUAL "ON")
  find_package(MPI REQUIRED COMPONENTS CXX)
elseif(DP_WITH_MPI STREQUAL "AUTO")
  find_package(MPI QUIET COMPONENTS CXX)
elseif(NOT DP_WITH_MPI STREQUAL "OFF")
  message(FATAL_ERROR "dp: DP_WITH_MPI must be ON, OFF or AUTO, not '${DP_WITH_MPI}'")
endif()

if(MPI_CXX_FOUND AND NOT DP_WITH_MPI STREQUAL "OFF")
  add_library(dp_mpi INTERFACE)
  add_library(dp::mpi ALIAS dp_mpi)
  target_link_libraries(dp_mpi INTERFACE dp::dp MPI::MPI_CXX)
  target_compile_definitions(dp_mpi INTERFACE DP_HAS_MPI=1)
  set_target_properties(dp_mpi PROPERTIES EXPORT_NAME mpi)
  set(DP_HAS_MPI_BUILD ON)
  find_program(DP_MPIRUN NAMES mpirun mpiexec)  # for dp's own MPI tests and examples
  message(STATUS "dp: MPI ${MPI_CXX_VERSION}")
else()
  message(STATUS "dp: building without MPI")
endif()
