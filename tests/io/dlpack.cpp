#include <doctest/doctest.h>

#include <dp/dp.hpp>

namespace dl = dp::io::dlpack;

namespace {
/// A producer's description of float memory: compact row-major unless strides are set after.
dl::DLManagedTensor floats_at(float* data, dl::device_type device, std::int64_t* shape, int ndim,
                              void (*deleter)(dl::DLManagedTensor*) = nullptr) {
  dl::DLManagedTensor m{};
  m.dl_tensor.data = data;
  m.dl_tensor.device = {device, 0};
  m.dl_tensor.ndim = ndim;
  m.dl_tensor.dtype = {dl::kDLFloat, 32, 1};
  m.dl_tensor.shape = shape;
  m.dl_tensor.strides = nullptr;
  m.deleter = deleter;
  return m;
}
}  // namespace

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
  dl::DLManagedTensor m = floats_at(buffer, dl::kDLCPU, shape, 2, [](dl::DLManagedTensor*) { ++deleted; });
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

TEST_CASE("a second import of a tensor dp owns is refused: its deleter would run twice") {
  static int deleted = 0;
  static float buffer[3] = {1, 2, 3};
  static std::int64_t shape[1] = {3};
  dl::DLManagedTensor m = floats_at(buffer, dl::kDLCPU, shape, 1, [](dl::DLManagedTensor*) { ++deleted; });
  {
    const auto t = dl::from_dlpack<float>(&m);
    CHECK_THROWS_WITH_AS(dl::from_dlpack<float>(&m), doctest::Contains("is imported already and dp owns it"),
                         dp::value_error);
    CHECK(deleted == 0);
    CHECK(t.to_vector() == std::vector<float>{1, 2, 3});  // the first import is untouched
  }
  CHECK(deleted == 1);  // once
  // Its deleter ran, so the producer may hand over a tensor at the same address again.
  {
    const auto again = dl::from_dlpack<float>(&m);
    CHECK(again.data() == buffer);
  }
  CHECK(deleted == 2);
}

TEST_CASE("from_dlpack refuses a description it cannot trust, naming what is wrong, and leaves it the caller's") {
  static int deleted = 0;
  static float buffer[4] = {1, 2, 3, 4};
  std::int64_t shape[2] = {2, 2};
  std::int64_t strides[2] = {2, 1};
  dl::DLManagedTensor m = floats_at(buffer, dl::kDLCPU, shape, 2, [](dl::DLManagedTensor*) { ++deleted; });
  const auto refused = [&](const char* what) {
    CAPTURE(what);
    CHECK_THROWS_WITH_AS(dl::from_dlpack<float>(&m), doctest::Contains(what), dp::shape_error);
  };
  shape[0] = -5;  // a negative extent once became a 2^64-byte block of shape {-5, 2}
  refused("dimension 0 has extent -5 (expected 0 or more)");
  shape[0] = std::int64_t{1} << 40;
  shape[1] = std::int64_t{1} << 40;  // 2^80 elements
  refused("from_dlpack: shape {1099511627776, 1099511627776} holds more elements than a 64-bit index counts");
  // With strides too: 2^63 elements over one float (strides 0) counted -2^63 elements.
  std::int64_t zero_strides[2] = {0, 0};
  shape[0] = std::int64_t{1} << 62;
  shape[1] = 2;
  m.dl_tensor.strides = zero_strides;
  refused("from_dlpack: shape {4611686018427387904, 2} holds more elements than a 64-bit index counts");
  m.dl_tensor.strides = nullptr;
  std::int64_t wide[3] = {0, std::int64_t{1} << 40, std::int64_t{1} << 40};  // no element, strides of 2^80
  m.dl_tensor.shape = wide;
  m.dl_tensor.ndim = 3;
  refused("from_dlpack: shape {0, 1099511627776, 1099511627776} holds more elements than a 64-bit index counts");
  m.dl_tensor.shape = shape;
  m.dl_tensor.ndim = 2;
  shape[0] = 2;
  shape[1] = 2;
  m.dl_tensor.strides = strides;
  strides[0] = std::int64_t{1} << 62;  // the span from the first element to the last wraps
  refused("spans more than memory can address");
  shape[0] = 4;  // the span's own arithmetic wraps: (4 - 1) x INT64_MAX
  strides[0] = INT64_MAX;
  refused("spans more than memory can address");
  shape[0] = 0;  // no element, but a stride no view of dp's may hold
  strides[0] = -1;
  refused("dimension 0 has stride -1 (negative strides are not supported)");
  shape[0] = 2;
  m.dl_tensor.strides = nullptr;
  m.dl_tensor.shape = nullptr;
  refused("2 dimensions but no shape array");
  CHECK(deleted == 0);  // every refused tensor stays the caller's
  m.dl_tensor.shape = shape;
  {
    const auto t = dl::from_dlpack<float>(&m);  // the same description, repaired, is taken
    CHECK(t.to_vector() == std::vector<float>{1, 2, 3, 4});
  }
  CHECK(deleted == 1);
}

TEST_CASE("from_dlpack refuses a null data pointer for elements, and data not aligned for its element type") {
  static int deleted = 0;
  alignas(8) static float buffer[6] = {1, 2, 3, 4, 5, 6};
  std::int64_t shape[1] = {4};
  dl::DLManagedTensor m = floats_at(nullptr, dl::kDLCPU, shape, 1, [](dl::DLManagedTensor*) { ++deleted; });
  CHECK_THROWS_WITH_AS(dl::from_dlpack<float>(&m), doctest::Contains("has a null data pointer for its 4 elements"),
                       dp::value_error);
  m.dl_tensor.data = buffer;
  m.dl_tensor.byte_offset = 2;  // half-way into a float
  CHECK_THROWS_WITH_AS(dl::from_dlpack<float>(&m), doctest::Contains("is not aligned to the 4 bytes"), dp::value_error);
  m.dl_tensor.byte_offset = 0;
  m.dl_tensor.data = reinterpret_cast<char*>(buffer) + 4;  // a float's alignment, not a double's
  m.dl_tensor.dtype = {dl::kDLFloat, 64, 1};
  shape[0] = 2;
  CHECK_THROWS_WITH_AS(dl::from_dlpack<double>(&m), doctest::Contains("is not aligned to the 8 bytes"),
                       dp::value_error);
  CHECK(deleted == 0);  // refused: still the caller's
  m.dl_tensor.dtype = {dl::kDLFloat, 32, 1};
  m.dl_tensor.byte_offset = 4;  // an offset in whole floats is fine: {3, 4}
  {
    const auto t = dl::from_dlpack<float>(&m);
    CHECK(t.to_vector() == std::vector<float>{3, 4});
  }
  CHECK(deleted == 1);
  shape[0] = 0;  // no elements: no data needed
  m.dl_tensor.data = nullptr;
  m.dl_tensor.byte_offset = 0;
  CHECK(dl::from_dlpack<float>(&m).numel() == 0);
}

#if !DP_HAS_CUDA
TEST_CASE("without CUDA, from_dlpack refuses CUDA memory instead of making a tensor no kernel can run on") {
  static float buffer[1] = {0};
  std::int64_t shape[1] = {1};
  dl::DLManagedTensor m = floats_at(buffer, dl::kDLCUDA, shape, 1);
  CHECK_THROWS_WITH_AS(
      dl::from_dlpack<float>(&m),
      doctest::Contains(
          "from_dlpack: the tensor is in the memory of CUDA device 0, but this file was compiled without CUDA"),
      dp::device_error);
}
#endif
