// A type's identity without RTTI (dp compiles with -fno-rtti too): one address per type. The trainer
// keys its plans by the loss's type with it, and local ranks compare the element types they pass.
#pragma once

#include <dp/config.hpp>

namespace dp::inline DP_ABI::detail {

template <class T>
inline constexpr char type_tag = 0;

}  // namespace dp::inline DP_ABI::detail
