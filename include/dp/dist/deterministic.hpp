// The deterministic mode's sums (parallel_options::deterministic): the batch is cut into fixed
// chunks of positions (parallel_options::chunk samples each), every chunk's gradients, mean-policy
// buffers and loss are computed on their own, and the chunks are summed in one fixed binary tree
// over their positions, so the result cannot depend on which replica or rank computed which chunk.
//
// The tree over K chunks: node (a, s), s a power of two and a a multiple of s, covers chunks
// [a, min(a + s, K)); its value is its two halves' sum, or its left half's when the right half is
// empty. Two nodes that cover the same chunks have the same value, so a node is named by the chunks
// it covers. Each replica folds its chunks into nodes as they come (a binary counter), a rank
// combines its replicas' nodes into the largest nodes inside its share, each rank evaluates the
// root over its slice of the elements from every rank's nodes (an all-to-all), and the slices are
// all-gathered. Float addition is commutative, so which operand comes
// first does not matter either: the sums are plain float sums (as accurate as the default mode's),
// bitwise the same for every device count, and cost about what the default mode's sums cost.
#pragma once

#include <algorithm>
#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <utility>
#include <vector>

#include <dp/core/tensor.hpp>
#include <dp/dist/any_communicator.hpp>
#include <dp/dist/buffer_sync.hpp>
#include <dp/exec/factory.hpp>

namespace dp::inline DP_ABI::dist::detail {

/// Chunks [first, end) of the batch: a node of the tree.
struct chunk_range {
  index_t first = 0, end = 0;
  friend bool operator==(const chunk_range&, const chunk_range&) = default;
};

/// The size of the tree's root over `chunks` chunks: the least power of two that holds them.
inline index_t root_size(index_t chunks) {
  return static_cast<index_t>(std::bit_ceil(static_cast<std::uint64_t>(std::max<index_t>(chunks, 1))));
}

/// The size of the largest node that starts at chunk `first` and ends at or before `end`.
inline index_t node_size(index_t first, index_t end, index_t chunks) {
  index_t s = first == 0 ? root_size(chunks) : (first & -first);  // the largest power of two dividing first
  while (std::min(first + s, chunks) > end) {
    s /= 2;
  }
  return s;
}

/// The largest nodes that tile chunks [first, end), left to right (`out` is cleared first).
inline void tile(index_t first, index_t end, index_t chunks, std::vector<chunk_range>& out) {
  out.clear();
  while (first < end) {
    out.push_back({first, std::min(first + node_size(first, end, chunks), chunks)});
    first = out.back().end;
  }
}

/// The steps that evaluate nodes from given ones. Operand o >= 0 is given node o; o < 0 is the
/// value of step -1 - o, the sum of its operands a and b.
struct tree_program {
  struct step {
    int a = 0, b = 0;
  };
  std::vector<step> steps;
  int result = 0;

  /// Plans node `want` of the tree over `chunks` chunks from `given` (disjoint nodes that tile it).
  void plan(chunk_range want, index_t chunks, std::span<const chunk_range> given) {
    steps.clear();
    result = node(want.first, node_size(want.first, want.end, chunks), chunks, given);
  }

