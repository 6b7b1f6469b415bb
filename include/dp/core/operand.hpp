// What may appear in a tensor expression. Kept apart from the node types so that dp::tensor can
// name the concept before the nodes exist.
#pragma once

#include <type_traits>

#include <dp/config.hpp>

namespace dp::inline DP_ABI {

struct dynamic_extents;
template <class T, class Extents = dynamic_extents>
class tensor;
template <class Node>
class expr;

namespace detail {
/// Specialised for every type that can be an operand of an expression (tensors, expressions,
/// nn parameters, traced variables). `node_type` is what the operand becomes inside a node and
/// `make(x)` converts it.
template <class X>
struct operand_adapter;
}  // namespace detail

/// A tensor, a lazy expression or anything else that can be an operand of a tensor expression
/// (scalars are operands too, but not expressions).
template <class X>
concept expression = requires { typename detail::operand_adapter<std::remove_cvref_t<X>>::node_type; };

/// A plain number used as an operand (converted to the other operand's element type).
template <class X>
concept scalar = std::is_arithmetic_v<std::remove_cvref_t<X>>;

namespace detail {
/// Evaluates `e` into `dst` (defined in exec/assign.hpp). `dst` is allocated when it is undefined.
template <class T, class E>
void assign(tensor<T>& dst, const E& e);
}  // namespace detail

}  // namespace dp::inline DP_ABI
