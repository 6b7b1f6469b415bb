// The MPI communicator: ranks are processes (on one machine or many), tensors are host memory.
// Every collective is started non-blocking (MPI_Iallreduce, MPI_Ibcast, ...) and then waited for
// with a deadline, so a rank that stalls or dies is an error on the others within the timeout,
// never a hang. Only in programs linked with dp::mpi (DP_HAS_MPI).
#pragma once

#include <dp/config.hpp>

#if DP_HAS_MPI
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <exception>
#include <initializer_list>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <mpi.h>

#include <dp/core/error.hpp>
#include <dp/core/tensor.hpp>
#include <dp/dist/communicator.hpp>

namespace dp::inline DP_ABI::dist {

namespace detail {

/// Elements per MPI call of a blocking all_reduce or broadcast (MPI counts in int): a larger tensor
/// goes in pieces. Tests lower it to send small tensors in several pieces.
inline index_t mpi_piece_elements = INT32_MAX;

template <class T>
MPI_Datatype mpi_type() {
  if constexpr (std::is_same_v<T, float>) {
    return MPI_FLOAT;
  } else if constexpr (std::is_same_v<T, double>) {
    return MPI_DOUBLE;
  } else {
    static_assert(std::is_same_v<T, std::int64_t>, "dp: MPI collectives take float, double or int64 tensors");
    return MPI_INT64_T;
  }
}

inline MPI_Op mpi_op(reduce_op op) {
  switch (op) {
    case reduce_op::max:
      return MPI_MAX;
    case reduce_op::min:
      return MPI_MIN;
    default:
      return MPI_SUM;  // mean: a sum, divided afterwards
  }
}

inline std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int n = 0;
  MPI_Error_string(code, text, &n);
  return std::string(text, static_cast<std::size_t>(n));
}

/// What the ranks of one process share about their MPI world: whether a collective failed (a
/// pending request can never be completed or cancelled, so the process must not finalize MPI
/// normally: the session aborts the job instead, and no rank is left waiting).
struct mpi_world_state {
  bool failed = false;
  std::string why;
  // The messages of a failed world's missing-rank probes and the answers still awaited, kept until
  // the job ends (MPI may still read or write them; a deque keeps them where they are).
  std::deque<std::int64_t> probe_sends, probe_answers;
  std::vector<MPI_Request> probe_requests;
  // The buffers of collectives that failed in flight, kept until the job ends: a late rank's
  // message may still be written into them, which must not land in another tensor's memory.
  std::vector<dp::detail::storage_ref> held;
};

/// MPI_Comm_dup with a deadline. The duplicate is a collective: a rank that never makes it (it
/// failed before, or died) would leave the others in a blocking MPI_Comm_dup for ever.
inline MPI_Comm dup_comm(MPI_Comm from, std::chrono::milliseconds timeout, mpi_world_state& state) {
  DP_CHECK(!state.failed, runtime_error, "dp: making an MPI communicator refused: an earlier collective failed (",
           state.why, ")");
  MPI_Comm out = MPI_COMM_NULL;
  MPI_Request r = MPI_REQUEST_NULL;
  const int code = MPI_Comm_idup(from, &out, &r);
  DP_CHECK(code == MPI_SUCCESS, runtime_error, "dp: MPI_Comm_idup failed: ", mpi_error_text(code));
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int done = 0;
    const int c = MPI_Test(&r, &done, MPI_STATUS_IGNORE);
    if (c == MPI_SUCCESS && done) {
      return out;
    }
    if (c != MPI_SUCCESS || std::chrono::steady_clock::now() > deadline) {
      int rank = 0, size = 0;
      MPI_Comm_rank(from, &rank);
      MPI_Comm_size(from, &size);
      state.failed = true;  // the request can never complete: the session ends the job at exit
      state.why = c != MPI_SUCCESS ? dp::detail::concat("dp: making an MPI communicator failed on rank ", rank, ": ",
                                                        mpi_error_text(c))
                                   : dp::detail::concat("dp: making an MPI communicator (a collective of all ", size,
                                                        " ranks) timed out on rank ", rank, " after ", timeout.count(),
                                                        " ms: a rank did not join (it failed before, stalled or died)");
      throw runtime_error(state.why);
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

/// An MPI communicator owned by dp: freed with the last handle (unless MPI is gone, or a
/// collective on it failed and left a request that can never complete).
struct owned_comm {
  MPI_Comm comm = MPI_COMM_NULL;
  MPI_Comm probe = MPI_COMM_NULL;  // for asking, after a timeout, which ranks are missing
  std::shared_ptr<mpi_world_state> state;
  // Collectives started on `comm`, by any handle: the number a timeout compares across ranks.
  std::int64_t sequence = 0;
  /// Takes `c`, duplicates it for the probe, and makes MPI errors on both return codes (a dead
  /// peer is then a dp error, not the default handler ending the process).
  owned_comm(MPI_Comm c, std::shared_ptr<mpi_world_state> s, std::chrono::milliseconds timeout)
      : comm(c), state(std::move(s)) {
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    probe = dup_comm(comm, timeout, *state);
    MPI_Comm_set_errhandler(probe, MPI_ERRORS_RETURN);
  }
  owned_comm(const owned_comm&) = delete;
  owned_comm& operator=(const owned_comm&) = delete;
  ~owned_comm() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized && !state->failed) {
      MPI_Comm_free(&probe);
      MPI_Comm_free(&comm);
    }
  }
};

}  // namespace detail

