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

TEST_CASE("from_dlpack refuses strides that give distinct indices the same memory; broadcast and size-1 strides pass") {
  static int deleted = 0;
  static float buffer[6] = {1, 2, 3, 4, 5, 6};
  std::int64_t shape[2] = {2, 2};
  std::int64_t strides[2] = {1, 1};  // (0, 1) and (1, 0) are both buffer[1]: a write would reach it twice
  dl::DLManagedTensor m = floats_at(buffer, dl::kDLCPU, shape, 2, [](dl::DLManagedTensor*) { ++deleted; });
  m.dl_tensor.strides = strides;
  CHECK_THROWS_WITH_AS(dl::from_dlpack<float>(&m),
                       doctest::Contains("from_dlpack: shape {2, 2} with strides {1, 1} gives distinct indices the "
                                         "same memory (dimension 1's stride 1 is less than the 2 elements"),
                       dp::shape_error);
  CHECK_THROWS_WITH_AS(dl::from_dlpack<float>(&m),
                       doctest::Contains("make the tensor contiguous first (x.contiguous()"), dp::shape_error);
  shape[1] = 3;  // rows of 3 two apart: (0, 2) and (1, 0) are both buffer[2]
  strides[0] = 2;
  CHECK_THROWS_WITH_AS(dl::from_dlpack<float>(&m),
                       doctest::Contains("shape {2, 3} with strides {2, 1} gives distinct indices the same memory "
                                         "(dimension 0's stride 2 is less than the 3 elements"),
                       dp::shape_error);
  CHECK(deleted == 0);  // refused: still the caller's
  // What does not overlap is taken: column-major {2, 3}, a row broadcast (stride 0), and a size-1
  // dimension whose stride is never stepped (PyTorch gives those any stride).
  const auto imported = [&](std::int64_t rows, std::int64_t cols, std::int64_t row_stride, std::int64_t col_stride) {
    shape[0] = rows;
    shape[1] = cols;
    strides[0] = row_stride;
    strides[1] = col_stride;
    return dl::from_dlpack<float>(&m).to_vector();
  };
  CHECK(imported(2, 3, 1, 2) == std::vector<float>{1, 3, 5, 2, 4, 6});
  CHECK(imported(2, 3, 0, 1) == std::vector<float>{1, 2, 3, 1, 2, 3});
  CHECK(imported(1, 4, 1, 1) == std::vector<float>{1, 2, 3, 4});
  CHECK(imported(4, 1, 1, 1) == std::vector<float>{1, 2, 3, 4});
  CHECK(deleted == 4);
}

TEST_CASE("an assignment between two imports of overlapping memory (a tensor and its slice) reads the values before") {
  // Each import is a storage block of its own, and the alias check compared blocks: b = a * 1 with b
  // one element past a (PyTorch's x and x[1:]) read elements the same pass had already written.
  static float buffer[257];
  std::vector<float> before(257);
  for (int i = 0; i < 257; ++i) {
    buffer[i] = before[i] = static_cast<float>(i) * 0.5f + 1.f;
  }
  std::int64_t n[1] = {256};
  const auto keep = [](dl::DLManagedTensor*) {};
  dl::DLManagedTensor whole = floats_at(buffer, dl::kDLCPU, n, 1, keep);
  dl::DLManagedTensor shifted = floats_at(buffer + 1, dl::kDLCPU, n, 1, keep);
  const auto a = dl::from_dlpack<float>(&whole);
  auto b = dl::from_dlpack<float>(&shifted);
  REQUIRE_FALSE(b.shares_storage(a));
  b = a * 1.f;
  CHECK(std::vector<float>(buffer + 1, buffer + 257) == std::vector<float>(before.begin(), before.begin() + 256));
  CHECK(buffer[0] == before[0]);
  // dp's memory apart from an import's is written directly.
  dp::tensor<float> d = dp::zeros<float>({256});
  d = a * 2.f;
  CHECK(d.to_vector()[255] == 2.f * buffer[255]);
}

