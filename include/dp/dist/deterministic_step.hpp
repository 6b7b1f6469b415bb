// The deterministic mode's step for dp::parallel (parallel_options::deterministic): every replica
// computes its whole chunks of the batch one by one, each from the step's buffers and step counter,
// and folds them into nodes of the fixed tree; then the nodes of every replica and rank are summed
// by that tree (dist/deterministic.hpp) into every replica's gradients, mean-policy buffers and loss.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include <dp/core/replica_access.hpp>
#include <dp/core/tensor.hpp>
#include <dp/dist/any_communicator.hpp>
#include <dp/dist/buffer_sync.hpp>
#include <dp/dist/communicator.hpp>
#include <dp/dist/deterministic.hpp>
#include <dp/dist/ranks.hpp>
#include <dp/dist/replica_group.hpp>
#include <dp/dist/scatter.hpp>
#include <dp/exec/factory.hpp>
#include <dp/exec/fp_env.hpp>
#include <dp/nn/loss.hpp>
#include <dp/nn/trainer.hpp>
#include <dp/nn/trainer_access.hpp>

namespace dp::inline DP_ABI::dist::detail {

/// Where a step's samples sit: this rank's count, the global batch, and this rank's first sample in it.
struct step_batch {
  std::uint64_t step = 0;  ///< the step's number, for error messages
  index_t local = 0, global = 0, offset = 0;
  /// For a mean over the rows the loss scores (nn::detail::mean_over_scored_rows): the global
  /// batch's count of them; else 0.
  index_t scored = 0;

  /// The weight in the global loss of a part of `rows` rows: its share of the rows for a mean, 1
  /// for a sum, and 1 / the scored count for a mean over scored rows (each part is then a sum).
  template <class T>
  T scale(bool mean, index_t rows) const {
    if (scored > 0) {
      return static_cast<T>(1.0 / static_cast<double>(scored));
    }
    return mean ? static_cast<T>(static_cast<double>(rows) / static_cast<double>(global)) : T(1);
  }
};

/// Rows [lo, hi) of a scattered part when its argument is a tensor; any other part whole.
template <class Arg, class Part>
Part shard_rows(const Part& p, index_t lo, index_t hi) {
  if constexpr (tensor_type<Arg>) {
    return p.slice(0, lo, hi);
  } else {
    return p;
  }
}

template <class Model>
class deterministic_step {
 public:
  using T = typename nn::trainer<Model>::value_type;

  /// For the replicas of `group`, whose buffers `buffers` holds (one per replica), over the
  /// scatter plan and global batch of the dp::parallel that owns all four.
  deterministic_step(replica_group<Model>& group, std::vector<replica_buffers>& buffers, dp::detail::scatter_plan& plan,
                     const global_batch& batch, index_t chunk)
      : group_(group), buffers_(buffers), plan_(plan), batch_(batch), chunk_(chunk) {
    const index_t params = dp::detail::trainer_access::flat_grads(group_[0]).numel();
    for (int i = 0; i < group_.size(); ++i) {
      chunks_.emplace_back(params, buffers_[static_cast<std::size_t>(i)]);
    }
    tree_.emplace(params, chunks_[0].extras());
  }

