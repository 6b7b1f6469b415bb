#include <doctest/doctest.h>

#include <dp/core/shape.hpp>

TEST_CASE("shape holds extents, counts elements and prints like a braced list") {
  const dp::shape s{2, 3, 4};
  CHECK(s.rank() == 3);
  CHECK(s.numel() == 24);
  CHECK(dp::shape{}.numel() == 1);
  CHECK(dp::shape{5, 0}.numel() == 0);
  CHECK(s.str() == "{2, 3, 4}");
  CHECK(dp::contiguous_strides(s) == dp::shape{12, 4, 1});
}

TEST_CASE("shape rejects more than max_rank dimensions") {
  dp::shape s = dp::shape::filled(dp::max_rank, 1);
  CHECK_THROWS_AS(s.push_back(1), dp::value_error);
}

TEST_CASE("shape::insert takes positions 0..rank and refuses others, as erase does") {
  dp::shape s{2, 3};
  s.insert(2, 7);
  CHECK(s == dp::shape{2, 3, 7});
  s.insert(0, 1);
  CHECK(s == dp::shape{1, 2, 3, 7});
  // Position 5 of {2, 3} once gave {2, 3, 0}; position -1 wrote before the shape's first extent.
  dp::shape t{2, 3};
  CHECK_THROWS_WITH_AS(t.insert(5, 7),
                       doctest::Contains("dp: shape {2, 3} has no position 5 to insert at (expected 0..2)"),
                       dp::value_error);
  CHECK_THROWS_WITH_AS(t.insert(-1, 7),
                       doctest::Contains("dp: shape {2, 3} has no position -1 to insert at (expected 0..2)"),
                       dp::value_error);
  CHECK(t == dp::shape{2, 3});  // a refused insert leaves the shape as it was
  dp::shape full = dp::shape::filled(dp::max_rank, 1);
  CHECK_THROWS_WITH_AS(full.insert(0, 7), doctest::Contains("at most"), dp::value_error);
}

TEST_CASE("broadcast_shapes follows NumPy rules and names both shapes on failure") {
  CHECK(dp::broadcast_shapes({3, 1, 5}, {4, 1}, "op") == dp::shape{3, 4, 5});
  CHECK(dp::broadcast_shapes({}, {2, 2}, "op") == dp::shape{2, 2});
  CHECK(dp::broadcast_shapes({0, 1}, {1, 3}, "op") == dp::shape{0, 3});
  try {
    dp::broadcast_shapes({2, 3}, {4, 3}, "add (+)");
    FAIL("expected a shape_error");
  } catch (const dp::shape_error& e) {
    const std::string m = e.what();
    CHECK(m.find("{2, 3}") != std::string::npos);
    CHECK(m.find("{4, 3}") != std::string::npos);
    CHECK(m.find("add (+)") != std::string::npos);
  }
  // Broadcast views take no memory, so nothing else stops a count past 64 bits: {2^32, 1} and
  // {1, 2^32} counted 0 elements (their sum was 0), and three dimensions of 2^21 a negative count.
  const dp::index_t big = dp::index_t{1} << 32, mid = dp::index_t{1} << 21;
  CHECK_THROWS_WITH_AS(
      dp::broadcast_shapes({big, 1}, {1, big}, "add (+)"),
      doctest::Contains("dp: add (+): shapes {4294967296, 1} and {1, 4294967296} broadcast to "
                        "{4294967296, 4294967296}, whose non-zero extents multiply past what a 64-bit index counts"),
      dp::shape_error);
  CHECK_THROWS_AS(dp::broadcast_shapes({mid, mid, 1}, {1, 1, mid}, "op"), dp::shape_error);
  CHECK(dp::broadcast_shapes({big, 1, 0}, {1, 2, 1}, "op") == dp::shape{big, 2, 0});
}

TEST_CASE("normalize_axis accepts negative axes and rejects out-of-range ones") {
  CHECK(dp::normalize_axis(-1, 3, "t") == 2);
  CHECK(dp::normalize_axis(0, 3, "t") == 0);
  CHECK_THROWS_AS(dp::normalize_axis(3, 3, "t"), dp::value_error);
  CHECK_THROWS_AS(dp::normalize_axis(-4, 3, "t"), dp::value_error);
}

TEST_CASE("static extents match run-time shapes") {
  using e = dp::extents<dp::dyn, 784>;
  CHECK(e::rank == 2);
  CHECK(e::matches({256, 784}));
  CHECK_FALSE(e::matches({256, 783}));
  CHECK_FALSE(e::matches({784}));
  CHECK(e::str() == "extents<dyn, 784>");
}

TEST_CASE("flattened_shape merges start..end, the one rule of tensor::flatten and traced flatten") {
  CHECK(dp::flattened_shape({2, 3, 4, 5}, 1, 2) == dp::shape{2, 12, 5});
  CHECK(dp::flattened_shape({2, 3, 4}, 0, -1) == dp::shape{24});
  CHECK(dp::flattened_shape({}, 0, -1) == dp::shape{1});
  CHECK_THROWS_WITH_AS((void)dp::flattened_shape({2, 3, 4}, 2, 1), doctest::Contains("start 2 comes after end 1"),
                       dp::value_error);
  CHECK_THROWS_AS((void)dp::flattened_shape({2, 3}, 0, 5), dp::value_error);
  // A 0-d shape's axes are 0 and -1 only (any pair was taken before).
  CHECK(dp::flattened_shape({}, -1, 0) == dp::shape{1});
  CHECK_THROWS_WITH_AS((void)dp::flattened_shape({}, 5, 7),
                       doctest::Contains("flatten: axis 5 is out of range for a tensor of rank 0 (expected -1..0)"),
                       dp::value_error);
  CHECK_THROWS_AS((void)dp::flattened_shape({}, 0, -9), dp::value_error);
}
