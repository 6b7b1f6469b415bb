// The MPI communicator's own rules, checked on every rank of the job.
#include <cstddef>
#include <cstdint>
#include <string>
#include <sys/mman.h>
#include <vector>

#include <doctest/doctest.h>

#include "world.hpp"

namespace {
/// A float tensor of n elements over address space only: mapped without access and without
/// reserving memory, so that no machine needs its gigabytes (and a write to it would fault).
dp::tensor<float> address_space_only(dp::index_t n) {
  const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(float);
  void* p = ::mmap(nullptr, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  REQUIRE(p != MAP_FAILED);
  auto unmap = [](void* ctx, void* data) { ::munmap(data, reinterpret_cast<std::size_t>(ctx)); };
  return {dp::detail::adopt(dp::cpu(), p, bytes, unmap, reinterpret_cast<void*>(bytes)), 0, {n}, {1}};
}
}  // namespace

TEST_CASE(
    "collectives whose blocks together pass 2^31-1 elements are refused on every rank; the communicator goes on") {
  // Open MPI indexes the whole of an all-gather's output (rank x count) in int: a block under the
  // limit whose whole is past it once reached MPI.
  const int n = test::world().size();
  const dp::index_t block = INT32_MAX / n + 1, whole = block * n;
  auto c = test::world().make_communicator({});
  const auto rule = [&](const char* what) {
    return std::string("dp: ") + what +
           ": an MPI collective moves at most 2^31-1 elements at once (every rank's blocks together), got " +
           std::to_string(whole) + " (" + std::to_string(block) + " per rank)";
  };
  {
    dp::tensor<float> in = address_space_only(block), out = address_space_only(whole), out2 = address_space_only(whole);
    CHECK_THROWS_WITH_AS(c.all_gather(in, out), doctest::Contains(rule("all_gather").c_str()), dp::value_error);
    CHECK_THROWS_WITH_AS(c.reduce_scatter(out, in, dp::dist::reduce_op::sum),
                         doctest::Contains(rule("reduce_scatter").c_str()), dp::value_error);
    CHECK_THROWS_WITH_AS(c.all_to_all(out, out2), doctest::Contains(rule("all_to_all").c_str()), dp::value_error);
  }
  // Nothing was started: the ranks are still in step.
  dp::tensor<float> t = dp::full<float>({3}, static_cast<float>(test::world().rank() + 1));
  c.all_reduce(t, dp::dist::reduce_op::sum);
  const auto sum = static_cast<float>(n * (n + 1)) / 2.0f;  // 1 + 2 + ... + n
  CHECK(t.to_vector() == std::vector<float>{sum, sum, sum});
}