 private:
  int node(index_t a, index_t s, index_t chunks, std::span<const chunk_range> given) {
    const chunk_range want{a, std::min(a + s, chunks)};
    for (std::size_t i = 0; i < given.size(); ++i) {
      if (given[i] == want) {
        return static_cast<int>(i);
      }
    }
    DP_CHECK(s > 1, runtime_error, "dp: internal error: the deterministic sums lack chunk ", a);
    const index_t half = s / 2;
    if (a + half >= chunks) {
      return node(a, half, chunks, given);
    }
    const int l = node(a, half, chunks, given);
    const int r = node(a + half, half, chunks, given);
    steps.push_back({l, r});
    return -static_cast<int>(steps.size());
  }
};

/// Runs `p` over elements [lo, hi): operand o >= 0 reads given(o)[e]; the result is written to
/// out(j)[e] for j in [0, outs). `scratch` holds steps() x tree_block values. An output may be a
/// given node: every block is read before it is written.
inline constexpr index_t tree_block = 512;
template <class V, class Given, class Out>
void run_tree(const tree_program& p, Given&& given, Out&& out, int outs, index_t lo, index_t hi, V* scratch) {
  const int steps = static_cast<int>(p.steps.size());
  for (index_t b = lo; b < hi; b += tree_block) {
    const index_t n = std::min(tree_block, hi - b);
    auto at = [&](int o) -> const V* { return o >= 0 ? given(o) + b : scratch + (-1 - o) * tree_block; };
    for (int k = 0; k < steps; ++k) {
      const V* x = at(p.steps[static_cast<std::size_t>(k)].a);
      const V* y = at(p.steps[static_cast<std::size_t>(k)].b);
      V* z = scratch + k * tree_block;
      for (index_t e = 0; e < n; ++e) {
        z[e] = x[e] + y[e];
      }
    }
    const V* v = at(p.result);
    for (int j = 0; j < outs; ++j) {
      V* o = out(j) + b;
      if (o != v) {
        std::memcpy(o, v, static_cast<std::size_t>(n) * sizeof(V));
      }
    }
  }
}

/// A node a replica or rank holds: its chunks, its gradients (`params` values) and its extras (the
/// mean buffers weighted by the chunks' shares, then the loss share).
template <class T>
struct tree_node {
  chunk_range at;
  index_t size = 1;  // its power of two: at.first is a multiple of it
  T* grads = nullptr;
  double* extras = nullptr;
};

/// One replica's chunks, folded into nodes as they come.
template <class T>
class replica_chunks {
 public:
  /// `params` flat gradient values; the extras are the mean buffers of `buffers`, then the loss.
  replica_chunks(index_t params, replica_buffers& buffers) : params_(params) {
    buffers.for_each_mean([&](auto& t) { extras_ += t.numel(); });
    ++extras_;
  }

  index_t extras() const noexcept { return extras_; }

  /// Starts a step of `chunks` chunks in all.
  void clear(index_t chunks) {
    chunks_ = chunks;
    nodes_.clear();
    last_ = tensor<T>();
  }

  /// Keeps chunk k: its gradients, its mean buffers times `weight` (its share of the batch; none
  /// outside training, where forward leaves them alone), its loss share. The gradients of the
  /// replica's last chunk stay where they are (nothing overwrites them before the sums).
  void keep(const tensor<T>& grads, replica_buffers* buffers, double weight, double loss, index_t k, bool last) {
    const auto d = nodes_.size();
    if (d == extra_slots_.size()) {  // the stores grow to the deepest stack seen, once
      extra_slots_.push_back(empty<double>({extras_}));
      grad_slots_.push_back(tensor<T>());
    }
    double* x = extra_slots_[d].data();
    std::fill(x, x + extras_, 0.0);
    if (buffers != nullptr) {
      index_t at = 0;
      buffers->for_each_mean([&](auto& t) {
        const auto v = on_host(t);
        const auto* p = v.data();  // buffers are whole, contiguous tensors
        for (index_t e = 0; e < v.numel(); ++e) {
          x[at + e] = weight * static_cast<double>(p[e]);
        }
        at += v.numel();
      });
    }
    x[extras_ - 1] = loss;
    const tensor<T> host = on_host(grads);
    if (!nodes_.empty() && nodes_.back().size == 1 && nodes_.back().at.first + 1 == k && k % 2 == 1) {
      // Its left sibling is on top: add into it at once instead of copying first.
      auto& l = nodes_.back();
      add(l.grads, host.data(), params_);
      add(l.extras, x, extras_);
      l.size = 2;
      l.at.end = k + 1;
    } else {
      T* g = nullptr;
      if (last) {
        last_ = host;  // a handle on the flat gradients (or their host copy)
        g = last_.data();
      } else {
        if (!grad_slots_[d].defined()) {
          grad_slots_[d] = empty<T>({params_});
        }
        g = grad_slots_[d].data();
        std::memcpy(g, host.data(), static_cast<std::size_t>(params_) * sizeof(T));
      }
      nodes_.push_back({{k, k + 1}, 1, g, x});
    }
    fold();
  }