/// One rank's handle on an MPI communicator (a duplicate of the session's, so dp's messages never
/// meet the application's). Copies share the communicator.
class mpi_communicator {
 public:
  /// Takes ownership of `comm`.
  mpi_communicator(MPI_Comm comm, communicator_options o, std::shared_ptr<detail::mpi_world_state> state)
      : owned_(std::make_shared<detail::owned_comm>(comm, std::move(state), o.timeout)), comm_(comm), opts_(o) {
    detail::check_timeout(o, "MPI communicator");  // comm is owned already: freed if this throws
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
  }

  int rank() const noexcept { return rank_; }
  int size() const noexcept { return size_; }
  std::string name() const { return dp::detail::concat("MPI communicator (", size_, " ranks)"); }
  MPI_Comm native() const noexcept { return comm_; }
  const communicator_options& options() const noexcept { return opts_; }

  void barrier() {
    MPI_Request r = MPI_REQUEST_NULL;
    start("barrier", [&] { return MPI_Ibarrier(comm_, &r); });
    wait(r, "barrier", 0, {});
  }

  template <class T>
  void all_reduce(tensor<T>& t, reduce_op op) {
    detail::check_buffer(call_of("all_reduce"), t);
    in_pieces("all_reduce", t.numel(), {t.storage().get()}, [&](index_t at, int n, MPI_Request& r) {
      return MPI_Iallreduce(MPI_IN_PLACE, t.data() + at, n, detail::mpi_type<T>(), detail::mpi_op(op), comm_, &r);
    });
    if (op == reduce_op::mean) {
      detail::mean_from_sum(t, size_);
    }
  }

  template <class T>
  void broadcast(tensor<T>& t, int root) {
    detail::check_broadcast(call_of("broadcast"), t, root);
    in_pieces("broadcast", t.numel(), {t.storage().get()}, [&](index_t at, int n, MPI_Request& r) {
      return MPI_Ibcast(t.data() + at, n, detail::mpi_type<T>(), root, comm_, &r);
    });
  }

  template <class T>
  void all_gather(const tensor<T>& in, tensor<T>& out) {
    detail::check_all_gather(call_of("all_gather"), in, out);
    const int block = count("all_gather", in.numel(), out.numel());
    MPI_Request r = MPI_REQUEST_NULL;
    start("all_gather", [&] {
      return MPI_Iallgather(in.data(), block, detail::mpi_type<T>(), out.data(), block, detail::mpi_type<T>(), comm_,
                            &r);
    });
    wait(r, "all_gather", out.numel(), {in.storage().get(), out.storage().get()});
  }

