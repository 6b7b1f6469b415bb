// The loader: batches of a dataset in an order derived from (seed, epoch), made when the loop asks
// or prefetched on a background thread (loader_options::prefetch).
//
//   dp::data::loader loader{train, {.batch = 32, .shuffle = true, .seed = 7}};
//   for (int epoch = 0; epoch < 30; ++epoch)
//     for (auto [x, y] : loader.epoch(epoch)) { ... }
//
// The epoch is an argument, not state, so there is nothing to forget between epochs (PyTorch's
// DistributedSampler.set_epoch), and resuming is loader.epoch(e, first_batch). A rank-sharded loader
// is the same type constructed with a dp::dist::session (or a rank_share): each rank then takes its
// share of every global batch, and every rank sees the same number of batches.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <ranges>
#include <span>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include <dp/data/dataset.hpp>

namespace dp::inline DP_ABI::data {

/// Which share of every global batch a loader yields: rank `rank` of `ranks` takes a contiguous
/// part of each batch (the first batch % ranks ranks one sample more), so the union over ranks is
/// exactly the single-process batch. dp::dist::session converts to it.
struct rank_share {
  int rank = 0;
  int ranks = 1;
  /// Checks that every rank passes the same values (a collective, set by dp::dist::session) and
  /// otherwise throws, on every rank, naming the first that differs and the ranks. The loader calls
  /// it once at construction, before any training collective; null in one process.
  std::function<void(std::span<const std::int64_t> values, std::span<const char* const> names)> agree;
};

/// Elements [begin, end) of part `i` when `n` elements are split into `parts` contiguous parts, the
/// first n % parts of them one element larger.
inline std::pair<index_t, index_t> even_part(index_t n, index_t i, index_t parts) {
  DP_CHECK(n >= 0 && parts >= 1 && i >= 0 && i < parts, value_error, "dp: even_part: part ", i, " of ", parts,
           " parts of ", n, " elements (expected n >= 0, parts >= 1 and 0 <= i < parts)");
  const index_t base = n / parts, extra = n % parts;
  const index_t begin = i * base + std::min(i, extra);
  return {begin, begin + base + (i < extra ? 1 : 0)};
}

/// Like even_part, in whole units of `unit` elements (the last unit may be short): part i's
/// elements [begin, end). dp::parallel's deterministic mode shards batches in its chunks.
inline std::pair<index_t, index_t> aligned_part(index_t n, index_t i, index_t parts, index_t unit) {
  DP_CHECK(unit >= 1, value_error, "dp: aligned_part: unit must be positive, got ", unit);
  const auto [ub, ue] = even_part(n / unit + (n % unit != 0 ? 1 : 0), i, parts);  // n + unit - 1 could overflow
  const auto at = [&](index_t u) { return u >= n / unit + 1 ? n : std::min(n, u * unit); };  // u * unit too
  return {at(ub), at(ue)};
}

struct loader_options {
  index_t batch = 32;
  bool shuffle = false;
  std::uint64_t seed = 0;
  bool drop_last = false;  ///< training loaders may drop a last partial batch; evaluation ones must not
  /// Batches prepared ahead on a background thread (0: none, each made when the loop asks). For a
  /// dataset whose get() is slow (decoding, disk). An in-memory batch is a copy of a few kilobytes,
  /// made faster than a thread hands it over: the digits job took 0.154 s with 2, 0.122 s with 0.
  int prefetch = 0;
  /// Rank shares are whole units of this many samples (dp::parallel's deterministic mode needs its
  /// chunk size here, parallel_options::chunk); 1: shares differ by at most one sample.
  index_t align = 1;
};

template <dataset D>
class loader {
 public:
  // Held by value in the prefetch ring (a get() returning a reference or a const value is copied).
  using batch_type = std::remove_cvref_t<decltype(std::declval<const D&>().get(std::span<const index_t>{}))>;

  loader(D data, loader_options o = {}, rank_share share = {}) : data_(std::move(data)), o_(o), share_(share) {
    // This rank's own mistakes (a prefetch out of range, a size() that throws) still let it take
    // part in the ranks' agreement: refused alone, it left the others waiting for it until the timeout.
    std::exception_ptr own;
    try {
      n_ = size_or_negative(data_);
      check_options();
    } catch (...) {
      own = std::current_exception();
    }
    if (share_.agree) {
      // Ranks whose loaders would yield different batch counts would hang in their first unmatched
      // collective: they are refused here instead.
      std::int64_t contents = 0;  // the same on every rank where the dataset has no fingerprint()
      if constexpr (requires { data_.fingerprint(); }) {
        try {
          contents = static_cast<std::int64_t>(data_.fingerprint());
        } catch (...) {
          own = own ? own : std::current_exception();
        }
      }
      const std::int64_t values[] = {n_,       o.batch,     o.shuffle, static_cast<std::int64_t>(o.seed),
                                     contents, o.drop_last, o.align,   own ? 0 : 1};
      const char* const names[] = {"dataset size",
                                   "batch",
                                   "shuffle",
                                   "seed",
                                   "dataset fingerprint() (a checksum of its samples)",
                                   "drop_last",
                                   "align",
                                   "options in range (1: yes, 0: no; its own error says which)"};
      auto agree = std::exchange(share_.agree, nullptr);  // it may refer to the session; it is needed only here
      try {
        agree(values, names);
      } catch (...) {
        if (!own) {
          throw;
        }
      }
    }
    if (own) {
      std::rethrow_exception(own);
    }
    // Every epoch would be empty: a training loop that runs and learns nothing. (After the ranks'
    // agreement: ranks that differ are refused there together, none waiting for another.)
    DP_CHECK(!o.drop_last || n_ >= o.batch, value_error, "dp: loader: drop_last with ", n_, " samples and batch ",
             o.batch, " drops every sample (no batch is full); use a batch of at most ", n_, " or drop_last = false");
  }