  /// The nodes kept: disjoint, tiling the replica's chunks.
  std::span<const tree_node<T>> nodes() const noexcept { return nodes_; }

 private:
  /// Merges the top node into its left sibling while it can: the binary counter.
  void fold() {
    const index_t root = root_size(chunks_);
    while (true) {
      auto& t = nodes_.back();
      // A left half whose right half is empty has its parent's value: name it by the parent.
      if (t.size < root && t.at.first % (2 * t.size) == 0 && t.at.first + t.size >= chunks_) {
        t.size *= 2;
        continue;
      }
      if (nodes_.size() < 2) {
        return;
      }
      auto& l = nodes_[nodes_.size() - 2];
      if (l.size != t.size || l.at.end != t.at.first || l.at.first % (2 * l.size) != 0) {
        return;
      }
      add(l.grads, t.grads, params_);  // l is never the last chunk's: that one is pushed last
      add(l.extras, t.extras, extras_);
      l.size *= 2;
      l.at.end = t.at.end;
      nodes_.pop_back();
    }
  }
  template <class V>
  static void add(V* into, const V* x, index_t n) {
    for (index_t e = 0; e < n; ++e) {
      into[e] += x[e];
    }
  }
  // On a GPU the sums run on the host: the chunks are copied there (the mode's guarantee first;
  // its speed on GPUs is not measured yet).
  template <class V>
  static tensor<V> on_host(const tensor<V>& t) {
    return t.device().is_cpu() ? t : t.to(cpu());
  }

  index_t params_ = 0, extras_ = 0, chunks_ = 0;
  std::vector<tree_node<T>> nodes_;    // a stack: the binary counter's digits
  std::vector<tensor<T>> grad_slots_;  // stack position d's gradients, unless they stay in place ...
  tensor<T> last_;                     // ... in the last chunk's flat gradients (a handle)
  std::vector<tensor<double>> extra_slots_;
};

/// The sums of every chunk of the batch, from the nodes of every replica of every rank.
template <class T>
class chunk_tree {
 public:
  chunk_tree(index_t params, index_t extras) : params_(params), extras_(extras), sums_(empty<double>({extras})) {}

  /// Evaluates the root of the tree over `chunks` chunks into every tensor of `outs` (host tensors
  /// of `params` values) and returns the extras' sums. `local`: this process's replicas' nodes.
  /// `ranks`: every rank's chunks and `rank` this one's; `world` joins the ranks (null in one
  /// process). `each(task, n)` runs task(k) for k in [0, n) on free threads (at most `tasks`).
  template <class Each>
  const double* reduce(std::span<const tree_node<T>> local, index_t chunks, std::span<const chunk_range> ranks,
                       int rank, any_communicator* world, std::span<tensor<T>> outs, Each&& each, int tasks) {
    given_.assign(local.begin(), local.end());
    ranges_.clear();
    for (const auto& g : given_) {
      ranges_.push_back(g.at);
    }
    if (world != nullptr && world->size() > 1) {
      if (pairwise(chunks, ranks)) {
        all_reduce(chunks, ranks[static_cast<std::size_t>(rank)], *world, outs, each, tasks);
        return sums_.data();
      }
      exchange(chunks, ranks, rank, *world, outs, each, tasks);
      return sums_.data();
    }
    program_.plan({0, chunks}, chunks, ranges_);
    pointers_.clear();
    for (auto& o : outs) {
      pointers_.push_back(o.data());
    }
    evaluate(program_, pointers_, each, tasks, sums_.data(), params_);
    return sums_.data();
  }

 private:
  /// Whether at most two ranks hold chunks, each as one node: the root is then one sum of two
  /// nodes (or one node), which any all-reduce computes bit for bit as the tree does, since float
  /// addition is commutative and the other ranks add -0.0 (x + -0.0 is x, signed zeros included).
  bool pairwise(index_t chunks, std::span<const chunk_range> ranks) {
    int holders = 0;
    for (const auto& r : ranks) {
      tile(r.first, r.end, chunks, tiles_);
      if (tiles_.size() > 1) {
        return false;
      }
      holders += static_cast<int>(tiles_.size());
    }
    return holders <= 2;
  }

