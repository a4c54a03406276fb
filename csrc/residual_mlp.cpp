// The fused residual-MLP conditioner of a flow's coupling: its forward (scoring) and, for training, one C++ autograd
// node with a hand-written backward (the formulas are in genad_fast/nn/flow/mlp_function.py's docstring): the same
// ATen products and GELU formulas in the same order as the modules' composite, so the same bits (training keeps
// GELU' from the forward with bias_gelu_keep; its backward multiplies by it, bias_gelu_backward_kept).
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
#include <ATen/ops/to.h>
#include <torch/csrc/autograd/custom_function.h>

#include "bf16_gemm.h"
#include "op_handles.h"
#include "residual_mlp.h"

namespace genad::autograd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

using op_handles::bias_gelu;
using op_handles::bias_gelu_backward_kept;
using op_handles::bias_gelu_keep;

// The products of the float32 node: ATen's, on the float32 tensors themselves.
struct Float32Products {
  static constexpr const char* kName = "ResidualMLP's fused conditioner";
  static at::Tensor operand(const at::Tensor& t) { return t; }
  static at::Tensor mm(const at::Tensor& a, const at::Tensor& b) { return at::mm(a, b); }
  static at::Tensor addmm(const at::Tensor& c, const at::Tensor& a, const at::Tensor& b) { return at::addmm(c, a, b); }
};

// bfloat16 operands (cast once where each is made), float32 accumulation and results.
struct Bfloat16Products {
  static constexpr const char* kName = "ResidualMLP's fused conditioner with bfloat16 products";
  static at::Tensor operand(const at::Tensor& t) { return t.to(at::kBFloat16); }
  static at::Tensor mm(const at::Tensor& a, const at::Tensor& b) { return bf16_gemm::mm(a, b); }
  static at::Tensor addmm(const at::Tensor& c, const at::Tensor& a, const at::Tensor& b) {
    return bf16_gemm::mm(a, b, c);
  }
};

// params (W_in, b_in, [W_1k, b_1k, W_2k, b_2k] per block, W_out, b_out) with each weight as a product operand (P's
// dtype) and each bias as it is (biases never enter a product): the one list the forward and the backward read.
template <class P>
std::vector<at::Tensor> product_operands(at::TensorList params) {
  std::vector<at::Tensor> w(params.begin(), params.end());
  for (size_t i = 0; i < w.size(); i += 2) w[i] = P::operand(w[i]);  // even places: the weights
  return w;
}

// GELU(z + b) (bias_gelu); where saved is not null (training) by bias_gelu_keep, its derivative GELU'(z + b) appended
// to saved: the backward then multiplies by it instead of computing the erf and the exponential again.
at::Tensor gelu(const at::Tensor& z, const at::Tensor& b, std::vector<at::Tensor>* saved) {
  if (!saved) return bias_gelu().call(z, b);
  auto [out, derivative] = bias_gelu_keep().call(z, b);
  saved->push_back(derivative);
  return out;
}

// w: product_operands(params). saved (if not null) receives, per block, (GELU'(h_k), ĝ_k, GELU'(p_k + b_1k), â_k),
// then (GELU'(h_n), ĝ), the hatted ones as product operands: what the backward reads.
template <class P>
at::Tensor conditioner_forward(const at::Tensor& x_operand, int64_t n_blocks, at::TensorList w,
                               std::vector<at::Tensor>* saved) {
  at::Tensor h = P::mm(x_operand, w[0].t()), bias = w[1];
  for (int64_t k = 0; k < n_blocks; ++k) {
    const at::Tensor &w1 = w[2 + 4 * k], &b1 = w[3 + 4 * k];
    const at::Tensor &w2 = w[4 + 4 * k], &b2 = w[5 + 4 * k];
    at::Tensor g = P::operand(gelu(h, bias, saved));
    if (saved) saved->push_back(g);
    at::Tensor a = P::operand(gelu(P::mm(g, w1.t()), b1, saved));
    if (saved) saved->push_back(a);
    h = P::addmm(h, a, w2.t());
    bias = at::add(bias, b2);
  }
  at::Tensor g = P::operand(gelu(h, bias, saved));
  if (saved) saved->push_back(g);
  const int64_t last = static_cast<int64_t>(w.size()) - 1;
  return P::addmm(w[last], g, w[last - 1].t());
}