  /// One training step on `args` (this rank's samples, as `at` places them): every replica's
  /// gradients, mean buffers and loss are the tree's sums. Returns the global loss, the same on
  /// every replica and rank. A failure leaves every replica's buffers and step count as they were,
  /// and no replica's gradients count.
  template <class Loss, class... Args>
  double operator()(const Loss& loss, const step_batch& at, const Args&... args) {
    const index_t c = chunk_;
    // Every rank checks every rank's share (the counts were gathered), so all refuse together.
    const int odd = group_.world_size() > 1 ? batch_.first_unaligned(c) : -1;
    DP_CHECK(odd < 0, value_error, "dp: parallel: the deterministic mode computes whole chunks of ", c,
             " samples, but rank ", odd, "'s share of the global batch of ", at.global,
             " is not whole chunks: make the loader with {.align = ", c, "} (parallel_options::chunk)");
    plan_.split(at.local, c);
    const index_t chunks = at.global / c + (at.global % c != 0);  // c may be as large as INT64_MAX
    const bool mean = nn::detail::reduction_of(loss) == nn::reduction::mean;
    decltype(auto) part_loss = nn::detail::part_loss(loss, at.scored > 0);
    const bool training = group_[0].training();
    auto& parts = plan_.scatter(args...);
    const std::uint64_t before = at.step - 1;
    for (int i = 0; i < group_.size(); ++i) {  // no replica undoes an earlier step
      dp::detail::trainer_access::forget_step(group_[i]);
    }
    if (training) {  // every chunk starts from these; a failed step puts them back
      for (auto& b : buffers_) {
        b.save();
      }
    }
    auto job = [&](int i) {
      auto& r = group_[i];
      auto& kept = chunks_[static_cast<std::size_t>(i)];
      auto& buffers = buffers_[static_cast<std::size_t>(i)];
      kept.clear(chunks);
      const index_t first = plan_.begin(i), last = plan_.begin(i + 1);
      if (first == last) {  // no chunks here, but the sums write this replica's buffers too
        dp::detail::trainer_access::arm_undo(r);
      }
      for (index_t a = first; a < last; a += c) {
        const index_t b = std::min(last, a + c);
        if (training) {
          buffers.restore();
        }
        dp::detail::replica_access::restore_steps(r, before);
        dp::detail::replica_access::set_gradients(r, nn::grad_state::none);
        const double share = static_cast<double>(b - a) / static_cast<double>(at.global);
        const T scale = at.scale<T>(mean, b - a);
        const double l = dp::detail::on_shard(i, a, b, args..., [&] {
          return [&]<std::size_t... K>(std::index_sequence<K...>) {
            return dp::detail::trainer_access::step_grads(
                r, part_loss, false, scale, at.offset + a, nullptr,
                shard_rows<Args>(std::get<K>(parts[static_cast<std::size_t>(i)]), a - first, b - first)...);
          }(std::index_sequence_for<Args...>{});
        });
        kept.keep(dp::detail::trainer_access::flat_grads(r), training ? &buffers : nullptr, share,
                  static_cast<double>(scale) * l, (at.offset + a) / c, b == last);
      }
      dp::detail::replica_access::restore_steps(r, before + 1);
    };
    const dp::detail::scattered_parts_scope<decltype(parts)> let_go{parts};
    const context_scope context("deterministic sums", at.step);
    any_communicator* world = group_.world_size() > 1 ? group_.world() : nullptr;
    try {
      if (group_.on_host()) {
        group_.each(job, group_.size());  // no collectives inside: tasks any free worker may take
      } else {
        group_.run(job, false);  // its chunks meet no other replica
      }
      return sum(chunks, world);
    } catch (...) {
      if (world != nullptr) {  // local replicas fail in their gather now; other processes at the timeout
        world->abort(dp::detail::concat("rank ", group_.world_rank(), " failed in step ", at.step));
        world->recover();
      }
      // The model as it was: the replicas that finished their chunks changed buffers and counters.
      for (int i = 0; i < group_.size(); ++i) {
        if (training) {
          buffers_[static_cast<std::size_t>(i)].restore();
        }
        dp::detail::replica_access::restore_steps(group_[i], before);
        dp::detail::replica_access::set_gradients(group_[i], nn::grad_state::none);
      }
      throw;
    }
  }

 private:
  /// Every replica's and rank's nodes through the tree, into every replica's gradients, mean
  /// buffers and loss; the other buffers take rank 0's replica 0's values. Returns the global loss.
  double sum(index_t chunks, any_communicator* world) {
    // Flushed as the chunks were, whoever adds: the tree's tasks, this thread, MPI's sum of two nodes.
    const dp::detail::host_fp_scope fp;
    nodes_.clear();
    for (const auto& k : chunks_) {
      nodes_.insert(nodes_.end(), k.nodes().begin(), k.nodes().end());
    }
    ranks_.clear();
    if (world != nullptr) {
      batch_.for_each_share([&](index_t first, index_t count) {
        const index_t end = (first + count) / chunk_ + ((first + count) % chunk_ != 0);
        ranks_.push_back({count == 0 ? end : first / chunk_, end});  // an empty share holds no chunk
      });
    }
    const bool host = group_.on_host();
    if (outs_.empty()) {  // every replica's gradients on the host, or one staging copy for GPUs
      for (int i = 0; i < (host ? group_.size() : 1); ++i) {
        outs_.push_back(host ? tensor<T>(dp::detail::trainer_access::flat_grads(group_[i]))
                             : empty<T>({dp::detail::trainer_access::flat_grads(group_[0]).numel()}));
      }
    }
    auto each = [&](auto& task, int tasks) { group_.each(task, tasks); };
    const double* sums =
        tree_->reduce(nodes_, chunks, ranks_, group_.world_rank(), world, outs_, each, group_.max_tasks());
    const bool training = group_[0].training();
    if (world != nullptr && training) {
      buffers_[0].broadcast_others(*world, 0);
    }
    for (int i = 0; i < group_.size(); ++i) {
      auto& r = group_[i];
      if (!host) {
        tensor<T>(dp::detail::trainer_access::flat_grads(r))
            .assign(outs_[0].to(group_.devices()[static_cast<std::size_t>(i)]));
      }
      if (training) {
        buffers_[static_cast<std::size_t>(i)].set_means(sums);
        if (i > 0) {
          buffers_[static_cast<std::size_t>(i)].take_others(buffers_[0]);
        }
      }
      dp::detail::replica_access::set_gradients(r, nn::grad_state::complete);
    }
    return sums[chunks_[0].extras() - 1];
  }

  replica_group<Model>& group_;
  std::vector<replica_buffers>& buffers_;
  dp::detail::scatter_plan& plan_;
  const global_batch& batch_;
  index_t chunk_;
  std::vector<replica_chunks<T>> chunks_;  // each replica's chunks, folded into nodes
  std::optional<chunk_tree<T>> tree_;      // the tree that sums them
  std::vector<tree_node<T>> nodes_;        // its inputs: every replica's nodes
  std::vector<chunk_range> ranks_;         // every rank's chunks
  std::vector<tensor<T>> outs_;            // where the sums go: the replicas' gradients, or a host copy for GPUs
};

}  // namespace dp::inline DP_ABI::dist::detail