  /// The pairwise case: this rank's node (or -0.0) all-reduced in place, in the first output.
  template <class Each>
  void all_reduce(index_t chunks, chunk_range mine, any_communicator& world, std::span<tensor<T>> outs, Each& each,
                  int tasks) {
    tensor<T>& first = outs[0];
    if (mine.first < mine.end) {
      program_.plan(mine, chunks, ranges_);
      T* out = first.data();
      evaluate(program_, std::span<T* const>(&out, 1), each, tasks, sums_.data(), params_);
    } else {
      first.fill(T(-0.0));
      sums_.fill(-0.0);
    }
    world.all_reduce(first, reduce_op::sum);
    world.all_reduce(sums_, reduce_op::sum);
    for (std::size_t j = 1; j < outs.size(); ++j) {
      std::memcpy(outs[j].data(), first.data(), static_cast<std::size_t>(params_) * sizeof(T));
    }
  }

  /// The root across ranks, rank s evaluating it over slice s of the elements: every rank
  /// evaluates its largest nodes straight into a send buffer laid out [rank s][node j][slice s] and
  /// sends each rank its block in one all-to-all (ranks with fewer nodes send unused rows), and
  /// the root's slices are all-gathered: (m + 1)(ranks - 1)/ranks of the gradient bytes per rank
  /// for m node positions, where gathering every rank's nodes took m (ranks - 1), in three
  /// collectives whatever m is. The extras (a few values) are all-gathered whole and every rank
  /// evaluates their root.
  template <class Each>
  void exchange(index_t chunks, std::span<const chunk_range> ranks, int rank, any_communicator& world,
                std::span<tensor<T>> outs, Each& each, int tasks) {
    DP_CHECK(static_cast<int>(ranks.size()) == world.size(), runtime_error, "dp: internal error: the deterministic ",
             "sums have ", ranks.size(), " ranks' shares for a world of ", world.size());
    std::size_t most = 0;
    for (const auto& r : ranks) {
      tile(r.first, r.end, chunks, tiles_);
      most = std::max(most, tiles_.size());
    }
    const auto m = static_cast<index_t>(most);
    const auto n = static_cast<index_t>(ranks.size());
    const index_t width = (params_ + n - 1) / n;  // a slice; the last ones may be shorter or empty
    if (send_.numel() != n * m * width || recv_x_.numel() != n * m * extras_) {
      send_ = zeros<T>({n * m * width});  // the padding past params_ is sent, never read
      recv_ = empty<T>({n * m * width});
      send_x_ = zeros<double>({m * extras_});
      recv_x_ = empty<double>({n * m * extras_});
      slice_ = zeros<T>({width});
      gathered_ = empty<T>({n * width});
    }
    tile(ranks[static_cast<std::size_t>(rank)].first, ranks[static_cast<std::size_t>(rank)].end, chunks, tiles_);
    for (std::size_t j = 0; j < tiles_.size(); ++j) {
      program_.plan(tiles_[j], chunks, ranges_);
      // Slice s of node j at [s][j]: the pointer for slice s, offset by its elements [s w, ...).
      T* const row = send_.data() + static_cast<index_t>(j) * width;
      auto place = [&](index_t s) { return row + s * (m - 1) * width; };
      evaluate(program_, place, width, each, tasks, send_x_.data() + static_cast<index_t>(j) * extras_);
    }
    world.all_to_all(send_, recv_);
    world.all_gather(send_x_, recv_x_);
    // Rank r's node j, for this rank's slice: block r of the receive buffer, row j.
    given_.clear();
    ranges_.clear();
    for (index_t r = 0; r < n; ++r) {
      tile(ranks[static_cast<std::size_t>(r)].first, ranks[static_cast<std::size_t>(r)].end, chunks, tiles_);
      for (std::size_t j = 0; j < tiles_.size(); ++j) {
        const auto jj = static_cast<index_t>(j);
        given_.push_back({tiles_[j], 1, recv_.data() + (r * m + jj) * width, recv_x_.data() + (r * m + jj) * extras_});
        ranges_.push_back(tiles_[j]);
      }
    }
    program_.plan({0, chunks}, chunks, ranges_);
    const index_t mine = std::clamp<index_t>(params_ - rank * width, 0, width);
    T* root = slice_.data();
    evaluate(program_, std::span<T* const>(&root, 1), each, tasks, sums_.data(), mine);
    world.all_gather(slice_, gathered_);
    for (auto& o : outs) {
      std::memcpy(o.data(), gathered_.data(), static_cast<std::size_t>(params_) * sizeof(T));
    }
  }

