// CUDA kernels of the diffusion ops (add_noise, diffusion_step, recon_error_accumulate_); math in
// genad/diffusion.h. One thread per Philox counter (grid-stride), its four normals feed elements j, q + j,
// 2q + j, 3q + j, so each store is coalesced across a warp. No host synchronisation: capturable in a CUDA graph.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "genad/diffusion.h"

namespace genad::cuda {
namespace {

namespace gd = genad::diffusion;
constexpr int kThreads = 256;

template <typename T>
__global__ void combine_kernel(const T* __restrict__ x, int64_t sx, const T* __restrict__ y, int64_t sy,
                               const T* __restrict__ a, const T* __restrict__ b, const T* __restrict__ c,
                               const T* __restrict__ noise, int64_t sn, T* __restrict__ out, uint64_t n,
                               uint64_t M, uint64_t q, uint64_t seed, uint64_t offset) {
  auto value = [&](uint64_t i, T z) {
    const uint64_t r = i / M, k = i % M;
    const T xv = x[r * sx + k];
    out[i] = y ? gd::step_elem<T>(xv, y[r * sy + k], a[r], b[r], c[r], z) : gd::add_noise_elem<T>(xv, a[r], c[r], z);
  };
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  const uint64_t first = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (noise) {
    for (uint64_t i = first; i < n; i += stride) value(i, noise[(i / M) * sn + i % M]);
    return;
  }
  for (uint64_t j = first; j < q; j += stride) {
    gd::for_counter(seed, offset, n, q, j, [&](uint64_t i, float z) { value(i, static_cast<T>(z)); });
  }
}

template <typename T>
__global__ void recon_error_kernel(T* __restrict__ score, int64_t s0, int64_t s1, const T* __restrict__ x,
                                   const T* __restrict__ x_hat, const T* __restrict__ mask, int64_t BT, int64_t T_,
                                   int64_t C, double weight) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < BT; r += stride) {
    double acc = 0.0;
    for (int64_t k = 0; k < C; ++k) {
      const double d = static_cast<double>(x[r * C + k]) - static_cast<double>(x_hat[r * C + k]);
      acc += (mask ? static_cast<double>(mask[r * C + k]) : 1.0) * d * d;
    }
    score[(r / T_) * s0 + (r % T_) * s1] += static_cast<T>(weight * acc / static_cast<double>(C));
  }
}

unsigned blocks_for(uint64_t work) {
  const uint64_t b = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b < 65535 ? (b == 0 ? 1 : b) : 65535);
}

