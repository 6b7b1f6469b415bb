// Compiled and linked against one feature target, not run (there may be no GPU or MPI launcher):
// checks that the target carries its definition, headers and libraries.
#include <dp/config.hpp>

#if defined(DP_CONSUMER_FEATURE_MPI)
#include <mpi.h>
static_assert(DP_HAS_MPI == 1, "dp::mpi must define DP_HAS_MPI=1");
int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  return MPI_Finalize();
}
#elif defined(DP_CONSUMER_FEATURE_NCCL)
#include <nccl.h>
static_assert(DP_HAS_NCCL == 1, "dp::nccl must define DP_HAS_NCCL=1");
int main() {
  int version = 0;
  return ncclGetVersion(&version) == ncclSuccess && version > 0 ? 0 : 1;
}
#elif defined(DP_CONSUMER_FEATURE_CUDA)
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <thrust/version.h>
int main() {
  cublasHandle_t handle = nullptr;
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) {
    return THRUST_MAJOR_VERSION > 0 ? 0 : 1;  // no GPU here: linking was the point
  }
  cublasDestroy(handle);
  return 0;
}
#else
#error "define one DP_CONSUMER_FEATURE_*"
#endif
