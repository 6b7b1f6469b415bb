// MPI's collectives carry the element types a model keeps; an int32 tensor is refused with the types
// they take (compiled with dp::mpi's flags).
// expect: dp: MPI collectives take float, double or int64 tensors
#include <dp/dp.hpp>

int main(int argc, char** argv) {
  dp::dist::session world{argc, argv};
  auto comm = world.make_communicator({});
  auto t = dp::zeros<std::int32_t>({4});
  comm.all_reduce(t, dp::dist::reduce_op::sum);
}