TEST_CASE("from_dlpack refuses a byte_offset whose sum with the data pointer wraps past the end of the address space") {
  static int deleted = 0;
  alignas(8) static float buffer[4] = {1, 2, 3, 4};
  std::int64_t shape[1] = {2};
  // data + 8 bytes, offset 2^64 - 8: the sum wraps to buffer itself, aligned and readable, but not
  // the memory the producer described.
  dl::DLManagedTensor m = floats_at(buffer + 2, dl::kDLCPU, shape, 1, [](dl::DLManagedTensor*) { ++deleted; });
  m.dl_tensor.byte_offset = ~std::uint64_t{0} - 7;
  CHECK_THROWS_WITH_AS(dl::from_dlpack<float>(&m), doctest::Contains("wraps past the end of the address space"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(dl::from_dlpack<float>(&m),
                       doctest::Contains(" plus byte_offset 18446744073709551608 plus the 8 bytes"), dp::value_error);
  // The first element fits below 2^64 (at 2^64 - 4), but the second would lie past it.
  m.dl_tensor.data = buffer;
  m.dl_tensor.byte_offset = ~std::uint64_t{0} - reinterpret_cast<std::uintptr_t>(buffer) - 3;
  CHECK_THROWS_WITH_AS(dl::from_dlpack<float>(&m), doctest::Contains("wraps past the end of the address space"),
                       dp::value_error);
  CHECK(deleted == 0);          // refused: still the caller's
  m.dl_tensor.byte_offset = 8;  // an offset into the buffer: {3, 4}
  CHECK(dl::from_dlpack<float>(&m).to_vector() == std::vector<float>{3, 4});
  CHECK(deleted == 1);
}

TEST_CASE("from_dlpack of a host bool tensor refuses a byte other than 0 or 1, naming the first such element") {
  static int deleted = 0;
  static unsigned char bytes[6] = {1, 0, 2, 0, 1, 9};  // 2 and 9 are no bool's byte (reading them is undefined)
  std::int64_t shape[2] = {2, 3};
  dl::DLManagedTensor m{};
  m.dl_tensor.data = bytes;
  m.dl_tensor.device = {dl::kDLCPU, 0};
  m.dl_tensor.ndim = 2;
  m.dl_tensor.dtype = {dl::kDLBool, 8, 1};
  m.dl_tensor.shape = shape;
  m.deleter = [](dl::DLManagedTensor*) { ++deleted; };
  CHECK_THROWS_WITH_AS(
      dl::from_dlpack<bool>(&m),
      doctest::Contains(
          "from_dlpack: the bool tensor of shape {2, 3} holds the byte 2 at index {0, 2} (expected 0 or 1"),
      dp::value_error);
  // Through strides, the index is the element's, not the byte's: column-major {3, 2} reads bytes
  // 0, 3, 1, 4, 2, 5, and the first bad one is element {2, 0}.
  std::int64_t strides[2] = {1, 3};
  shape[0] = 3;
  shape[1] = 2;
  m.dl_tensor.strides = strides;
  CHECK_THROWS_WITH_AS(dl::from_dlpack<bool>(&m),
                       doctest::Contains("the bool tensor of shape {3, 2} holds the byte 2 at index {2, 0}"),
                       dp::value_error);
  bytes[2] = 1;
  CHECK_THROWS_WITH_AS(dl::from_dlpack<bool>(&m),
                       doctest::Contains("the bool tensor of shape {3, 2} holds the byte 9 at index {2, 1}"),
                       dp::value_error);
  CHECK(deleted == 0);  // refused: still the caller's
  bytes[5] = 0;
  CHECK(dl::from_dlpack<bool>(&m).to_vector() == std::vector<bool>{true, false, false, true, true, false});
  CHECK(deleted == 1);
}

TEST_CASE("from_dlpack of a broadcast bool tensor reads each byte once: 2^41 elements of stride 0 are two bytes") {
  static unsigned char bytes[2] = {1, 7};
  std::int64_t shape[2] = {std::int64_t{1} << 40, 2};  // torch.tensor([True, False]).expand(2**40, 2)
  std::int64_t strides[2] = {0, 1};
  dl::DLManagedTensor m{};
  m.dl_tensor.data = bytes;
  m.dl_tensor.device = {dl::kDLCPU, 0};
  m.dl_tensor.ndim = 2;
  m.dl_tensor.dtype = {dl::kDLBool, 8, 1};
  m.dl_tensor.shape = shape;
  m.dl_tensor.strides = strides;
  m.deleter = [](dl::DLManagedTensor*) {};
  // It read the byte of every element: 2^41 reads, a hang.
  CHECK_THROWS_WITH_AS(
      dl::from_dlpack<bool>(&m),
      doctest::Contains("the bool tensor of shape {1099511627776, 2} holds the byte 7 at index {0, 1}"),
      dp::value_error);
  bytes[1] = 0;
  const auto t = dl::from_dlpack<bool>(&m);
  CHECK(t.shape() == dp::shape{std::int64_t{1} << 40, 2});
  CHECK(t[12345].to_vector() == std::vector<bool>{true, false});
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
