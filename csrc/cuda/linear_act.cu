// linear_act on CUDA: the same formula composed from ATen ops (cuBLAS product, element-wise kernels).
// Not fused: the op exists for CPU latent searches, where per-call overhead dominates; on a GPU the search is
// captured in a CUDA graph instead. Kept so the op runs wherever its callers do, and checked against the
// reference on a device by tests/gpu.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>

namespace genad::cuda {

at::Tensor linear_act_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           const std::optional<at::Tensor>& gate, double gate_slope,
                           const std::optional<at::Tensor>& addend, std::optional<double> slope,
                           std::optional<at::ScalarType> out_dtype) {
  TORCH_CHECK(x.is_cuda() && weight.is_cuda(), "linear_act: x and weight must be CUDA tensors for the CUDA kernel");
  TORCH_CHECK(x.dim() == 2 && weight.dim() == 2 && x.size(1) == weight.size(1), "linear_act: x [M, K] and weight "
              "[N, K] must be 2-D with one K, got ", x.sizes(), " and ", weight.sizes());
  for (const at::Tensor& t : {x, weight}) {
    TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16,
                "linear_act: x and weight must be float32 or bfloat16, got ", t.scalar_type());
  }
  const at::ScalarType odtype = out_dtype.value_or(x.scalar_type());
  TORCH_CHECK(odtype == at::kFloat || odtype == at::kBFloat16, "linear_act: out_dtype must be float32 or bfloat16");
  at::Tensor a = x.to(at::kFloat);
  if (gate) {
    TORCH_CHECK(gate->sizes() == x.sizes(), "linear_act: gate must have x's shape ", x.sizes(), ", got ",
                gate->sizes());
    a = a * at::where(gate->gt(0), 1.0, gate_slope).to(at::kFloat);
  }
  a = a.to(weight.scalar_type()).to(at::kFloat);  // the product's inputs have the weight's dtype
  at::Tensor y = at::mm(a, weight.to(at::kFloat).t());
  // exact shapes: an add would broadcast a wrong-shaped bias or addend without a word
  if (bias) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == y.size(1), "linear_act: bias must have shape [", y.size(1),
                "], got ", bias->sizes());
    y.add_(bias->to(at::kFloat));
  }
  if (addend) {
    TORCH_CHECK(addend->sizes() == y.sizes(), "linear_act: addend must have shape ", y.sizes(), ", got ",
                addend->sizes());
    y.add_(addend->to(at::kFloat));
  }
  if (slope) y = at::leaky_relu(y, *slope);
  return y.to(odtype);
}

}  // namespace genad::cuda

TORCH_LIBRARY_IMPL(genad_fast, CUDA, m) { m.impl("linear_act", &genad::cuda::linear_act_cuda); }