  /// Runs `p` over the first `elements` gradient values into `outs`, in slices that free threads
  /// take, and over the extras into `extras_out`.
  template <class Each>
  void evaluate(const tree_program& p, std::span<T* const> outs, Each& each, int tasks, double* extras_out,
                index_t elements) {
    const int slices = slice_count(elements, tasks);
    T* const* const o = outs.data();
    auto slice = [&](index_t lo, index_t hi, T* scratch) {
      run_tree<T>(
          p, [&](int g) { return given_[static_cast<std::size_t>(g)].grads; }, [&](int j) { return o[j]; },
          static_cast<int>(outs.size()), lo, hi, scratch);
    };
    run_slices(
        p, slices, [&](int k) { return std::pair{elements * k / slices, elements * (k + 1) / slices}; }, slice, each,
        extras_out);
  }
  /// Runs `p` over the gradient values into one output whose element e of slice s = e / w lies at
  /// place(s) + e, in slices of the elements that free threads take (each cut where slices meet).
  template <class Place, class Each>
  void evaluate(const tree_program& p, Place& place, index_t w, Each& each, int tasks, double* extras_out) {
    const int parts = slice_count(params_, tasks);
    auto part = [&](index_t lo, index_t hi, T* scratch) {
      if (lo >= hi) {  // no parameters (and w = 0)
        return;
      }
      for (index_t s = lo / w; s * w < hi; ++s) {
        run_tree<T>(
            p, [&](int g) { return given_[static_cast<std::size_t>(g)].grads; }, [&](int) { return place(s); }, 1,
            std::max(lo, s * w), std::min(hi, (s + 1) * w), scratch);
      }
    };
    run_slices(
        p, parts, [&](int k) { return std::pair{params_ * k / parts, params_ * (k + 1) / parts}; }, part, each,
        extras_out);
  }
  /// Slices of about `grain` elements, at least one and at most `tasks`.
  static int slice_count(index_t elements, int tasks) {
    constexpr index_t grain = 4096;
    return static_cast<int>(std::clamp<index_t>((elements + grain - 1) / grain, 1, tasks));
  }
  /// Calls work(first, last, scratch) for k in [0, parts), [first, last) = range(k), on free
  /// threads, each with its own scratch; then runs `p` over the extras into `extras_out`.
  template <class Range, class Work, class Each>
  void run_slices(const tree_program& p, int parts, const Range& range, const Work& work, Each& each,
                  double* extras_out) {
    const auto width = static_cast<index_t>(p.steps.size()) * tree_block;
    if (static_cast<index_t>(scratch_.size()) < parts * width) {  // grows to the largest program, once
      scratch_.resize(static_cast<std::size_t>(parts * width));
    }
    if (static_cast<index_t>(scratch_x_.size()) < width) {
      scratch_x_.resize(static_cast<std::size_t>(width));
    }
    auto task = [&](int k) {
      const auto [first, last] = range(k);
      work(first, last, scratch_.data() + k * width);
    };
    each(task, parts);
    run_tree<double>(
        p, [&](int o) { return given_[static_cast<std::size_t>(o)].extras; }, [&](int) { return extras_out; }, 1, 0,
        extras_, scratch_x_.data());
  }

  index_t params_ = 0, extras_ = 0;
  std::vector<tree_node<T>> given_;
  std::vector<chunk_range> ranges_, tiles_;
  std::vector<T*> pointers_;
  tree_program program_;
  std::vector<T> scratch_;
  std::vector<double> scratch_x_;
  tensor<double> sums_;
  tensor<T> send_, recv_, slice_, gathered_;  // exchange's: nodes by rank and slice, this rank's root slice, all
  tensor<double> send_x_, recv_x_;
};

}  // namespace dp::inline DP_ABI::dist::detail
