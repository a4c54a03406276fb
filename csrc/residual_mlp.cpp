// The fused residual-MLP conditioner of a flow's coupling: its forward (scoring) and, for training, one C++ autograd
// node with a hand-written backward (the formulas are in genad_fast/nn/flow/mlp_function.py's docstring): the same
// ATen and bias_gelu calls in the same order as the modules' composite, so the same bits.
//
// Why in C++: the node runs 8 times a training step, each with ~12 calls forward and ~25 backward; from Python each
// call is argument parsing and a frame, ~65 µs a conditioner, forward and backward, of a ~16 ms step at 32 features
// (docs/training_speed.md). Called from Python through module.cpp (residual_mlp_train), not a registered op: it is
// a training-step composite of ops that are (bias_gelu, and ATen's products), with no kernel of its own.
#include <ATen/core/Tensor.h>
#include <ATen/ops/add.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sum.h>
#include <torch/csrc/autograd/custom_function.h>

#include "op_handles.h"
#include "residual_mlp.h"

namespace genad::autograd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using op_handles::bias_gelu;
using op_handles::bias_gelu_backward;

// params: W_in, b_in, [W_1k, b_1k, W_2k, b_2k] per block, W_out, b_out. saved (if not null) receives, per block,
// (h̃_k, B_k, g_k, p_k, a_k), then (h̃_n, B_n, g): what the backward reads.
at::Tensor conditioner_forward(const at::Tensor& x, int64_t n_blocks, at::TensorList params,
                               std::vector<at::Tensor>* saved) {
  at::Tensor h = at::mm(x, params[0].t()), bias = params[1];
  for (int64_t k = 0; k < n_blocks; ++k) {
    const at::Tensor &w1 = params[2 + 4 * k], &b1 = params[3 + 4 * k];
    const at::Tensor &w2 = params[4 + 4 * k], &b2 = params[5 + 4 * k];
    at::Tensor g = bias_gelu().call(h, bias);
    at::Tensor pre = at::mm(g, w1.t());
    at::Tensor a = bias_gelu().call(pre, b1);
    if (saved) saved->insert(saved->end(), {h, bias, g, pre, a});
    h = at::addmm(h, a, w2.t());
    bias = at::add(bias, b2);
  }
  at::Tensor g = bias_gelu().call(h, bias);
  if (saved) saved->insert(saved->end(), {h, bias, g});
  const int64_t last = static_cast<int64_t>(params.size()) - 1;
  return at::addmm(params[last], g, params[last - 1].t());
}

struct ResidualMLP : public torch::autograd::Function<ResidualMLP> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t n_blocks, at::TensorList params) {
    at::AutoDispatchBelowADInplaceOrView guard;
    std::vector<at::Tensor> saved{x};
    at::Tensor out = conditioner_forward(x, n_blocks, params, &saved);
    saved.insert(saved.end(), params.begin(), params.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["n_blocks"] = n_blocks;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    op_handles::refuse_double_backward("ResidualMLP's fused conditioner");
    const auto saved = ctx->get_saved_variables();
    const int64_t n = ctx->saved_data["n_blocks"].toInt();
    const at::Tensor& x = saved[0];
    const auto block = [&](int64_t k, int64_t i) -> const at::Tensor& { return saved[1 + 5 * k + i]; };
    const at::Tensor &h_n = saved[1 + 5 * n], &bias_n = saved[2 + 5 * n], &g = saved[3 + 5 * n];
    const at::TensorList params(saved.data() + 4 + 5 * n, saved.size() - 4 - 5 * n);
    const int64_t n_params = static_cast<int64_t>(params.size());
    std::vector<at::Tensor> grad_params(n_params);
    const at::Tensor grad_out = grads[0].contiguous();
    grad_params[n_params - 2] = grad_out.t().mm(g);
    grad_params[n_params - 1] = grad_out.sum(0);
    auto [grad_h, grad_bias] = bias_gelu_backward().call(grad_out.mm(params[n_params - 2]), h_n, bias_n);
    for (int64_t k = n - 1; k >= 0; --k) {
      const at::Tensor &w1 = params[2 + 4 * k], &b1 = params[3 + 4 * k], &w2 = params[4 + 4 * k];
      grad_params[4 + 4 * k] = grad_h.t().mm(block(k, 4));
      grad_params[5 + 4 * k] = grad_bias;
      auto [grad_pre, grad_b1] = bias_gelu_backward().call(grad_h.mm(w2), block(k, 3), b1);
      grad_params[3 + 4 * k] = grad_b1;
      grad_params[2 + 4 * k] = grad_pre.t().mm(block(k, 2));
      auto [grad_h_k, grad_bias_k] = bias_gelu_backward().call(grad_pre.mm(w1), block(k, 0), block(k, 1));
      grad_h = at::add(grad_h, grad_h_k);
      grad_bias = at::add(grad_bias, grad_bias_k);
    }
    grad_params[0] = grad_h.t().mm(x);
    grad_params[1] = grad_bias;
    // inputs: x, n_blocks (not a tensor), then the parameters; the node's edges count the tensors only
    variable_list out{ctx->needs_input_grad(0) ? grad_h.mm(params[0]) : at::Tensor(), at::Tensor()};
    for (int64_t i = 0; i < n_params; ++i) {
      out.push_back(ctx->needs_input_grad(1 + i) ? grad_params[i] : at::Tensor());
    }
    return out;
  }
};

}  // namespace

void check_residual_mlp_params(const char* name, int64_t n_blocks, const std::vector<at::Tensor>& params) {
  TORCH_CHECK(n_blocks >= 0 && static_cast<int64_t>(params.size()) == 4 + 4 * n_blocks, name,
              ": expected 4 + 4·n_blocks = ", 4 + 4 * n_blocks, " parameters for n_blocks = ", n_blocks, ", got ",
              params.size());
}
at::Tensor residual_mlp_train(const at::Tensor& x, int64_t n_blocks, const std::vector<at::Tensor>& params) {
  check_residual_mlp_params("residual_mlp_train", n_blocks, params);
  return ResidualMLP::apply(x, n_blocks, at::TensorList(params));
}

at::Tensor residual_mlp_forward(const at::Tensor& x, int64_t n_blocks, const std::vector<at::Tensor>& params) {
  check_residual_mlp_params("residual_mlp_forward", n_blocks, params);
  at::NoGradGuard no_grad;
  return conditioner_forward(x, n_blocks, at::TensorList(params), nullptr);
}

}  // namespace genad::autograd
