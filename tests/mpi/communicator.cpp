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

TEST_CASE("all_reduce and broadcast send a tensor past MPI's int count in pieces, with every element right") {
  // MPI counts in int: a tensor past 2^31-1 elements goes in pieces. The piece is lowered to 3
  // elements here, so that 10 elements take 4 calls (3 + 3 + 3 + 1) and none takes 8 GiB.
  const test::lowered<dp::index_t> pieces(dp::dist::detail::mpi_piece_elements, 3);
  const int n = test::world().size(), rank = test::world().rank();
  auto c = test::world().make_communicator({});
  // Element i of rank r is r * 10 + i: the sum over ranks is i n + 10 (0 + 1 + ... + n - 1).
  const int offsets = 10 * n * (n - 1) / 2;
  std::vector<float> mine(10), sums(10), means(10), roots(10);
  for (int i = 0; i < 10; ++i) {
    mine[static_cast<std::size_t>(i)] = static_cast<float>(rank * 10 + i);
    sums[static_cast<std::size_t>(i)] = static_cast<float>(i * n + offsets);
    means[static_cast<std::size_t>(i)] = sums[static_cast<std::size_t>(i)] / static_cast<float>(n);
    roots[static_cast<std::size_t>(i)] = static_cast<float>((n - 1) * 10 + i);  // the last rank's
  }
  dp::tensor<float> t = dp::from_vector<float>(mine);
  c.all_reduce(t, dp::dist::reduce_op::sum);
  CHECK(t.to_vector() == sums);
  t = dp::from_vector<float>(mine);
  c.all_reduce(t, dp::dist::reduce_op::mean);
  CHECK(t.to_vector() == means);
  t = dp::from_vector<float>(mine);
  c.all_reduce(t, dp::dist::reduce_op::max);
  CHECK(t.to_vector() == roots);
  t = dp::from_vector<float>(mine);
  c.broadcast(t, n - 1);
  CHECK(t.to_vector() == roots);
  // A view into a larger buffer: each piece starts at the view's own elements.
  dp::tensor<double> whole = dp::full<double>({12}, -1.0);
  dp::tensor<double> middle = whole.slice(0, 1, 11);
  middle = static_cast<double>(rank + 1);
  c.all_reduce(middle, dp::dist::reduce_op::sum);
  const int one_to_n = n * (n + 1) / 2;
  std::vector<double> expect(12, static_cast<double>(one_to_n));
  expect.front() = expect.back() = -1.0;
  CHECK(whole.to_vector() == expect);
  // No elements: one call still meets the other ranks, and the next collective lines up.
  dp::tensor<float> none = dp::zeros<float>({0});
  c.all_reduce(none, dp::dist::reduce_op::sum);
  c.broadcast(none, 0);
  dp::tensor<float> one = dp::full<float>({1}, 1.f);
  c.all_reduce(one, dp::dist::reduce_op::sum);
  CHECK(one.item() == static_cast<float>(n));
}
