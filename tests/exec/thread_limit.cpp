// The host pool makes its workers at first use. When the OS gives fewer threads than asked (an
// address-space or process limit), dp runs with those it got: it ended the process before
// ("terminate called without an active exception"), beyond any catch. Run by ctest as its own
// process: the limit must be set before the pool exists.
#include <cstdio>
#include <cstdlib>
#include <sys/resource.h>

#include <dp/dp.hpp>

int main() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  std::puts("skipped: the sanitizers reserve more address space than the limit this test sets");
  return 0;
#else
  // 2 GB of address space: 4095 workers' 8 MiB stacks cannot all fit.
  const rlimit limit{std::size_t{2} << 30, std::size_t{2} << 30};
  if (setrlimit(RLIMIT_AS, &limit) != 0) {
    std::puts("skipped: setrlimit(RLIMIT_AS) failed");
    return 0;
  }
  setenv("DP_NUM_THREADS", "4096", 1);
  const float sum = dp::sum(dp::ones<float>({1 << 20})).item();
  const int threads = dp::detail::thread_pool::instance().size();
  // ctest matches this line: printed only when the limit cut the pool and the sum is right.
  if (sum == static_cast<float>(1 << 20) && threads < 4096) {
    std::printf("sum right with %d of 4096 threads\n", threads);
    return 0;
  }
  std::printf("failed: sum %.0f with %d threads\n", static_cast<double>(sum), threads);
  return 1;
#endif
}
