// A pitfall of tracing (torch.jit.trace has it; eager PyTorch does not): forward reads a value from
// outside the model, here a global temperature, and the program changes it between steps. A trainer
// traces a step once and replays it, so the replay keeps the temperature it saw, silently.
// The fix is to keep the value in the model (a setting listed in dp_settings, or an nn::buffer) or
// to pass it as an argument. check_trace(true), a debug mode, finds the mistake: each replayed step
// is traced again and the two losses must agree bit for bit.
#include <cstdio>
#include <string>

#include <dp/dp.hpp>

namespace nn = dp::nn;

float temperature = 1.f;  // read by forward, owned by no model

struct scaled_classifier {
  nn::linear<8, 3> fc;
  auto forward(auto x) const { return fc(x) / temperature; }
};

int main() {
  const auto x = dp::randn<float>({16, 8}, dp::cpu(), 1);
  const auto y = dp::zeros<std::int64_t>({16});
  nn::trainer<scaled_classifier> t{scaled_classifier{}};
  const double first = t.backward(nn::cross_entropy, x, y);
  temperature = 4.f;
  const double replayed = t.backward(nn::cross_entropy, x, y);  // still divides by 1
  std::printf("loss %f, and %f after the temperature changed: the replay kept the traced value\n", first, replayed);

  t.check_trace(true);
  try {
    (void)t.backward(nn::cross_entropy, x, y);
  } catch (const dp::value_error& e) {
    std::printf("with check_trace: %s\n", e.what());
    return first == replayed && std::string(e.what()).find("check_trace: step 3") != std::string::npos ? 0 : 1;
  }
  return 1;  // the check missed the change
}
