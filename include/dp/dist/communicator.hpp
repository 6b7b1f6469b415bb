// The communicator concept: the collectives dp::parallel is written against. A local implementation
// (threads of one process, host memory), NCCL (GPUs of one process) and MPI (processes, next
// milestone) implement the same operations, so the parallel logic is written once and tested on the
// CPU in CI.
//
// Every collective is called by all ranks in the same order. Sums are taken in rank order, so a
// result never depends on timing.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include <dp/core/tensor.hpp>

namespace dp::inline DP_ABI::dist {

enum class reduce_op : std::uint8_t { sum, mean, max, min };

/// Options shared by communicators.
struct communicator_options {
  /// A collective that waits longer than this for another rank fails with dp::runtime_error naming
  /// the collective, instead of hanging forever.
  std::chrono::milliseconds timeout{std::chrono::minutes(5)};
};

// clang-format off
template <class C>
concept communicator = requires(C& c, tensor<float>& t, const tensor<float>& in, int root) {
  { c.rank() } -> std::convertible_to<int>;
  { c.size() } -> std::convertible_to<int>;
  { c.name() } -> std::convertible_to<std::string>;
  c.all_reduce(t, reduce_op::sum);       // in place, the same result on every rank
  c.broadcast(t, root);                  // root's values to every rank
  c.all_gather(in, t);                   // t = concatenation of every rank's `in` (equal sizes)
  c.reduce_scatter(in, t, reduce_op::sum);  // t = rank r's chunk of the reduction of every `in`
  c.barrier();
};
// clang-format on

}  // namespace dp::inline DP_ABI::dist
