// An aggregate without members trains nothing.
// expect: dp: a model aggregate needs at least one member
// expect: give it a module, an nn::parameter or an nn::buffer
#include <dp/dp.hpp>

struct nothing {
  auto forward(auto x) const { return x; }
};

int main() { dp::nn::check_model<nothing>(); }
