// The flow conditioner with bfloat16 products (a FlowDetector's train_dtype="bfloat16"), as one C++ autograd node:
// the arithmetic of the eager modules under torch.autocast (each product's operands and output in the low dtype,
// the GELUs and the residual sums on those outputs), without autocast's per-call dispatch and the ~11 autograd
// nodes per conditioner. The formulas are in genad_fast/nn/flow/mlp_function.py's docstring ("low precision").
//
// Why a node of its own: on a CPU that multiplies bfloat16 natively (AMX, AVX512-BF16) the products of a
// 1,544-feature flow run 4-7× faster than in float32, and under autocast the module path gave back much of that
// in bookkeeping (docs/training_speed.md, ninth pass). Only ATen calls: no kernel of its own, any device.
#include <ATen/core/Tensor.h>
#include <ATen/ops/add.h>
#include <ATen/ops/gelu.h>
#include <ATen/ops/gelu_backward.h>
#include <ATen/ops/linear.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/sum.h>
#include <torch/csrc/autograd/custom_function.h>

#include "op_handles.h"
#include "residual_mlp.h"

namespace genad::autograd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// params: W_in, b_in, [W_1k, b_1k, W_2k, b_2k] per block, W_out, b_out, already in the low dtype. saved (if not
// null) receives the low-dtype input, then per block (h_k, g_k, p_k, a_k), then (h_n, g): what the backward reads.
at::Tensor lowp_forward(const at::Tensor& x_low, int64_t n_blocks, at::TensorList w, std::vector<at::Tensor>* saved) {
  at::Tensor h = at::linear(x_low, w[0], w[1]);
  if (saved) saved->push_back(x_low);
  for (int64_t k = 0; k < n_blocks; ++k) {
    at::Tensor g = at::gelu(h);
    at::Tensor p = at::linear(g, w[2 + 4 * k], w[3 + 4 * k]);
    at::Tensor a = at::gelu(p);
    if (saved) saved->insert(saved->end(), {h, g, p, a});
    h = at::add(h, at::linear(a, w[4 + 4 * k], w[5 + 4 * k]));
  }
  at::Tensor g = at::gelu(h);
  if (saved) saved->insert(saved->end(), {h, g});
  const int64_t last = static_cast<int64_t>(w.size()) - 1;
  return at::linear(g, w[last - 1], w[last]);
}

std::vector<at::Tensor> cast_all(at::TensorList params, at::ScalarType dtype) {
  std::vector<at::Tensor> out;
  out.reserve(params.size());
  for (const auto& p : params) out.push_back(p.to(dtype));
  return out;
}

// A bias's gradient: the rows' sum of a low-dtype gradient, accumulated and returned in the parameter's dtype
// (autocast's path rounds it to the low dtype first; this keeps the float32 sum).
at::Tensor row_sum(const at::Tensor& grad, at::ScalarType dtype) { return at::sum(grad, {0}, false, dtype); }

struct LowpResidualMLP : public torch::autograd::Function<LowpResidualMLP> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t n_blocks, at::ScalarType dtype,
                            at::TensorList params) {
    at::AutoDispatchBelowADInplaceOrView guard;
    std::vector<at::Tensor> w = cast_all(params, dtype), saved;
    at::Tensor out = lowp_forward(x.to(dtype), n_blocks, w, &saved);
    saved.insert(saved.end(), w.begin(), w.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["n_blocks"] = n_blocks;
    return out.to(x.scalar_type());
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    op_handles::refuse_double_backward("ResidualMLP's fused low-precision conditioner");
    const auto saved = ctx->get_saved_variables();
    const int64_t n = ctx->saved_data["n_blocks"].toInt();
    const at::Tensor& x_low = saved[0];
    const auto block = [&](int64_t k, int64_t i) -> const at::Tensor& { return saved[1 + 4 * k + i]; };
    const at::Tensor &h_n = saved[1 + 4 * n], &g = saved[2 + 4 * n];
    const at::TensorList w(saved.data() + 3 + 4 * n, saved.size() - 3 - 4 * n);
    const int64_t n_params = static_cast<int64_t>(w.size());
    const at::ScalarType low = x_low.scalar_type(), high = grads[0].scalar_type();
    std::vector<at::Tensor> grad_w(n_params);
    const at::Tensor grad_out = grads[0].to(low);
    grad_w[n_params - 2] = grad_out.t().mm(g).to(high);
    grad_w[n_params - 1] = grads[0].sum(0);  // the float32 gradient itself: no rounding
    at::Tensor grad_h = at::gelu_backward(grad_out.mm(w[n_params - 2]), h_n);
    for (int64_t k = n - 1; k >= 0; --k) {
      grad_w[4 + 4 * k] = grad_h.t().mm(block(k, 3)).to(high);
      grad_w[5 + 4 * k] = row_sum(grad_h, high);
      at::Tensor grad_p = at::gelu_backward(grad_h.mm(w[4 + 4 * k]), block(k, 2));
      grad_w[2 + 4 * k] = grad_p.t().mm(block(k, 1)).to(high);
      grad_w[3 + 4 * k] = row_sum(grad_p, high);
      grad_h = at::add(grad_h, at::gelu_backward(grad_p.mm(w[2 + 4 * k]), block(k, 0)));
    }
    grad_w[0] = grad_h.t().mm(x_low).to(high);
    grad_w[1] = row_sum(grad_h, high);
    // inputs: x, n_blocks and dtype (not tensors), then the parameters; the node's edges count the tensors only
    variable_list out{ctx->needs_input_grad(0) ? grad_h.mm(w[0]).to(high) : at::Tensor(), at::Tensor(),
                      at::Tensor()};
    for (int64_t i = 0; i < n_params; ++i) {
      out.push_back(ctx->needs_input_grad(1 + i) ? grad_w[i] : at::Tensor());
    }
    return out;
  }
};
}  // namespace

at::Tensor residual_mlp_train_lowp(const at::Tensor& x, int64_t n_blocks, const std::vector<at::Tensor>& params,
                                   at::ScalarType dtype) {
  check_residual_mlp_params("residual_mlp_train_lowp", n_blocks, params);
  return LowpResidualMLP::apply(x, n_blocks, dtype, at::TensorList(params));
}

at::Tensor residual_mlp_forward_lowp(const at::Tensor& x, int64_t n_blocks, const std::vector<at::Tensor>& params,
                                     at::ScalarType dtype) {
  check_residual_mlp_params("residual_mlp_forward_lowp", n_blocks, params);
  at::NoGradGuard no_grad;
  return lowp_forward(x.to(dtype), n_blocks, cast_all(params, dtype), nullptr).to(x.scalar_type());
}

}  // namespace genad::autograd
