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
}  // namespace test