  template <class T>
  void reduce_scatter(const tensor<T>& in, tensor<T>& out, reduce_op op) {
    detail::check_reduce_scatter(call_of("reduce_scatter"), in, out);
    const int block = count("reduce_scatter", out.numel(), in.numel());
    MPI_Request r = MPI_REQUEST_NULL;
    start("reduce_scatter", [&] {
      return MPI_Ireduce_scatter_block(in.data(), out.data(), block, detail::mpi_type<T>(), detail::mpi_op(op), comm_,
                                       &r);
    });
    wait(r, "reduce_scatter", in.numel(), {in.storage().get(), out.storage().get()});
    if (op == reduce_op::mean) {
      detail::mean_from_sum(out, size_);
    }
  }

  template <class T>
  void all_to_all(const tensor<T>& in, tensor<T>& out) {
    detail::check_all_to_all(call_of("all_to_all"), in, out);
    const int block = count("all_to_all", in.numel() / size_, in.numel());  // elements, whatever the tensors' shapes
    MPI_Request r = MPI_REQUEST_NULL;
    start("all_to_all", [&] {
      return MPI_Ialltoall(in.data(), block, detail::mpi_type<T>(), out.data(), block, detail::mpi_type<T>(), comm_,
                           &r);
    });
    wait(r, "all_to_all", out.numel(), {in.storage().get(), out.storage().get()});
  }

  /// A collective in flight, started by start_all_reduce and finished by wait (or found done by test).
  struct request {
    MPI_Request r = MPI_REQUEST_NULL;
    const char* what = "";
    index_t elements = 0;
    dp::detail::storage* buffer = nullptr;  // t's, kept by the world if the collective fails in flight
  };

  /// Starts a sum, max or min all-reduce in place and returns at once; `t` must stay untouched
  /// until wait() (communication overlaps what the caller does meanwhile).
  template <class T>
  request start_all_reduce(tensor<T>& t, reduce_op op) {
    detail::check_start_all_reduce(call_of("all_reduce"), t, op);
    request q{MPI_REQUEST_NULL, "all_reduce", t.numel(), t.storage().get()};
    start("all_reduce", [&] {
      return MPI_Iallreduce(MPI_IN_PLACE, t.data(), started_count(t.numel()), detail::mpi_type<T>(), detail::mpi_op(op),
                            comm_, &q.r);
    });
    return q;
  }
  /// Lets the collective progress; true once it is done.
  bool test(request& q) {
    int done = 1;
    if (q.r != MPI_REQUEST_NULL) {
      const int code = MPI_Test(&q.r, &done, MPI_STATUS_IGNORE);
      if (code != MPI_SUCCESS) {  // an MPI may free a failed request: it must not count as done
        hold({q.buffer});
        fail(dp::detail::concat("dp: ", q.what, detail::context_text(), " failed on rank ", rank_, ": ",
                                detail::mpi_error_text(code)));
      }
    }
    return done != 0;
  }
  /// Waits for the collective (with the timeout).
  void wait(request& q) {
    if (q.r != MPI_REQUEST_NULL) {
      wait(q.r, q.what, q.elements, {q.buffer});
    }
  }

  /// A failed MPI collective leaves a request that can never complete: the world stays failed.
  void recover() noexcept {}

  /// Marks the world failed (the session then ends the job with MPI_Abort instead of hanging in
  /// MPI_Finalize); the ranks waiting for this one time out.
  void abort(const std::string& why) {
    if (!owned_->state->failed) {
      owned_->state->failed = true;
      owned_->state->why = why;
    }
  }

