// Argument checks of genad_fast::linear_act (one MLP layer, forward or backward), shared by
// csrc/cpu/linear_act.cpp and csrc/cuda/linear_act.cu. Contract (csrc/ops.cpp): x [M, K], weight [N, K]
// contiguous, bias [N], gate [M, K], addend [M, N], each float32 or bfloat16 on x's device with unit stride on
// its last dimension; out_dtype float32 or bfloat16 (default x's).
#pragma once

#include <optional>

#include <genad/host/checks.h>

namespace genad::host {

struct LinearActArgs {
  int64_t M, K, N;
  at::ScalarType out_dtype;
};

inline LinearActArgs check_linear_act(Backend backend, const at::Tensor& x, const at::Tensor& weight,
                                      const std::optional<at::Tensor>& bias, const std::optional<at::Tensor>& gate,
                                      const std::optional<at::Tensor>& addend,
                                      std::optional<at::ScalarType> out_dtype) {
  const Checks c("genad_fast::linear_act", backend);
  c.device(x, "x");
  c.rank(x, "x", 2);
  c.rank(weight, "weight", 2);
  const int64_t M = x.size(0), K = x.size(1), N = weight.size(0);
  auto matrix = [&](const at::Tensor& t, const char* name, at::IntArrayRef shape) {
    c.same_device(t, name, x, "x");
    c.dtype(t, name, {at::kFloat, at::kBFloat16});
    c.shape(t, name, shape);
    c.unit_stride(t, name);
  };
  matrix(x, "x", {M, K});
  matrix(weight, "weight", {N, K});
  c.contiguous(weight, "weight");
  if (bias) matrix(*bias, "bias", {N});
  if (gate) matrix(*gate, "gate", {M, K});
  if (addend) matrix(*addend, "addend", {M, N});
  const at::ScalarType odtype = out_dtype.value_or(x.scalar_type());
  TORCH_CHECK(odtype == at::kFloat || odtype == at::kBFloat16, c.op(), ": out_dtype must be float32 or bfloat16, got ",
              dtype_name(odtype));
  return {M, K, N, odtype};
}

}  // namespace genad::host
