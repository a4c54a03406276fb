// Argument checks of genad_fast::gated_tanh and its backward, shared by csrc/cpu/gated_tanh.cpp and
// csrc/cuda/gated_tanh.cu. Contract (csrc/ops.cpp): x float32, float64 or bfloat16, any layout, rank >= 1; dim in
// [-rank, rank) with an even size along it; grad (backward) of x's dtype and device with x's shape, `dim` halved.
// The kernels see x as [outer, 2, span] (made contiguous): a = x[o, 0, :], b = x[o, 1, :], out[o, :].
#pragma once

#include <vector>

#include <genad/host/checks.h>

namespace genad::host {

struct GatedArgs {
  int64_t outer, span;               // x as [outer, 2, span]
  std::vector<int64_t> out_sizes;    // x's sizes with `dim` halved
};

inline GatedArgs check_gated_tanh(const char* op, Backend backend, const at::Tensor& x, int64_t dim) {
  const Checks c(op, backend);
  c.device(x, "x");
  c.dtype(x, "x", {at::kFloat, at::kDouble, at::kBFloat16});
  const int64_t rank = x.dim();
  TORCH_CHECK(rank >= 1, c.op(), ": x must have at least one dimension, got a scalar");
  TORCH_CHECK(dim >= -rank && dim < rank, c.op(), ": dim must be in [", -rank, ", ", rank, ") for x of shape ",
              x.sizes(), ", got ", dim);
  const int64_t d = dim < 0 ? dim + rank : dim;
  TORCH_CHECK(x.size(d) % 2 == 0, c.op(), ": x must have an even size along dim ", dim,
              " (its two halves are the gate and the filter), got shape ", x.sizes());
  GatedArgs a{1, x.size(d) / 2, x.sizes().vec()};
  for (int64_t i = 0; i < d; ++i) a.outer *= x.size(i);
  for (int64_t i = d + 1; i < rank; ++i) a.span *= x.size(i);
  a.out_sizes[d] /= 2;
  return a;
}

inline GatedArgs check_gated_tanh_backward(Backend backend, const at::Tensor& grad, const at::Tensor& x,
                                           int64_t dim) {
  constexpr const char* op = "genad_fast::gated_tanh_backward";
  GatedArgs a = check_gated_tanh(op, backend, x, dim);
  const Checks c(op, backend);
  c.same_device(grad, "grad", x, "x");
  c.same_dtype(grad, "grad", x, "x");
  c.shape(grad, "grad", a.out_sizes);
  return a;
}

}  // namespace genad::host
