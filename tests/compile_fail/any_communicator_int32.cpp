// The erased communicator carries the element types a model keeps; an int32 tensor is refused with
// what to do (it was a conversion error inside the erasure before).
// expect: dp: any_communicator carries float, double or int64 tensors
#include <utility>

#include <dp/dp.hpp>

int main() {
  auto comms = dp::dist::make_local_communicators(1);
  dp::dist::any_communicator comm{std::move(comms[0])};
  auto t = dp::zeros<std::int32_t>({4});
  comm.all_reduce(t, dp::dist::reduce_op::sum);
}
