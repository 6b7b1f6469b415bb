// What the ranks of a session agree on before and during training with dp::parallel: that they
// hold the same model (checked once, the first difference named), and each step's global batch
// (every rank's sample count, gathered, so each rank knows its offset and the total).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
#include <type_traits>
#include <vector>

#include <dp/core/error.hpp>
#include <dp/core/tensor.hpp>
#include <dp/dist/any_communicator.hpp>
#include <dp/exec/factory.hpp>
#include <dp/nn/module.hpp>
#include <dp/nn/trainer.hpp>

namespace dp::inline DP_ABI::dist::detail {

/// One line per parameter and buffer (name, element type, shape) and per module setting (name),
/// after the local replica count.
template <class Model, class T>
std::string model_signature(const Model& model, const std::vector<nn::param_entry>& layout, std::size_t replicas) {
  auto type = []<class V>(const V*) {
    return std::is_same_v<V, float> ? "float" : std::is_same_v<V, double> ? "double" : "int64";
  };
  std::string sig = dp::detail::concat("local replicas ", replicas, "\n");
  for (const auto& e : layout) {
    sig += dp::detail::concat("parameter ", e.name, " ", type(static_cast<const T*>(nullptr)), " ", e.shape, "\n");
  }
  nn::for_each_buffer(model, [&](const std::string& name, const auto& b) {
    using V = typename std::remove_cvref_t<decltype(b)>::value_type;
    // The policy too: ranks that differ in it would meet a broadcast with an all-reduce.
    sig += dp::detail::concat("buffer ", name, " ", type(static_cast<const V*>(nullptr)), " ", b.shape(),
                              b.sync() == nn::buffer_sync::mean ? " mean" : " first", "\n");
  });
  // The names only: rank 0's values are broadcast (a module may list a setting conditionally).
  nn::for_each_setting(model, [&](const std::string& name, const auto&) { sig += "setting " + name + "\n"; });
  return sig;
}

/// Every rank's text, gathered on every rank (lengths first, then the bytes padded to one size).
inline std::vector<std::string> all_gather_text(any_communicator& comm, const std::string& mine) {
  const int n = comm.size();
  tensor<std::int64_t> len = full<std::int64_t>({1}, static_cast<std::int64_t>(mine.size()));
  tensor<std::int64_t> lens = empty<std::int64_t>({n});
  comm.all_gather(len, lens);
  const auto sizes = lens.to_vector();
  const std::int64_t longest = *std::max_element(sizes.begin(), sizes.end());
  const index_t words = std::max<index_t>((longest + 7) / 8, 1);
  tensor<std::int64_t> in = zeros<std::int64_t>({words});
  std::memcpy(in.data(), mine.data(), mine.size());
  tensor<std::int64_t> out = empty<std::int64_t>({words * n});
  comm.all_gather(in, out);
  std::vector<std::string> texts;
  for (int r = 0; r < n; ++r) {
    const char* p = reinterpret_cast<const char*>(out.data() + r * words);
    texts.emplace_back(p, static_cast<std::size_t>(sizes[static_cast<std::size_t>(r)]));
  }
  return texts;
}

/// The first line where rank r's text differs from rank 0's.
inline std::string first_difference(const std::string& a, const std::string& b, int r) {
  std::size_t pa = 0, pb = 0;
  for (;;) {
    const std::size_t ea = a.find('\n', pa), eb = b.find('\n', pb);
    const std::string la = ea == std::string::npos ? std::string() : a.substr(pa, ea - pa);
    const std::string lb = eb == std::string::npos ? std::string() : b.substr(pb, eb - pb);
    if (la != lb) {
      auto quoted = [](const std::string& l) { return l.empty() ? std::string("nothing") : "'" + l + "'"; };
      return dp::detail::concat("rank 0 has ", quoted(la), " where rank ", r, " has ", quoted(lb));
    }
    pa = ea + 1;
    pb = eb + 1;
  }
}

/// Throws the same error on every rank unless every rank's `text` (lines) equals rank 0's: "dp:
/// parallel: <what>: <the first difference>; <fix>".
inline void require_same_text(any_communicator& comm, const std::string& text, const char* what, const char* fix) {
  const std::vector<std::string> all = all_gather_text(comm, text);
  for (int r = 1; r < comm.size(); ++r) {
    if (all[static_cast<std::size_t>(r)] != all[0]) {
      throw value_error(dp::detail::concat("dp: parallel: ", what, ": ",
                                           first_difference(all[0], all[static_cast<std::size_t>(r)], r), "; ", fix));
    }
  }
}

/// How a rank runs a step; every rank must run it alike, since the collectives that follow depend
/// on it (buffers are synchronised in training mode only, gradients are not reduced under no_sync).
struct step_mode {
  bool forward = false;  // a training-mode par(x), not a step
  bool training = true;
  bool local_only = false;  // no_sync: gradients kept on the rank
  std::int64_t code() const noexcept { return (training ? 1 : 0) | (local_only ? 2 : 0) | (forward ? 4 : 0); }
  static std::string text(std::int64_t code) {
    if ((code & 4) != 0) {
      return "a training-mode forward (par(x))";
    }
    return dp::detail::concat("a step in ", (code & 1) != 0 ? "training" : "evaluation", " mode",
                              (code & 2) != 0 ? " under no_sync" : "");
  }
};

/// Each step's global batch: every rank's sample count, its count of rows the loss scores and its
/// step mode, gathered (buffers made once, so a steady step allocates nothing).
class global_batch {
 public:
  explicit global_batch(int ranks)
      : mine_(empty<std::int64_t>({fields})),
        counts_(empty<std::int64_t>({ranks, fields})),
        loss_(empty<double>({1})) {}

