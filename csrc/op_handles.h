// Typed dispatcher handles of the project's ops, for C++ code that calls them below autograd (csrc/autograd.cpp,
// csrc/residual_mlp.cpp): each looked up once, on first use. And that code's shared refusal of a second derivative.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <ATen/core/grad_mode.h>
#include <c10/util/Exception.h>

#include <tuple>

namespace genad::op_handles {

// The handle of the op named `name` (e.g. "genad_fast::bias_gelu", overload ""), typed by its C++ signature.
template <class Sig>
c10::TypedOperatorHandle<Sig> find(const char* name) {
  return c10::Dispatcher::singleton().findSchemaOrThrow(name, "").typed<Sig>();
}

using BiasGeluSig = at::Tensor(const at::Tensor&, const at::Tensor&);
inline const c10::TypedOperatorHandle<BiasGeluSig>& bias_gelu() {
  static const auto op = find<BiasGeluSig>("genad_fast::bias_gelu");
  return op;
}

using BiasGeluBackwardSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&);
inline const c10::TypedOperatorHandle<BiasGeluBackwardSig>& bias_gelu_backward() {
  static const auto op = find<BiasGeluBackwardSig>("genad_fast::bias_gelu_backward");
  return op;
}

using BiasGeluKeepSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&);
inline const c10::TypedOperatorHandle<BiasGeluKeepSig>& bias_gelu_keep() {
  static const auto op = find<BiasGeluKeepSig>("genad_fast::bias_gelu_keep");
  return op;
}

using BiasGeluBackwardKeptSig = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&);
inline const c10::TypedOperatorHandle<BiasGeluBackwardKeptSig>& bias_gelu_backward_kept() {
  static const auto op = find<BiasGeluBackwardKeptSig>("genad_fast::bias_gelu_backward_kept");
  return op;
}

// In a C++ node's backward: the calls it makes are not differentiable, so a second derivative (create_graph=True)
// is refused by name, never silently missing.
inline void refuse_double_backward(const char* op) {
  TORCH_CHECK(!at::GradMode::is_enabled(), op, "'s compiled backward is not differentiable (a second derivative "
              "through create_graph=True, e.g. a gradient penalty): use backend='eager', whose composite autograd "
              "differentiates twice");
}

}  // namespace genad::op_handles
