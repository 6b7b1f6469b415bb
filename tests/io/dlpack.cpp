#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace dl = dp::io::dlpack;

TEST_CASE("to_dlpack shares memory and describes shape, strides and dtype; the deleter frees it") {
  auto t = dp::arange<float>(0, 12).reshape({3, 4});
  const auto view = t.transpose(0, 1);  // strides (1, 4): exported as they are, no copy
  {
    dl::DLManagedTensor* e = dl::to_dlpack(view);
    const dl::DLTensor& d = e->dl_tensor;
    CHECK(d.data == static_cast<void*>(t.data()));
    CHECK(d.ndim == 2);
    CHECK(d.shape[0] == 4);
    CHECK(d.shape[1] == 3);
    CHECK(d.strides[0] == 1);
    CHECK(d.strides[1] == 4);
    CHECK(d.dtype.code == dl::kDLFloat);
    CHECK(d.dtype.bits == 32);
    CHECK(d.device.device_type == dl::kDLCPU);
    // Round trip: the imported tensor is the same memory, with the same view.
    const auto back = dl::from_dlpack<float>(e);
    CHECK(back.data() == t.data());
    CHECK(back.shares_storage(t));  // dp's own export comes back as the same storage
    CHECK(back.shape() == dp::shape{4, 3});
    CHECK(back.to_vector() == view.to_vector());
    t[0][1] = 100.f;  // writes through the shared storage
    CHECK(back[1][0].item() == 100.f);
  }
}

TEST_CASE("from_dlpack adopts foreign memory and calls its deleter when the last tensor lets go") {
  static int deleted = 0;
  static float buffer[6] = {1, 2, 3, 4, 5, 6};
  static std::int64_t shape[2] = {2, 3};
  dl::DLManagedTensor m{};
  m.dl_tensor.data = buffer;
  m.dl_tensor.device = {dl::kDLCPU, 0};
  m.dl_tensor.ndim = 2;
  m.dl_tensor.dtype = {dl::kDLFloat, 32, 1};
  m.dl_tensor.shape = shape;
  m.dl_tensor.strides = nullptr;  // compact row-major
  m.deleter = [](dl::DLManagedTensor*) { ++deleted; };
  {
    auto t = dl::from_dlpack<float>(&m);
    CHECK(t.data() == buffer);
    CHECK(t.to_vector() == std::vector<float>{1, 2, 3, 4, 5, 6});
    auto copy = t;
    t = dp::tensor<float>{};
    CHECK(deleted == 0);
    copy = 2.f * copy;  // writes into the foreign buffer
    CHECK(buffer[5] == 12.f);
  }
  CHECK(deleted == 1);
  m.dl_tensor.dtype = {dl::kDLInt, 64, 1};
  CHECK_THROWS_WITH_AS(dl::from_dlpack<float>(&m), doctest::Contains("not the requested element type"),
                       dp::value_error);
  CHECK(deleted == 1);  // a refused tensor stays the caller's
}