  const D& data() const noexcept { return data_; }
  const loader_options& options() const noexcept { return o_; }
  const rank_share& share() const noexcept { return share_; }
  /// Batches per epoch (global batches: the same number on every rank).
  index_t batches() const noexcept {
    const index_t n = n_;
    return n / o_.batch + (!o_.drop_last && n % o_.batch != 0 ? 1 : 0);  // n + batch - 1 could overflow
  }

  /// The sample order of an epoch: a permutation derived from (seed, epoch), or 0..n-1.
  std::vector<index_t> order(std::int64_t epoch) const {
    check_epoch(epoch);
    if (!o_.shuffle) {
      std::vector<index_t> p(static_cast<std::size_t>(n_));
      for (index_t i = 0; i < n_; ++i) {
        p[static_cast<std::size_t>(i)] = i;
      }
      return p;
    }
    return permutation(n_, o_.seed, 0xE90C0000ull + static_cast<std::uint64_t>(epoch));
  }

  class iterator;
  struct sentinel {};

  /// One epoch's batches, starting at batch `first` (for resuming). A view: `train.epoch(e) |
  /// std::views::take(10)` is its first ten batches.
  class epoch_range : public std::ranges::view_interface<epoch_range> {
   public:
    iterator begin() const { return iterator(l_, e_, first_); }
    sentinel end() const { return {}; }
    index_t size() const { return l_->batches() - first_; }

   private:
    friend class loader;  // made by epoch(), which checks e and first
    epoch_range(const loader* l, std::int64_t e, index_t first) : l_(l), e_(e), first_(first) {}

    const loader* l_;
    std::int64_t e_;
    index_t first_;
  };

  epoch_range epoch(std::int64_t e, index_t first_batch = 0) const& {
    check_epoch(e);
    DP_CHECK(first_batch >= 0 && first_batch <= batches(), value_error, "dp: loader: first batch ", first_batch,
             " is outside [0, ", batches(), "]");
    return {this, e, first_batch};
  }
  /// Refused: a range-for keeps the range alive, not the temporary loader it reads.
  template <class Self = loader>
  epoch_range epoch(std::int64_t e, index_t first_batch = 0) const&& {
    static_assert(sizeof(Self) == 0,
                  "dp: epoch() of a temporary loader: the range would read the loader after it is destroyed (a "
                  "range-for keeps only the range alive); name the loader first: `data::loader train{...}; for (auto "
                  "[x, y] : train.epoch(e))`");
    return {this, e, first_batch};
  }

  /// Prepares batches [next, count) in order; with prefetch, on a background thread, which refers
  /// to it: it stays where it was made (the iterator holds it by pointer, so that it moves).
  class producer {
   public:
    producer(const loader* l, std::int64_t e, index_t first)
        : l_(l), order_(l->order(e)), next_(first), count_(l->batches()) {
      if (l_->o_.prefetch > 0 && next_ < count_) {
        ring_.resize(static_cast<std::size_t>(l_->o_.prefetch));
        worker_ = std::thread([this] { produce(); });
      }
      try {
        advance();
      } catch (...) {  // no destructor runs for a constructor that throws: stop the worker here
        stop();
        throw;
      }
    }

    producer(const producer&) = delete;
    producer& operator=(const producer&) = delete;
    ~producer() { stop(); }

    const std::optional<batch_type>& current() const noexcept { return current_; }
    index_t position() const noexcept { return next_ + pos_ - 1; }

   private:
    batch_type make(index_t k) const {
      const index_t b = l_->o_.batch, n = static_cast<index_t>(order_.size());
      const index_t first = k * b, last = std::min(n, first + b);
      const auto [from, to] = aligned_part(last - first, l_->share_.rank, l_->share_.ranks, l_->o_.align);
      const index_t lo = first + from, hi = first + to;  // this rank's share of global batch k
      return l_->data_.get(
          std::span<const index_t>(order_).subspan(static_cast<std::size_t>(lo), static_cast<std::size_t>(hi - lo)));
    }

