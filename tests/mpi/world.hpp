// The MPI test suites' session: one per process, made by main.cpp before any test runs. Every test
// case runs on every rank in the same order, so collectives inside tests line up.
#pragma once

#include <dp/dp.hpp>

namespace test {
dp::dist::session& world();
}  // namespace test
