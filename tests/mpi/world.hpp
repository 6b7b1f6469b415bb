// The MPI test suites' session: one per process, made by main.cpp before any test runs. Every test
// case runs on every rank in the same order, so collectives inside tests line up.
#pragma once

#include <string>

#include <dp/dp.hpp>

namespace test {
dp::dist::session& world();
/// A path in the temporary folder named per job (by rank 0's process id), so that every rank of a
/// job shares it and two jobs never do: ctest -j runs the suite at several sizes at once.
std::string scratch_path(const std::string& name);

/// Sets a test seam (a limit dp reads from a variable) for one scope, on this rank; every rank sets
/// the same value, since the limit shapes the collectives.
template <class T>
class lowered {
 public:
  lowered(T& seam, T value) : seam_(seam), saved_(seam) { seam_ = value; }
  lowered(const lowered&) = delete;
  lowered& operator=(const lowered&) = delete;
  ~lowered() { seam_ = saved_; }

 private:
  T& seam_;
  T saved_;
};
}  // namespace test
