// CUDA kernels of AnoGAN's latent search (genad_fast::anogan_residual, genad_fast::masked_adam_).
//
// Each row gets a group of G lanes (the smallest power of two covering its vectors, at most a warp) and each lane
// loads V elements at once, 16 bytes, where every row start is aligned (else V = 1): genad/row_groups.h says why
// (bytes in flight). Rows may have any stride, so column slices are used in place. The residual's two sums are
// butterflies of shuffles within the group; Adam's row scalars (bias corrections) are computed per lane from the
// row's step count, which lane 0 of the group writes back. Nothing is read back to the host: `active` is read by
// the kernel, so a loop of these launches needs no host-device synchronisation and can be captured in a CUDA
// graph. Per-element math is genad/anogan.h, the same code the CPU kernel's scalar tail runs.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "genad/anogan.h"
#include "genad/anogan_lane.h"
#include "genad/cuda_helpers.cuh"
#include "genad/host/anogan.h"
#include "genad/row_groups.h"

namespace genad {
namespace cuda {
namespace {

namespace ga = genad::anogan;
namespace rg = genad::row_groups;

template <typename T, int V>
__global__ void residual_kernel(const T* __restrict__ x, int64_t sx,      // [B, P]
                                const T* __restrict__ gx, int64_t sgx,    // [B, P]
                                const T* __restrict__ fx, int64_t sfx,    // [B, F]
                                const T* __restrict__ fgx, int64_t sfgx,  // [B, F]
                                T* __restrict__ loss,                     // [B]
                                T* __restrict__ ggx,                      // [B, P] contiguous
                                T* __restrict__ gfgx,                     // [B, F] contiguous
                                int64_t B, int64_t P, int64_t F, T w_p, T w_f, int log2_lanes) {
  const rg::RowLane at = rg::row_lane(blockIdx.x, threadIdx.x, log2_lanes);
  const int lanes = 1 << log2_lanes;
  T sum_p = 0, sum_f = 0;
  if (at.row < B) {
    const int64_t r = at.row;
    sum_p = ga::residual_lane<V>(x + r * sx, gx + r * sgx, ggx + r * P, P / V, -w_p, at.lane, lanes);
    sum_f = ga::residual_lane<V>(fx + r * sfx, fgx + r * sfgx, gfgx + r * F, F / V, -w_f, at.lane, lanes);
  }
  // every lane of the warp takes part (rows past B add 0): a group never straddles a warp
  sum_p = group_sum(sum_p, log2_lanes);
  sum_f = group_sum(sum_f, log2_lanes);
  if (at.row < B && at.lane == 0) loss[at.row] = ga::residual_loss(sum_p, sum_f, w_p, w_f);
}

template <typename T, int V>
__global__ void masked_adam_kernel(T* __restrict__ z, int64_t sz,                // [B, L]
                                   const T* __restrict__ g, int64_t sg,          // [B, L]
                                   T* __restrict__ m, int64_t sm,                // [B, L]
                                   T* __restrict__ v, int64_t sv,                // [B, L]
                                   int64_t* __restrict__ step, int64_t ss,       // [B]
                                   const bool* __restrict__ active, int64_t sa,  // [B]
                                   int64_t B, int64_t L, double lr, double beta1, double beta2, ga::AdamConsts<T> c,
                                   int log2_lanes) {
  const rg::RowLane at = rg::row_lane(blockIdx.x, threadIdx.x, log2_lanes);
  const int64_t r = at.row;
  const bool act = r < B && active[r * sa];
  const int64_t t0 = act ? step[r * ss] : 0;
  __syncwarp();  // every lane has read its row's old count before lane 0 of the group overwrites it
  if (!act) return;
  // counts must be in [0, 2^63 − 1) (the op layer queues the same check for every row, without a host sync)
  CUDA_KERNEL_ASSERT_MSG(t0 >= 0 && t0 < INT64_MAX, "masked_adam_: step must hold update counts in [0, 2^63 - 1)");
  const int64_t t = t0 + 1;
  if (at.lane == 0) step[r * ss] = t;
  double nss, bc2s;
  ga::adam_row_scalars(t, lr, beta1, beta2, nss, bc2s);
  ga::adam_lane<V>(z + r * sz, g + r * sg, m + r * sm, v + r * sv, L / V, c, static_cast<T>(nss),
                   static_cast<T>(bc2s), at.lane, 1 << log2_lanes);
}

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
    constexpr int kV = rg::kVectorBytes / sizeof(scalar_t);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* gxp = gx.const_data_ptr<scalar_t>();
    const scalar_t* fxp = fx.const_data_ptr<scalar_t>();
    const scalar_t* fgxp = fgx.const_data_ptr<scalar_t>();
    scalar_t* ggxp = grad_gx.mutable_data_ptr<scalar_t>();
    scalar_t* gfgxp = grad_fgx.mutable_data_ptr<scalar_t>();
    const bool wide = rg::vector_width<scalar_t>(kV, {P, F},
                                                 {{xp, x.stride(0)}, {gxp, gx.stride(0)}, {fxp, fx.stride(0)},
                                                  {fgxp, fgx.stride(0)}, {ggxp, P}, {gfgxp, F}}) > 1;
    const int64_t V = wide ? kV : 1;
    const int log2 = rg::log2_lanes(std::max(P, F) / V);
    auto launch = [&](auto kernel) {
      kernel<<<static_cast<unsigned>(rg::blocks_for(B, log2)), rg::kThreads, 0, stream>>>(
          xp, x.stride(0), gxp, gx.stride(0), fxp, fx.stride(0), fgxp, fgx.stride(0),
          loss.mutable_data_ptr<scalar_t>(), ggxp, gfgxp, B, P, F, static_cast<scalar_t>(args.w_p),
          static_cast<scalar_t>(args.w_f), log2);
    };
    wide ? launch(residual_kernel<scalar_t, kV>) : launch(residual_kernel<scalar_t, 1>);
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
    constexpr int kV = rg::kVectorBytes / sizeof(scalar_t);
    scalar_t* zp = z.mutable_data_ptr<scalar_t>();
    const scalar_t* gp = grad.const_data_ptr<scalar_t>();
    scalar_t* mp = m.mutable_data_ptr<scalar_t>();
    scalar_t* vp = v.mutable_data_ptr<scalar_t>();
    const bool wide = rg::vector_width<scalar_t>(
                          kV, {L}, {{zp, z.stride(0)}, {gp, grad.stride(0)}, {mp, m.stride(0)}, {vp, v.stride(0)}}) > 1;
    const int log2 = rg::log2_lanes(wide ? L / kV : L);
    auto launch = [&](auto kernel) {
      kernel<<<static_cast<unsigned>(rg::blocks_for(B, log2)), rg::kThreads, 0, stream>>>(
          zp, z.stride(0), gp, grad.stride(0), mp, m.stride(0), vp, v.stride(0), step.mutable_data_ptr<int64_t>(),
          step.stride(0), active.const_data_ptr<bool>(), active.stride(0), B, L, lr, beta1, beta2,
          ga::adam_consts<scalar_t>(beta1, beta2, eps), log2);
    };
    wide ? launch(masked_adam_kernel<scalar_t, kV>) : launch(masked_adam_kernel<scalar_t, 1>);
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
