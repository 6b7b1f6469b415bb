// The examples' progress display: a bar redrawn in place on a terminal, one plain line per epoch
// otherwise.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <unistd.h>

namespace example {

/// Progress of one epoch: call update() after each step and finish() at the end.
class progress {
 public:
  progress(int epoch, int epochs, long long steps, long long samples_per_epoch, bool shown = true)
      : shown_(shown),
        epoch_(epoch),
        epochs_(epochs),
        steps_(steps),
        samples_(samples_per_epoch),
        tty_(::isatty(STDOUT_FILENO) != 0),
        start_(clock::now()) {}

  void update(long long step, double loss) {
    loss_sum_ += loss;
    done_ = step + 1;
    if (!tty_ || !shown_) {
      return;
    }
    const auto now = clock::now();
    if (done_ < steps_ && now - last_draw_ < std::chrono::milliseconds(50)) {
      return;
    }
    last_draw_ = now;
    draw(-1);
  }

  /// Ends the epoch's line with the evaluation accuracy.
  void finish(double accuracy) {
    if (!shown_) {
      return;
    }
    if (tty_) {
      draw(accuracy);
      std::printf("\n");
    } else {
      const double s = seconds();
      std::printf("epoch %d/%d  loss %.4f  accuracy %.2f%%  %.0f samples/s  %.3f s\n", epoch_ + 1, epochs_,
                  loss_sum_ / static_cast<double>(done_ ? done_ : 1), accuracy * 100, rate(s), s);
    }
    std::fflush(stdout);
  }

 private:
  using clock = std::chrono::steady_clock;
  double seconds() const { return std::chrono::duration<double>(clock::now() - start_).count(); }
  double rate(double s) const { return s > 0 ? static_cast<double>(samples_) * done_ / steps_ / s : 0; }

  void draw(double accuracy) {
    constexpr int width = 24;
    const int filled = static_cast<int>(width * done_ / (steps_ ? steps_ : 1));
    const double s = seconds();
    const double eta = done_ ? s / done_ * (steps_ - done_) : 0;
    std::string bar(static_cast<std::size_t>(filled), '#');
    bar.resize(width, '.');
    std::printf("\repoch %2d/%d [%s] loss %.4f", epoch_ + 1, epochs_, bar.c_str(),
                loss_sum_ / static_cast<double>(done_ ? done_ : 1));
    if (accuracy >= 0) {
      std::printf("  accuracy %6.2f%%", accuracy * 100);
    }
    std::printf("  %7.0f samples/s  ETA %.2f s   ", rate(s), eta);
    std::fflush(stdout);
  }

  bool shown_;  // false on the ranks that are not the leader
  int epoch_, epochs_;
  long long steps_, samples_, done_ = 0;
  double loss_sum_ = 0;
  bool tty_;
  clock::time_point start_, last_draw_{};
};

}  // namespace example