    void stop() noexcept {
      {
        std::lock_guard lock(m_);
        stop_ = true;
      }
      cv_.notify_all();
      if (worker_.joinable()) {
        worker_.join();
      }
    }

    void produce() {
      try {
        for (index_t k = next_; k < count_; ++k) {
          batch_type b = make(k);
          std::unique_lock lock(m_);
          cv_.wait(lock, [&] { return stop_ || filled_ < ring_.size(); });
          if (stop_) {
            return;
          }
          ring_[(head_ + filled_) % ring_.size()] = std::move(b);
          ++filled_;
          cv_.notify_all();
        }
      } catch (...) {
        std::lock_guard lock(m_);
        error_ = std::current_exception();
        cv_.notify_all();
      }
    }

   public:
    /// Makes (or takes from the ring) the next batch; none after the last.
    void advance() {
      current_.reset();
      if (pos_ + next_ >= count_ && ring_.empty()) {
        return;
      }
      if (ring_.empty()) {  // no prefetch
        if (next_ + pos_ < count_) {
          current_ = make(next_ + pos_);
          ++pos_;
        }
        return;
      }
      if (next_ + pos_ >= count_) {
        return;
      }
      std::unique_lock lock(m_);
      cv_.wait(lock, [&] { return filled_ > 0 || error_; });
      if (filled_ == 0) {  // the batches made before a failure are delivered first
        std::rethrow_exception(error_);
      }
      current_ = std::move(*ring_[head_]);
      ring_[head_].reset();
      head_ = (head_ + 1) % ring_.size();
      --filled_;
      ++pos_;
      cv_.notify_all();
    }

   private:
    const loader* l_;
    std::vector<index_t> order_;
    index_t next_, count_, pos_ = 0;
    std::optional<batch_type> current_;
    std::vector<std::optional<batch_type>> ring_;
    std::size_t head_ = 0, filled_ = 0;
    bool stop_ = false;
    std::exception_ptr error_;
    std::mutex m_;
    std::condition_variable cv_;
    std::thread worker_;
  };

  /// An input iterator over one epoch's batches (std::input_iterator: ranges and views take it).
  class iterator {
   public:
    using iterator_concept = std::input_iterator_tag;
    using value_type = batch_type;
    using difference_type = std::ptrdiff_t;

    iterator(iterator&&) noexcept = default;
    iterator& operator=(iterator&&) noexcept = default;

    const batch_type& operator*() const { return *p_->current(); }
    iterator& operator++() {
      p_->advance();
      return *this;
    }
    void operator++(int) { p_->advance(); }
    friend bool operator==(const iterator& i, sentinel) { return !i.p_->current().has_value(); }
    /// The index of the batch operator* returns.
    index_t position() const noexcept { return p_->position(); }

   private:
    friend class epoch_range;  // made by begin() of a checked range
    iterator(const loader* l, std::int64_t e, index_t first) : p_(std::make_unique<producer>(l, e, first)) {}

    std::unique_ptr<producer> p_;
  };

 private:
  /// The dataset's size() as a count (any integer type: a std::size_t from a vector's size()), or -1
  /// when negative or past index_t (a wrapped -1), which check_options refuses (as it does 0).
  static index_t size_or_negative(const D& d) {
    const auto n = d.size();
    using N = std::remove_cvref_t<decltype(n)>;
    if constexpr (std::is_integral_v<N> && std::is_unsigned_v<N>) {
      return n <= static_cast<std::make_unsigned_t<index_t>>(std::numeric_limits<index_t>::max())
                 ? static_cast<index_t>(n)
                 : -1;
    } else {
      return n >= 0 ? static_cast<index_t>(n) : -1;
    }
  }
  /// The rules this rank's options and dataset must meet on their own.
  static void check_epoch(std::int64_t e) {
    DP_CHECK(e >= 0, value_error, "dp: loader: epoch ", e,
             " is negative; epochs count from 0 (each one's order comes from the seed and its number)");
  }
  void check_options() const {
    DP_CHECK(o_.batch > 0, value_error, "dp: loader: batch must be positive, got ", o_.batch);
    // An empty dataset makes every epoch empty, silently: a loop that runs and learns nothing.
    DP_CHECK(n_ > 0, value_error, "dp: loader: the dataset's size() is ", data_.size(),
             "; expected a count of 1 or more samples (with none, every epoch yields no batch)");
    DP_CHECK(share_.ranks >= 1 && share_.rank >= 0 && share_.rank < share_.ranks, value_error, "dp: loader: rank ",
             share_.rank, " is not one of ", share_.ranks, " ranks");
    DP_CHECK(o_.prefetch >= 0 && o_.prefetch <= 64, value_error, "dp: loader: prefetch must lie in [0, 64], got ",
             o_.prefetch);
    DP_CHECK(o_.align >= 1, value_error, "dp: loader: align must be positive, got ", o_.align);
  }

  D data_;
  index_t n_ = -1;  // data_.size(), checked
  loader_options o_;
  rank_share share_;
};

}  // namespace dp::inline DP_ABI::data
