// CUDA kernels of AnoGAN's latent search (genad_fast::anogan_residual, genad_fast::masked_adam_).
//
// One warp per row for both: lanes stride over the row's columns (coalesced; rows may have any stride, so
// column slices are used in place). The residual's two sums are reduced with warp shuffles; Adam's row
// scalars (bias corrections) are computed per lane from the row's step count, which lane 0 writes back.
// Nothing is read back to the host: `active` is read by the kernel, so a loop of these launches needs no
// host-device synchronisation and can be captured in a CUDA graph.
// Per-element math is genad/anogan.h, the same code the CPU kernel's scalar tail runs.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "genad/anogan.h"
#include "genad/cuda_helpers.cuh"
#include "genad/host/anogan.h"

namespace genad {
namespace cuda {
namespace {

namespace ga = genad::anogan;

constexpr int kWarpsPerBlock = 8;

// Σ|a − b| over one row (this lane's share), writing neg_w·sign(a − b) to grad.
template <typename T>
__device__ __forceinline__ T residual_pass(const T* __restrict__ a, const T* __restrict__ b, T* __restrict__ grad,
                                           int64_t K, T neg_w, int lane) {
  T acc = 0;
  for (int64_t j = lane; j < K; j += kWarp) {
    T g;
    acc += ga::residual_elem<ga::ScalarMath>(a[j], b[j], neg_w, g);
    grad[j] = g;
  }
  return acc;
}

template <typename T>
__global__ void residual_kernel(const T* __restrict__ x, int64_t sx,      // [B, P]
                                const T* __restrict__ gx, int64_t sgx,    // [B, P]
                                const T* __restrict__ fx, int64_t sfx,    // [B, F]
                                const T* __restrict__ fgx, int64_t sfgx,  // [B, F]
                                T* __restrict__ loss,                     // [B]
                                T* __restrict__ ggx,                      // [B, P] contiguous
                                T* __restrict__ gfgx,                     // [B, F] contiguous
                                int64_t B, int64_t P, int64_t F, T w_p, T w_f) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= B) return;  // whole warps leave together, so the shuffles below stay full-warp
  const T sum_p = warp_sum(residual_pass(x + row * sx, gx + row * sgx, ggx + row * P, P, -w_p, lane));
  const T sum_f = warp_sum(residual_pass(fx + row * sfx, fgx + row * sfgx, gfgx + row * F, F, -w_f, lane));
  if (lane == 0) loss[row] = ga::residual_loss(sum_p, sum_f, w_p, w_f);
}

template <typename T>
__global__ void masked_adam_kernel(T* __restrict__ z, int64_t sz,                // [B, L]
                                   const T* __restrict__ g, int64_t sg,          // [B, L]
                                   T* __restrict__ m, int64_t sm,                // [B, L]
                                   T* __restrict__ v, int64_t sv,                // [B, L]
                                   int64_t* __restrict__ step, int64_t ss,       // [B]
                                   const bool* __restrict__ active, int64_t sa,  // [B]
                                   int64_t B, int64_t L, double lr, double beta1, double beta2,
                                   ga::AdamConsts<T> c) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= B || !active[row * sa]) return;
  const int64_t t0 = step[row * ss];
  // counts must be in [0, 2^63 − 1) (the op layer queues the same check for every row, without a host sync)
  CUDA_KERNEL_ASSERT_MSG(t0 >= 0 && t0 < INT64_MAX, "masked_adam_: step must hold update counts in [0, 2^63 - 1)");
  const int64_t t = t0 + 1;
  __syncwarp();  // every lane has read the old count before lane 0 overwrites it
  if (lane == 0) step[row * ss] = t;
  double nss, bc2s;
  ga::adam_row_scalars(t, lr, beta1, beta2, nss, bc2s);
  const T neg_step_size = static_cast<T>(nss), bc2_sqrt = static_cast<T>(bc2s);
  T* zr = z + row * sz;
  const T* gr = g + row * sg;
  T* mr = m + row * sm;
  T* vr = v + row * sv;
  for (int64_t j = lane; j < L; j += kWarp) {
    T zj = zr[j], mj = mr[j], vj = vr[j];
    ga::adam_elem<ga::ScalarMath>(zj, gr[j], mj, vj, c.lerp_coef, c.lerp_small, c.beta2, c.one_minus_beta2, c.eps,
                                  neg_step_size, bc2_sqrt);
    zr[j] = zj;
    mr[j] = mj;
    vr[j] = vj;
  }
}

unsigned blocks_for(int64_t B) { return warp_row_blocks(B, kWarpsPerBlock); }

std::tuple<at::Tensor, at::Tensor, at::Tensor> anogan_residual_cuda(const at::Tensor& x, const at::Tensor& gx,
                                                                    const at::Tensor& fx, const at::Tensor& fgx,
                                                                    double lam) {
  const host::ResidualArgs args = host::check_anogan_residual(host::kCUDA, x, gx, fx, fgx, lam);
  const int64_t B = args.B, P = args.P, F = args.F;
  at::Tensor loss = at::empty({B}, x.options());
  at::Tensor grad_gx = at::empty({B, P}, x.options());
  at::Tensor grad_fgx = at::empty({B, F}, x.options());
  if (B == 0) return {loss, grad_gx, grad_fgx};
  const c10::cuda::CUDAGuard guard(x.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "genad_fast_anogan_residual_cuda", [&] {
    residual_kernel<scalar_t><<<blocks_for(B), kWarp * kWarpsPerBlock, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), x.stride(0), gx.const_data_ptr<scalar_t>(), gx.stride(0),
        fx.const_data_ptr<scalar_t>(), fx.stride(0), fgx.const_data_ptr<scalar_t>(), fgx.stride(0),
        loss.mutable_data_ptr<scalar_t>(), grad_gx.mutable_data_ptr<scalar_t>(), grad_fgx.mutable_data_ptr<scalar_t>(),
        B, P, F, static_cast<scalar_t>(args.w_p), static_cast<scalar_t>(args.w_f));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {loss, grad_gx, grad_fgx};
}

void masked_adam_cuda(const at::Tensor& z, const at::Tensor& grad, const at::Tensor& m, const at::Tensor& v,
                      const at::Tensor& step, const at::Tensor& active, double lr, double beta1, double beta2,
                      double eps) {
  const host::AdamArgs args = host::check_masked_adam(host::kCUDA, z, grad, m, v, step, active, lr, beta1, beta2, eps);
  const int64_t B = args.B, L = args.L;
  // (the step counts' range is asserted by the kernel, per row: reading them here would sync with the device)
  if (B == 0) return;
  const c10::cuda::CUDAGuard guard(z.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "genad_fast_masked_adam_cuda", [&] {
    masked_adam_kernel<scalar_t><<<blocks_for(B), kWarp * kWarpsPerBlock, 0, stream>>>(
        z.mutable_data_ptr<scalar_t>(), z.stride(0), grad.const_data_ptr<scalar_t>(), grad.stride(0),
        m.mutable_data_ptr<scalar_t>(), m.stride(0), v.mutable_data_ptr<scalar_t>(), v.stride(0),
        step.mutable_data_ptr<int64_t>(), step.stride(0), active.const_data_ptr<bool>(), active.stride(0), B, L, lr,
        beta1, beta2, ga::adam_consts<scalar_t>(beta1, beta2, eps));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace
}  // namespace cuda
}  // namespace genad

TORCH_LIBRARY_IMPL(genad_fast, CUDA, m) {
  m.impl("anogan_residual", &genad::cuda::anogan_residual_cuda);
  m.impl("masked_adam_", &genad::cuda::masked_adam_cuda);
}