 private:
  detail::call call_of(const char* what) const { return {what, size_, "MPI", dp::cpu()}; }
  /// A started all-reduce is one MPI request, whose count is an int.
  static int started_count(index_t n) {
    DP_CHECK(n <= INT32_MAX, value_error, "dp: start_all_reduce moves at most 2^31-1 elements (one MPI call), got ", n,
             "; all_reduce sends a larger tensor in pieces");
    return static_cast<int>(n);
  }
  /// A block's count, where the whole holds every rank's blocks: Open MPI indexes the whole with
  /// int arithmetic (rank x count), so the whole is what must fit.
  static int count(const char* what, index_t block, index_t whole) {
    DP_CHECK(whole <= INT32_MAX, value_error, "dp: ", what,
             ": an MPI collective moves at most 2^31-1 elements at once (every rank's blocks together), got ", whole,
             " (", block, " per rank)");
    return static_cast<int>(block);
  }
  /// Issues a collective (`issue` returns MPI's code) unless the world has failed: checked first,
  /// since a refused collective must not be started (its request would be dropped, its buffer
  /// freed, and the other ranks would go on as if this one had taken part).
  template <class Issue>
  void start(const char* what, Issue&& issue) {
    DP_CHECK(!owned_->state->failed, runtime_error, "dp: ", what, " on rank ", rank_,
             " refused: an earlier collective failed (", owned_->state->why, ")");
    const int code = issue();
    DP_CHECK(code == MPI_SUCCESS, runtime_error, "dp: ", what, " on rank ", rank_,
             " failed to start: ", detail::mpi_error_text(code));
    ++owned_->sequence;
  }
  using buffers = std::initializer_list<dp::detail::storage*>;
  /// A blocking collective of n elements as one MPI call per piece of at most mpi_piece_elements,
  /// each waited for in turn (at least one call: a collective of none still meets the other ranks).
  /// `issue(at, count, request)` starts the piece at element `at`.
  template <class Issue>
  void in_pieces(const char* what, index_t n, buffers in_flight, Issue&& issue) {
    index_t at = 0;
    do {
      const int piece = static_cast<int>(std::min(n - at, detail::mpi_piece_elements));
      MPI_Request r = MPI_REQUEST_NULL;
      try {
        start(what, [&] { return issue(at, piece, r); });
      } catch (const std::exception& e) {
        if (at == 0) {
          throw;  // nothing was sent: the ranks are still in step
        }
        // The other ranks took part in the earlier pieces: this rank's next collective would meet their next piece.
        fail(dp::detail::concat(e.what(), " (at element ", at, " of ", n, ", after earlier pieces were sent)"));
      }
      wait(r, what, n, in_flight);
      at += piece;
    } while (at < n);
  }
  /// Keeps the buffers of a collective that failed in flight with the failed world.
  void hold(buffers b) {
    for (auto* s : b) {
      owned_->state->held.emplace_back(s);
    }
  }

