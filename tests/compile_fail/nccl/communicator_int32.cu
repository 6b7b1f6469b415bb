// NCCL's collectives carry the element types a model keeps; an int32 tensor is refused with the types
// they take (compiled by nvcc with dp::nccl's flags; it needs no GPU).
// expect: dp: NCCL collectives take float, double or int64 tensors
#include <dp/dp.hpp>

int main() {
  auto comms = dp::dist::make_nccl_communicators({0});
  auto t = dp::zeros<std::int32_t>({4}, dp::device{dp::device_kind::cuda, 0});
  comms[0].all_reduce(t, dp::dist::reduce_op::sum);
}
