// Autograd kernels in C++ for the element-wise ops a training step calls tens of times (gated_tanh, bias_gelu,
// permute_affine, coupling_forward/coupling_inverse):
// forward through the device kernel, save what the backward reads, backward through the op's backward kernel.
//
// Why in C++: an autograd formula registered from Python (torch.library.register_autograd, as the Triton twins
// have) runs a Python setup_context and a Python backward per call, tens of µs each; measured inside FlowDetector's
// training step, that cost as much as the fused pass saved at [256, 128] (and ~75 µs a coupling, forward and
// backward, ~0.6 ms of a 32-feature step). Here the autograd node is ATen's own kind.
// The backward kernels have no derivative of their own: a second derivative (create_graph=True) is refused by name.
#include <ATen/core/Tensor.h>
#include <ATen/ops/zeros_like.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include "op_handles.h"

namespace genad::autograd {
namespace {

using torch::autograd::AutogradContext;
using op_handles::find;
using op_handles::refuse_double_backward;
using torch::autograd::variable_list;

const c10::TypedOperatorHandle<at::Tensor(const at::Tensor&, int64_t)>& gated_tanh_op() {
  static const auto op = find<at::Tensor(const at::Tensor&, int64_t)>("genad_fast::gated_tanh");
  return op;
}

const c10::TypedOperatorHandle<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t)>& gated_tanh_backward_op() {
  static const auto op =
      find<at::Tensor(const at::Tensor&, const at::Tensor&, int64_t)>("genad_fast::gated_tanh_backward");
  return op;
}

using PermuteAffineSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                             const at::Tensor&, const at::Tensor&, int64_t);
const c10::TypedOperatorHandle<PermuteAffineSig>& permute_affine_op() {
  static const auto op = find<PermuteAffineSig>("genad_fast::permute_affine");
  return op;
}

using PermuteAffineBackwardSig = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    int64_t);
const c10::TypedOperatorHandle<PermuteAffineBackwardSig>& permute_affine_backward_op() {
  static const auto op = find<PermuteAffineBackwardSig>("genad_fast::permute_affine_backward");
  return op;
}

using CouplingSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, double);
const c10::TypedOperatorHandle<CouplingSig>& coupling_op(bool inverse) {
  static const auto forward = find<CouplingSig>("genad_fast::coupling_forward");
  static const auto inverse_op = find<CouplingSig>("genad_fast::coupling_inverse");
  return inverse ? inverse_op : forward;
}

using CouplingBackwardSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                const at::Tensor&, const at::Tensor&, double, bool);
const c10::TypedOperatorHandle<CouplingBackwardSig>& coupling_backward_op() {
  static const auto op = find<CouplingBackwardSig>("genad_fast::coupling_backward");
  return op;
}

struct GatedTanh : public torch::autograd::Function<GatedTanh> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t dim) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({x});
    ctx->saved_data["dim"] = dim;
    return gated_tanh_op().call(x, dim);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    refuse_double_backward("gated_tanh");
    const auto saved = ctx->get_saved_variables();
    return {gated_tanh_backward_op().call(grads[0], saved[0], ctx->saved_data["dim"].toInt()), at::Tensor()};
  }
};

struct BiasGelu : public torch::autograd::Function<BiasGelu> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& z, const at::Tensor& bias) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({z, bias});
    return op_handles::bias_gelu().call(z, bias);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    refuse_double_backward("bias_gelu");
    const auto saved = ctx->get_saved_variables();
    auto [grad_z, grad_bias] = op_handles::bias_gelu_backward().call(grads[0], saved[0], saved[1]);
    return {grad_z, grad_bias};
  }
};

