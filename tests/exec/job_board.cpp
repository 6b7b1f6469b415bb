// job_board: how the host pool and the replica threads hand jobs to their workers.
#include <atomic>
#include <chrono>
#include <thread>

#include <doctest/doctest.h>

#include <dp/exec/job_board.hpp>

namespace {
using dp::detail::adaptive_spin;
using dp::detail::job_board;
}  // namespace

TEST_CASE("a job's word carries its task count, and each task is claimed once") {
  job_board board(8);
  CHECK(board.max_tasks() == 8);
  const auto w = board.post(3, false);
  CHECK(job_board::tasks_of(w) == 3);
  CHECK(board.claim(0, w));
  CHECK_FALSE(board.claim(0, w));
  CHECK(board.claim(2, w));
}

TEST_CASE("a worker late for a job takes nothing from the next one") {
  job_board board(4);
  const auto first = board.post(2, false);
  CHECK(board.claim(0, first));
  CHECK(board.claim(1, first));
  const auto second = board.post(2, false);
  // A thread still holding the first job's word finds every claim gone to the later job or done.
  CHECK_FALSE(board.claim(0, first));
  CHECK(board.claim(0, second));
  CHECK_FALSE(board.claim(0, first));
  CHECK_FALSE(board.claim(1, first));
  CHECK(board.claim(1, second));
}

TEST_CASE("next waits for a job later than the one the worker took, and skips to the latest") {
  job_board board(4, std::chrono::nanoseconds(0));
  adaptive_spin spin(std::chrono::nanoseconds(0));
  unsigned done = 0;
  board.post(1, false);
  const auto latest = board.post(2, false);  // posted before the worker looked: it gets this one
  CHECK(board.next(done, spin) == latest);

  std::atomic<bool> returned{false};
  std::uint64_t got = 0;
  std::thread worker([&] {
    got = board.next(done, spin);  // the job it already took must not come back
    returned = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK_FALSE(returned.load());
  const auto third = board.post(1, true);
  worker.join();
  CHECK(got == third);
}

TEST_CASE("wait_finished returns once the target count of tasks has finished on other threads") {
  job_board board(4, std::chrono::nanoseconds(0));
  const auto w = board.post(4, false);
  std::atomic<int> ran{0};
  std::thread worker([&] {
    for (int k = 0; k < 4; ++k) {
      if (board.claim(k, w)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        ++ran;
        board.finish();
      }
    }
  });
  board.wait_finished(4);
  CHECK(ran.load() == 4);
  worker.join();
  board.post(1, false);  // the count starts again from zero for the next job
  board.finish();
  board.wait_finished(1);
}

TEST_CASE("close wakes a sleeping worker, which then sees closed()") {
  job_board board(2);
  adaptive_spin spin(std::chrono::nanoseconds(0));
  std::atomic<bool> saw_closed{false};
  std::thread worker([&] {
    unsigned done = 0;
    board.next(done, spin);
    saw_closed = board.closed();
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK_FALSE(board.closed());
  board.close();
  worker.join();
  CHECK(saw_closed.load());
}

#if DP_HAS_MXCSR
TEST_CASE("a claimed task and a job of every worker run in the control bits their poster had when posting") {
  using dp::detail::read_fp_control;
  using dp::detail::write_fp_control;
  struct restore {
    unsigned was = read_fp_control();
    ~restore() { write_fp_control(was); }
  } guard;
  constexpr unsigned rounding = 0x6000u;  // MXCSR's rounding-control field
  job_board board(2, std::chrono::nanoseconds(0));

  // A task job posted flushing and rounding toward zero; the poster moves on to other bits.
  const unsigned task_bits = (guard.was & ~rounding) | dp::detail::flush_bits | 0x6000u;
  write_fp_control(task_bits);
  const auto tasks = board.post(2, false);
  write_fp_control(guard.was);
  CHECK(board.claim(1, tasks));  // the poster takes task 1: it runs in the job's bits again
  CHECK(read_fp_control() == task_bits);
  write_fp_control(guard.was);
  unsigned before = 0, in_task = 0, after_lost_claim = 0;
  std::thread worker([&] {
    before = read_fp_control();
    const bool lost = !board.claim(1, tasks);  // taken already: nothing changes on this thread
    after_lost_claim = lost ? read_fp_control() : 0;
    if (board.claim(0, tasks)) {
      in_task = read_fp_control();
    }
    board.finish();
  });
  worker.join();
  board.finish();
  board.wait_finished(2);
  CHECK(before != task_bits);
  CHECK(after_lost_claim == before);
  CHECK(in_task == task_bits);

  // A job of every worker posted rounding downward with subnormals kept: a worker's next() adopts it.
  const unsigned all_bits = (guard.was & ~(rounding | dp::detail::flush_bits)) | 0x2000u;
  write_fp_control(all_bits);
  board.post(0, false);
  write_fp_control(guard.was);
  unsigned in_job = 0;
  std::thread joiner([&] {
    write_fp_control(task_bits);  // whatever the worker ran last
    adaptive_spin spin(std::chrono::nanoseconds(0));
    unsigned done = 0;
    board.next(done, spin);
    in_job = read_fp_control();
    board.finish();
  });
  joiner.join();
  board.wait_finished(1);
  CHECK(in_job == all_bits);
}
#endif
