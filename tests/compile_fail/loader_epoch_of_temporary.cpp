// `for (auto b : data::loader{...}.epoch(0))` kept a pointer to the temporary loader, destroyed
// before the loop's first batch (a use after free). It is refused with the fix.
// expect: dp: epoch() of a temporary loader: the range would read the loader after it is destroyed
#include <dp/dp.hpp>

int main() {
  namespace data = dp::data;
  const data::tensor_dataset<float, std::int64_t> d{dp::zeros<float>({4, 2}), dp::zeros<std::int64_t>({4})};
  for (auto [x, y] : data::loader{d, {.batch = 2}}.epoch(0)) {
    (void)x;
    (void)y;
  }
}
