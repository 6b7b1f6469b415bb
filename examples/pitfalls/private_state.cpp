// PyTorch pitfall: a custom model keeps state outside its registered parameters (a plain tensor
// attribute, a counter); DataParallel replicas lose it or let it drift.
// In dp a model's members are found by reflection and each must be a module, an nn::parameter or an
// nn::buffer. Writing `dp::tensor<float> state;` or `int calls;` as a member is a compile error:
//   dp: a member of this model is a dp::tensor that is neither nn::parameter nor nn::buffer; wrap it
//   so it is trained/synchronised, or move it out of the model (... unregistered_tensor_member<
//   with_state, 1, fixed_name<5>{"state"}>)
// State that changes belongs in an nn::buffer, whose synchronisation policy is declared.
#include <cstdio>

#include <dp/dp.hpp>

namespace nn = dp::nn;

struct with_state {
  nn::linear<4, 4> fc;
  nn::batch_norm<4> norm;  // running statistics: buffers, averaged over replicas after each step
  auto forward(auto x) const { return norm(fc(x)); }
};

int main() {
  dp::parallel<with_state> par{with_state{}, {dp::cpu(0), dp::cpu(1), dp::cpu(2)}};
  auto x = dp::randn<float>({30, 4}, dp::cpu(), 1);
  par.backward(nn::mse_loss, x, dp::zeros<float>({30, 4}));
  // The canonical model holds the synchronised statistics; nothing is kept anywhere else.
  std::printf("running_mean[0] = %f after %lld batch(es)\n", par.model().norm.running_mean.value()[0].item(),
              static_cast<long long>(par.model().norm.num_batches_tracked.value().item()));
  return 0;
}