struct PermuteAffine : public torch::autograd::Function<PermuteAffine> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x_a, const at::Tensor& x_b,
                               const at::Tensor& bias, const at::Tensor& log_scale, const at::Tensor& perm,
                               int64_t split) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [v_a, v_b] = permute_affine_op().call(x_a, x_b, bias, log_scale, perm, split);
    ctx->save_for_backward({v_a, v_b, log_scale, perm});
    ctx->saved_data["source_split"] = x_a.size(1);
    return {v_a, v_b};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    refuse_double_backward("permute_affine");
    const auto saved = ctx->get_saved_variables();
    // an output that took no part in the loss has no gradient: zeros; the kernel reads rows with unit column stride
    // (a broadcast gradient, e.g. of out.sum(), arrives with stride 0: copied; an empty one keeps strides 0, which
    // contiguous() leaves as they are: a fresh empty tensor)
    const auto rows_of = [](const at::Tensor& grad, const at::Tensor& out) {
      if (!grad.defined() || grad.size(0) == 0 || grad.size(1) == 0) return at::zeros_like(out);
      return grad.size(1) <= 1 || grad.stride(1) == 1 ? grad : grad.contiguous();
    };
    const at::Tensor grad_a = rows_of(grads[0], saved[0]), grad_b = rows_of(grads[1], saved[1]);
    auto [gx_a, gx_b, grad_bias, grad_log_scale] = permute_affine_backward_op().call(
        grad_a, grad_b, saved[0], saved[1], saved[2], saved[3], ctx->saved_data["source_split"].toInt());
    return {gx_a, gx_b, grad_bias, grad_log_scale, at::Tensor(), at::Tensor()};
  }
};

// coupling_forward (kInverse false) and coupling_inverse (true): one node each, whose backward is the op's fused
// backward kernel (it recomputes s and exp(s) from h). Gradients that took no part in the loss arrive as zeros
// (materialised by autograd); the kernel reads grad_out rows with column stride 1 or 0 (the gradient of y.sum()
// arrives expanded: not materialised), grad_logdet through its stride: only other layouts are copied.
template <bool kInverse>
struct Coupling : public torch::autograd::Function<Coupling<kInverse>> {
  static variable_list forward(AutogradContext* ctx, const at::Tensor& a, const at::Tensor& h, double clamp) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, logdet] = coupling_op(kInverse).call(a, h, clamp);
    ctx->save_for_backward({a, h});
    ctx->saved_data["clamp"] = clamp;
    return {out, logdet};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    refuse_double_backward(kInverse ? "coupling_inverse" : "coupling_forward");
    const auto saved = ctx->get_saved_variables();
    at::Tensor grad_out = grads[0];
    if (grad_out.dim() == 2 && grad_out.size(1) > 1 && grad_out.stride(1) != 0 && grad_out.stride(1) != 1) {
      grad_out = grad_out.contiguous();
    }
    auto [grad_a, grad_h] = coupling_backward_op().call(grad_out, grads[1], saved[0], saved[1],
                                                        ctx->saved_data["clamp"].toDouble(), kInverse);
    return {grad_a, grad_h, at::Tensor()};
  }
};

at::Tensor gated_tanh_autograd(const at::Tensor& x, int64_t dim) { return GatedTanh::apply(x, dim); }
at::Tensor bias_gelu_autograd(const at::Tensor& z, const at::Tensor& bias) { return BiasGelu::apply(z, bias); }
std::tuple<at::Tensor, at::Tensor> permute_affine_autograd(const at::Tensor& x_a, const at::Tensor& x_b,
                                                           const at::Tensor& bias, const at::Tensor& log_scale,
                                                           const at::Tensor& perm, int64_t split) {
  const variable_list out = PermuteAffine::apply(x_a, x_b, bias, log_scale, perm, split);
  return {out[0], out[1]};
}
template <bool kInverse>
std::tuple<at::Tensor, at::Tensor> coupling_autograd(const at::Tensor& a, const at::Tensor& h, double clamp) {
  const variable_list out = Coupling<kInverse>::apply(a, h, clamp);
  return {out[0], out[1]};
}

}  // namespace
}  // namespace genad::autograd

TORCH_LIBRARY_IMPL(genad_fast, Autograd, m) {
  m.impl("gated_tanh", &genad::autograd::gated_tanh_autograd);
  m.impl("bias_gelu", &genad::autograd::bias_gelu_autograd);
  m.impl("permute_affine", &genad::autograd::permute_affine_autograd);
  m.impl("coupling_forward", &genad::autograd::coupling_autograd<false>);
  m.impl("coupling_inverse", &genad::autograd::coupling_autograd<true>);
}