  /// Polls the request until it completes or the timeout passes. Spins for the first 2 ms (a
  /// collective's progress happens inside MPI_Test, and one between processes on one machine takes
  /// microseconds; a sleep costs 50 us or more), then sleeps in short slices so that a rank waiting
  /// for a slow one leaves its core to others.
  void wait(MPI_Request& r, const char* what, index_t elements, buffers in_flight) {
    const auto began = std::chrono::steady_clock::now();
    const auto deadline = began + opts_.timeout;
    const auto spin_until = began + std::chrono::milliseconds(2);
    for (int poll = 0;; ++poll) {
      int done = 0;
      const int code = MPI_Test(&r, &done, MPI_STATUS_IGNORE);
      if (code != MPI_SUCCESS) {
        hold(in_flight);
        int cls = 0;
        MPI_Error_class(code, &cls);
        fail(dp::detail::concat("dp: ", what, detail::context_text(), " (collective #", owned_->sequence, ", ",
                                elements, " elements) failed on rank ", rank_, ": ", detail::mpi_error_text(code),
                                cls == MPI_ERR_TRUNCATE ? " (a rank passed more elements than this one: every rank "
                                                          "passes the same size)"
                                                        : ""));
      }
      if (done) {
        return;
      }
      if (poll % 64 == 63) {
        const auto now = std::chrono::steady_clock::now();
        if (now < spin_until) {
          continue;
        }
        if (now > deadline) {
          const std::string context = detail::context_text();  // before the probe, which may take a while
          hold(in_flight);
          fail(dp::detail::concat("dp: ", what, context, " (collective #", owned_->sequence, ", ", elements,
                                  " elements) timed out on rank ", rank_, " of ", size_, " after ",
                                  opts_.timeout.count(), " ms; ", missing_ranks()));
        }
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
    }
  }

  /// After a timeout: which ranks are not in this collective. Every rank that times out tells every
  /// other its collective number (on the probe communicator) and listens for theirs for a short
  /// grace (a quarter of the timeout, 100 ms to 2 s): the ranks waiting with it answer with the
  /// same number at about the same moment; a stalled or dead rank does not answer at all.
  std::string missing_ranks() {
    auto& st = *owned_->state;
    const std::size_t first = st.probe_sends.size();
    st.probe_sends.push_back(owned_->sequence);
    // An answer may arrive after the grace, into memory that must still be there: the state's.
    const std::size_t answers = st.probe_answers.size();
    st.probe_answers.resize(answers + static_cast<std::size_t>(size_), -1);
    auto theirs = [&](int r) -> std::int64_t& { return st.probe_answers[answers + static_cast<std::size_t>(r)]; };
    std::vector<MPI_Request> recvs(static_cast<std::size_t>(size_), MPI_REQUEST_NULL);
    for (int r = 0; r < size_; ++r) {
      if (r != rank_) {
        st.probe_requests.emplace_back(MPI_REQUEST_NULL);
        MPI_Isend(&st.probe_sends[first], 1, MPI_INT64_T, r, 0, owned_->probe, &st.probe_requests.back());
        MPI_Irecv(&theirs(r), 1, MPI_INT64_T, r, 0, owned_->probe, &recvs[static_cast<std::size_t>(r)]);
      }
    }
    const auto grace = std::clamp(opts_.timeout / 4, std::chrono::milliseconds(100), std::chrono::milliseconds(2000));
    const auto until = std::chrono::steady_clock::now() + grace;
    int pending = size_ - 1;
    while (pending > 0 && std::chrono::steady_clock::now() < until) {
      pending = 0;
      for (auto& q : recvs) {
        int done = 1;
        if (q != MPI_REQUEST_NULL && MPI_Test(&q, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) {
          q = MPI_REQUEST_NULL;  // the peer is gone: no answer
          done = 0;
        }
        pending += done ? 0 : 1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::string silent, elsewhere;
    for (int r = 0; r < size_; ++r) {
      const std::int64_t t = theirs(r);
      if (r == rank_ || t == owned_->sequence) {
        continue;
      }
      if (t < 0) {
        silent += dp::detail::concat(silent.empty() ? "" : ", ", r);
      } else {
        elsewhere += dp::detail::concat(elsewhere.empty() ? "" : ", ", "rank ", r, " at collective #", t);
      }
    }
    // The receives still open can never be cancelled portably: they stay with the failed world.
    for (auto& q : recvs) {
      if (q != MPI_REQUEST_NULL) {
        st.probe_requests.push_back(q);
      }
    }
    if (silent.empty() && elsewhere.empty()) {
      return "every other rank is waiting in it too (a message lost in the network?)";
    }
    return dp::detail::concat("missing: ", silent.empty() ? "" : "rank(s) " + silent + " (no answer: stalled or dead)",
                              !silent.empty() && !elsewhere.empty() ? "; " : "", elsewhere);
  }
  [[noreturn]] void fail(const std::string& why) {
    abort(why);
    throw runtime_error(why);
  }

  std::shared_ptr<detail::owned_comm> owned_;
  MPI_Comm comm_;
  communicator_options opts_;
  int rank_ = 0, size_ = 1;
};

static_assert(communicator<mpi_communicator>);

}  // namespace dp::inline DP_ABI::dist
#endif
