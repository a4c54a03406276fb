// conv1d_act on CUDA: the same stage composed from ATen ops (nearest upsampling, cuDNN's convolution, LeakyReLU,
// max pooling). Not fused: the op exists for CPU streams, where a window per timestamp makes per-call overhead the
// cost; on a GPU a stream's small batches are launch-bound either way and cuDNN's convolution is the fast path.
// Kept so the op runs wherever its callers do, and checked against the reference on a device by tests/gpu.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <optional>

#include "genad/host/conv1d_act.h"

namespace genad::cuda {

at::Tensor conv1d_act_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                           int64_t length, std::optional<double> slope, bool pool) {
  const host::Conv1dActArgs a = host::check_conv1d_act(host::kCUDA, x, weight, bias, length, pool);
  if (a.N == 0) return at::empty({0, a.C_out, a.L_out}, x.options());
  at::Tensor u = length == a.L_in ? x : at::upsample_nearest1d(x.contiguous(), {length});
  at::Tensor y = at::conv1d(u, weight, bias ? *bias : at::Tensor(), {1}, {a.pad});
  if (slope) y = at::leaky_relu(y, *slope);
  if (pool) y = at::max_pool1d(y, {2}, {2}, {0}, {1}, /*ceil_mode=*/true);
  return y.contiguous();
}

}  // namespace genad::cuda

TORCH_LIBRARY_IMPL(genad_fast, CUDA, m) { m.impl("conv1d_act", &genad::cuda::conv1d_act_cuda); }
