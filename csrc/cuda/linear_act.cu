// linear_act on CUDA: the same formula composed from ATen ops (cuBLAS product, element-wise kernels).
// Not fused: the op exists for CPU latent searches, where per-call overhead dominates; on a GPU the search is
// captured in a CUDA graph instead. Kept so the op runs wherever its callers do, and checked against the
// reference on a device by tests/gpu.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>

#include "genad/host/linear_act.h"

namespace genad::cuda {

at::Tensor linear_act_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           const std::optional<at::Tensor>& gate, double gate_slope,
                           const std::optional<at::Tensor>& addend, std::optional<double> slope,
                           std::optional<at::ScalarType> out_dtype) {
  const at::ScalarType odtype = host::check_linear_act(host::kCUDA, x, weight, bias, gate, addend, out_dtype).out_dtype;
  at::Tensor a = x.to(at::kFloat);
  if (gate) a = a * at::where(gate->gt(0), 1.0, gate_slope).to(at::kFloat);
  a = a.to(weight.scalar_type()).to(at::kFloat);  // the product's inputs have the weight's dtype
  at::Tensor y = at::mm(a, weight.to(at::kFloat).t());
  // (shapes checked exactly above: an add would broadcast a wrong-shaped bias or addend without a word)
  if (bias) y.add_(bias->to(at::kFloat));
  if (addend) y.add_(addend->to(at::kFloat));
  if (slope) y = at::leaky_relu(y, *slope);
  return y.to(odtype);
}

}  // namespace genad::cuda

TORCH_LIBRARY_IMPL(genad_fast, CUDA, m) { m.impl("linear_act", &genad::cuda::linear_act_cuda); }