at::Tensor run(const char* op, const at::Tensor& x, const std::optional<at::Tensor>& y, const at::Tensor& a,
               const std::optional<at::Tensor>& b, const at::Tensor& c, int64_t seed, int64_t offset,
               const std::optional<at::Tensor>& noise) {
  TORCH_CHECK(x.is_cuda() && x.dim() == 2, op, ": data must be a CUDA tensor [B, M]");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op, ": float32 or float64 only");
  TORCH_CHECK(x.size(1) <= 1 || x.stride(1) == 1, op, ": data must have unit last stride");
  TORCH_CHECK(!y || (y->sizes() == x.sizes() && y->scalar_type() == x.scalar_type() && y->is_cuda() &&
                     (y->size(1) <= 1 || y->stride(1) == 1)),
              op, ": eps must match the data");
  TORCH_CHECK(!noise || (noise->sizes() == x.sizes() && noise->scalar_type() == x.scalar_type() && noise->is_cuda() &&
                         (noise->size(1) <= 1 || noise->stride(1) == 1)),
              op, ": noise must match the data");
  for (const at::Tensor* v : {&a, &c}) {
    TORCH_CHECK(v->is_cuda() && v->dim() == 1 && v->size(0) == x.size(0) && v->scalar_type() == x.scalar_type(), op,
                ": coefficients must be CUDA vectors [B] of the data's dtype");
  }
  TORCH_CHECK(!b || (b->is_cuda() && b->dim() == 1 && b->size(0) == x.size(0) && b->scalar_type() == x.scalar_type()),
              op, ": coefficients must be CUDA vectors [B] of the data's dtype");
  TORCH_CHECK(seed >= 0 && offset >= 0, op, ": seed and offset must be in [0, 2^63)");
  const int64_t B = x.size(0), M = x.size(1);
  at::Tensor out = at::empty({B, M}, x.options());
  if (B == 0 || M == 0) return out;
  const uint64_t n = static_cast<uint64_t>(B) * M, q = genad::philox::counters(n);
  const at::Tensor ac = a.contiguous(), cc = c.contiguous();
  const at::Tensor bc = b ? b->contiguous() : at::Tensor();
  const c10::cuda::CUDAGuard guard(x.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "genad_fast_diffusion_cuda", [&] {
    combine_kernel<scalar_t><<<blocks_for(noise ? n : q), kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), x.stride(0), y ? y->const_data_ptr<scalar_t>() : nullptr, y ? y->stride(0) : 0,
        ac.const_data_ptr<scalar_t>(), b ? bc.const_data_ptr<scalar_t>() : nullptr, cc.const_data_ptr<scalar_t>(),
        noise ? noise->const_data_ptr<scalar_t>() : nullptr, noise ? noise->stride(0) : 0,
        out.mutable_data_ptr<scalar_t>(), n, static_cast<uint64_t>(M), q, static_cast<uint64_t>(seed),
        static_cast<uint64_t>(offset));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor add_noise_cuda(const at::Tensor& x0, const at::Tensor& a, const at::Tensor& b, int64_t seed,
                          int64_t offset, const std::optional<at::Tensor>& noise) {
  return run("genad_fast::add_noise", x0, std::nullopt, a, std::nullopt, b, seed, offset, noise);
}

at::Tensor diffusion_step_cuda(const at::Tensor& x_t, const at::Tensor& eps, const at::Tensor& a,
                               const at::Tensor& b, const at::Tensor& c, int64_t seed, int64_t offset,
                               const std::optional<at::Tensor>& noise) {
  return run("genad_fast::diffusion_step", x_t, eps, a, b, c, seed, offset, noise);
}

void recon_error_accumulate_cuda(at::Tensor score, const at::Tensor& x, const at::Tensor& x_hat,
                                 const std::optional<at::Tensor>& mask, double weight) {
  const char* op = "genad_fast::recon_error_accumulate_";
  TORCH_CHECK(x.is_cuda() && x.dim() == 3, op, ": x must be a CUDA tensor [B, T, C]");
  TORCH_CHECK(x_hat.sizes() == x.sizes() && x_hat.scalar_type() == x.scalar_type(), op, ": x_hat must match x");
  TORCH_CHECK(!mask || (mask->sizes() == x.sizes() && mask->scalar_type() == x.scalar_type()), op,
              ": mask must match x");
  TORCH_CHECK(score.is_cuda() && score.dim() == 2 && score.size(0) == x.size(0) && score.size(1) == x.size(1) &&
                  score.scalar_type() == x.scalar_type(),
              op, ": score must be [B, T] of x's dtype");
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2);
  if (B == 0 || T == 0) return;
  const at::Tensor xc = x.contiguous(), hc = x_hat.contiguous();
  const at::Tensor mc = mask ? mask->contiguous() : at::Tensor();
  const c10::cuda::CUDAGuard guard(x.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "genad_fast_recon_error_cuda", [&] {
    recon_error_kernel<scalar_t><<<blocks_for(B * T), kThreads, 0, stream>>>(
        score.mutable_data_ptr<scalar_t>(), score.stride(0), score.stride(1), xc.const_data_ptr<scalar_t>(),
        hc.const_data_ptr<scalar_t>(), mask ? mc.const_data_ptr<scalar_t>() : nullptr, B * T, T, C, weight);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace
}  // namespace genad::cuda

TORCH_LIBRARY_IMPL(genad_fast, CUDA, m) {
  m.impl("add_noise", &genad::cuda::add_noise_cuda);
  m.impl("diffusion_step", &genad::cuda::diffusion_step_cuda);
  m.impl("recon_error_accumulate_", &genad::cuda::recon_error_accumulate_cuda);
}