  /// Learns the global batch from this rank's `n` samples, `scored` of which the loss scores (a
  /// collective). Ranks in different step modes are a value_error on every rank, before any
  /// collective they would not line up in.
  void exchange(any_communicator& comm, index_t n, index_t scored, step_mode mode) {
    mine_.data()[0] = n;
    mine_.data()[1] = scored;
    mine_.data()[2] = mode.code();
    comm.all_gather(mine_, counts_);
    const std::int64_t* counts = counts_.data();
    for (int r = 1; r < comm.size(); ++r) {
      const std::int64_t theirs = counts[fields * r + 2];
      DP_CHECK(theirs == counts[2], value_error, "dp: parallel: rank 0 runs ", step_mode::text(counts[2]), " and rank ",
               r, " runs ", step_mode::text(theirs),
               "; every rank must make the same calls (backward or par(x)) in the same mode (train() or eval(), "
               "no_sync alike): the collectives that follow differ, and the ranks would wait in different ones");
    }
    total_ = scored_ = 0;
    for (int r = 0; r < comm.size(); ++r) {
      if (r == comm.rank()) {
        offset_ = total_;
      }
      total_ += counts[fields * r];
      scored_ += counts[fields * r + 1];
    }
  }
  index_t total() const noexcept { return total_; }
  /// The rows of the global batch that the loss scores.
  index_t scored() const noexcept { return scored_; }
  /// The first rank whose share is not whole units of `unit` samples (the last share may end the
  /// batch with a short one, and an empty share is whole), or -1; the same answer on every rank.
  int first_unaligned(index_t unit) const {
    int r = 0, bad = -1;
    for_each_share([&](index_t at, index_t count) {
      if (bad < 0 && count > 0 && (at % unit != 0 || (count % unit != 0 && at + count != total_))) {
        bad = r;
      }
      ++r;
    });
    return bad;
  }
  /// Calls f(first, count) for every rank's share of the global batch, in rank order.
  template <class F>
  void for_each_share(F&& f) const {
    const std::int64_t* counts = counts_.data();
    index_t at = 0;
    for (index_t r = 0; r < counts_.shape()[0]; ++r) {
      f(at, counts[fields * r]);
      at += counts[fields * r];
    }
  }
  /// This rank's first sample in the global batch.
  index_t offset() const noexcept { return offset_; }

  /// The sum over ranks of `part` (each rank's share of the loss).
  double sum(any_communicator& comm, double part) {
    loss_.fill(part);
    comm.all_reduce(loss_, reduce_op::sum);
    return loss_.item();
  }

 private:
  static constexpr index_t fields = 3;  // samples, scored rows, step mode
  tensor<std::int64_t> mine_, counts_;
  tensor<double> loss_;
  index_t total_ = 0, scored_ = 0, offset_ = 0;
};

}  // namespace dp::inline DP_ABI::dist::detail