template <class P>
struct ResidualMLP : public torch::autograd::Function<ResidualMLP<P>> {
  static constexpr int64_t kSavedPerBlock = 4;

  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t n_blocks, at::TensorList params) {
    at::AutoDispatchBelowADInplaceOrView guard;
    const at::Tensor x_operand = P::operand(x);
    const std::vector<at::Tensor> w = product_operands<P>(params);
    std::vector<at::Tensor> saved{x_operand};
    at::Tensor out = conditioner_forward<P>(x_operand, n_blocks, w, &saved);
    saved.insert(saved.end(), w.begin(), w.end());
    ctx->save_for_backward(saved);
    ctx->saved_data["n_blocks"] = n_blocks;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    op_handles::refuse_double_backward(P::kName);
    const auto saved = ctx->get_saved_variables();
    const int64_t n = ctx->saved_data["n_blocks"].toInt();
    const at::Tensor& x = saved[0];
    const auto block = [&](int64_t k, int64_t i) -> const at::Tensor& { return saved[1 + kSavedPerBlock * k + i]; };
    const int64_t tail = 1 + kSavedPerBlock * n;  // GELU'(h_n), ĝ, then the weights
    const at::Tensor &deriv_n = saved[tail], &g = saved[tail + 1];
    const int64_t n_params = static_cast<int64_t>(saved.size()) - tail - 2;
    const at::TensorList w(saved.data() + tail + 2, n_params);  // product_operands(params)
    std::vector<at::Tensor> grad_params(n_params);
    const at::Tensor grad_out = grads[0].contiguous();
    const at::Tensor grad_out_op = P::operand(grad_out);
    grad_params[n_params - 2] = P::mm(grad_out_op.t(), g);
    grad_params[n_params - 1] = grad_out.sum(0);
    auto [grad_h, grad_bias] = bias_gelu_backward_kept().call(P::mm(grad_out_op, w[n_params - 2]), deriv_n);
    for (int64_t k = n - 1; k >= 0; --k) {
      const at::Tensor &w1 = w[2 + 4 * k], &w2 = w[4 + 4 * k];
      const at::Tensor grad_h_op = P::operand(grad_h);
      grad_params[4 + 4 * k] = P::mm(grad_h_op.t(), block(k, 3));
      grad_params[5 + 4 * k] = grad_bias;
      auto [grad_pre, grad_b1] = bias_gelu_backward_kept().call(P::mm(grad_h_op, w2), block(k, 2));
      const at::Tensor grad_pre_op = P::operand(grad_pre);
      grad_params[3 + 4 * k] = grad_b1;
      grad_params[2 + 4 * k] = P::mm(grad_pre_op.t(), block(k, 1));
      auto [grad_h_k, grad_bias_k] = bias_gelu_backward_kept().call(P::mm(grad_pre_op, w1), block(k, 0));
      grad_h = at::add(grad_h, grad_h_k);
      grad_bias = at::add(grad_bias, grad_bias_k);
    }
    const at::Tensor grad_h_op = P::operand(grad_h);
    grad_params[0] = P::mm(grad_h_op.t(), x);
    grad_params[1] = grad_bias;
    // inputs: x, n_blocks (not a tensor), then the parameters; the node's edges count the tensors only
    variable_list out{ctx->needs_input_grad(0) ? P::mm(grad_h_op, w[0]) : at::Tensor(), at::Tensor()};
    for (int64_t i = 0; i < n_params; ++i) {
      out.push_back(ctx->needs_input_grad(1 + i) ? grad_params[i] : at::Tensor());
    }
    return out;
  }
};

template <class P>
at::Tensor forward_without_grad(const at::Tensor& x, int64_t n_blocks, at::TensorList params) {
  at::NoGradGuard no_grad;
  return conditioner_forward<P>(P::operand(x), n_blocks, product_operands<P>(params), nullptr);
}

void check_residual_mlp_params(const char* name, int64_t n_blocks, const std::vector<at::Tensor>& params) {
  TORCH_CHECK(n_blocks >= 0 && static_cast<int64_t>(params.size()) == 4 + 4 * n_blocks, name,
              ": expected 4 + 4·n_blocks = ", 4 + 4 * n_blocks, " parameters for n_blocks = ", n_blocks, ", got ",
              params.size());
}

void check_bf16(const char* name, const at::Tensor& x, const std::vector<at::Tensor>& params) {
  TORCH_CHECK(x.device().is_cpu() && x.scalar_type() == at::kFloat, name, ": bfloat16 products run on float32 CPU "
              "tensors, got ", x.scalar_type(), " on ", x.device());
  for (const auto& p : params) {
    TORCH_CHECK(p.device().is_cpu() && p.scalar_type() == at::kFloat, name, ": float32 CPU parameters, got ",
                p.scalar_type(), " on ", p.device());
  }
}

}  // namespace

at::Tensor residual_mlp_train(const at::Tensor& x, int64_t n_blocks, const std::vector<at::Tensor>& params) {
  check_residual_mlp_params("residual_mlp_train", n_blocks, params);
  return ResidualMLP<Float32Products>::apply(x, n_blocks, at::TensorList(params));
}

at::Tensor residual_mlp_forward(const at::Tensor& x, int64_t n_blocks, const std::vector<at::Tensor>& params) {
  check_residual_mlp_params("residual_mlp_forward", n_blocks, params);
  return forward_without_grad<Float32Products>(x, n_blocks, params);
}

at::Tensor residual_mlp_train_bf16(const at::Tensor& x, int64_t n_blocks, const std::vector<at::Tensor>& params) {
  check_residual_mlp_params("residual_mlp_train_bf16", n_blocks, params);
  check_bf16("residual_mlp_train_bf16", x, params);
  return ResidualMLP<Bfloat16Products>::apply(x, n_blocks, at::TensorList(params));
}

at::Tensor residual_mlp_forward_bf16(const at::Tensor& x, int64_t n_blocks, const std::vector<at::Tensor>& params) {
  check_residual_mlp_params("residual_mlp_forward_bf16", n_blocks, params);
  check_bf16("residual_mlp_forward_bf16", x, params);
  return forward_without_grad<Bfloat16Products>(x, n_blocks, params);
}

}  // namespace genad::autograd
