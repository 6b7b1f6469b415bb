// Build configuration: which backends this translation unit sees, and the portability macros.
#pragma once

#include <cstddef>
#include <cstdint>

// CUDA is available exactly when the file is compiled by nvcc: kernels need the device compiler,
// and a single meaning per translation unit keeps the rules simple.
#if defined(__CUDACC__)
#define DP_HAS_CUDA 1
#define DP_HOST_DEVICE __host__ __device__
#else
#define DP_HAS_CUDA 0
#define DP_HOST_DEVICE
#endif

// Files compiled by nvcc and by a host compiler see different executors. Everything of dp lives in an
// inline namespace named after the build, so a program that mixes both kinds of files links two
// consistent libraries instead of silently picking one definition of a function for both (an ODR
// violation). Users write dp::tensor either way.
#if DP_HAS_CUDA
#define DP_ABI cuda_abi
#else
#define DP_ABI cpu_abi
#endif

// NCCL and MPI are linked only by the consumers that ask for them (targets dp::nccl, dp::mpi).
#ifndef DP_HAS_NCCL
#define DP_HAS_NCCL 0
#endif
#ifndef DP_HAS_MPI
#define DP_HAS_MPI 0
#endif

// x86-64's MXCSR holds the host's floating-point control bits (rounding, flushing subnormals).
#if defined(__x86_64__) || defined(_M_X64)
#define DP_HAS_MXCSR 1
#else
#define DP_HAS_MXCSR 0
#endif

#if defined(__CUDACC__)
#define DP_FORCEINLINE __forceinline__
#elif defined(_MSC_VER)
#define DP_FORCEINLINE __forceinline
#else
#define DP_FORCEINLINE inline __attribute__((always_inline))
#endif

// Keeps cold or bulky helpers out of line: error paths and shape bookkeeping would otherwise be
// inlined into every expression node constructor, which costs compile time and code size.
#if defined(__CUDA_ARCH__)
#define DP_NOINLINE __noinline__
#elif defined(_MSC_VER)
#define DP_NOINLINE __declspec(noinline)
#else
#define DP_NOINLINE __attribute__((noinline))
#endif
#if defined(__GNUC__) && !defined(__CUDA_ARCH__)
#define DP_COLD __attribute__((cold, noinline))
#else
#define DP_COLD DP_NOINLINE
#endif

// Counters of passes, kernel launches and allocations: on in test builds (they prove fusion and
// the allocation-free step), compiled out otherwise.
#ifndef DP_ENABLE_COUNTERS
#define DP_ENABLE_COUNTERS 0
#endif

// Tell the vectoriser the loop has no carried dependences (outputs alias inputs only index-for-index).
#if defined(__clang__)
#define DP_IVDEP _Pragma("clang loop vectorize(enable)")
#elif defined(__GNUC__) && !defined(__CUDA_ARCH__)
#define DP_IVDEP _Pragma("GCC ivdep")
#else
#define DP_IVDEP
#endif

namespace dp {

/// Signed index type for extents, strides and offsets (negative strides are not used, but signed
/// arithmetic keeps index computations free of wrap-around surprises).
using index_t = std::int64_t;

/// Largest tensor rank. Shapes live in fixed arrays so that no shape ever allocates.
inline constexpr int max_rank = 8;

inline constexpr int version_major = 0;
inline constexpr int version_minor = 1;
inline constexpr int version_patch = 0;

}  // namespace dp
