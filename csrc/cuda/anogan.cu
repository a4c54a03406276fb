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

#include <cmath>
#include <tuple>

#include "genad/anogan.h"

namespace genad {
namespace cuda {
namespace {

namespace ga = genad::anogan;

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 8;

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

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

void check_rows(const at::Tensor& t, const char* op, const char* name, const at::Tensor& ref) {
  TORCH_CHECK(t.is_cuda(), op, ": ", name, " must be a CUDA tensor, got ", t.device());
  TORCH_CHECK(t.device() == ref.device(), op, ": all tensors must be on one device, got ", name, " on ", t.device(),
              " and ", ref.device());
  TORCH_CHECK(t.dim() == 2, op, ": ", name, " must be 2-D [B, K], got shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", name,
              " must be float32 or float64, got ", t.scalar_type());
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": ", name, " must have the dtype of the first input, got ",
              t.scalar_type(), " and ", ref.scalar_type());
  TORCH_CHECK(t.size(1) <= 1 || t.stride(1) == 1, op, ": ", name,
              " must have unit stride on its last dimension, got strides ", t.strides());
}

unsigned blocks_for(int64_t B) { return static_cast<unsigned>((B + kWarpsPerBlock - 1) / kWarpsPerBlock); }

std::tuple<at::Tensor, at::Tensor, at::Tensor> anogan_residual_cuda(const at::Tensor& x, const at::Tensor& gx,
                                                                    const at::Tensor& fx, const at::Tensor& fgx,
                                                                    double lam) {
  const char* op = "genad_fast::anogan_residual";
  check_rows(x, op, "x", x);
  check_rows(gx, op, "gx", x);
  check_rows(fx, op, "fx", x);
  check_rows(fgx, op, "fgx", x);
  TORCH_CHECK(gx.sizes() == x.sizes(), op, ": gx must have the shape of x ", x.sizes(), ", got ", gx.sizes());
  TORCH_CHECK(fgx.sizes() == fx.sizes(), op, ": fgx must have the shape of fx ", fx.sizes(), ", got ", fgx.sizes());
  TORCH_CHECK(fx.size(0) == x.size(0), op, ": fx must have one row per row of x (", x.size(0), "), got ", fx.size(0));
  TORCH_CHECK(std::isfinite(lam) && lam >= 0.0 && lam <= 1.0, op, ": lam must be a number in [0, 1], got ", lam);
  const int64_t B = x.size(0), P = x.size(1), F = fx.size(1);
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
        B, P, F, static_cast<scalar_t>(1.0 - lam), static_cast<scalar_t>(lam));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {loss, grad_gx, grad_fgx};
}

void masked_adam_cuda(const at::Tensor& z, const at::Tensor& grad, const at::Tensor& m, const at::Tensor& v,
                      const at::Tensor& step, const at::Tensor& active, double lr, double beta1, double beta2,
                      double eps) {
  const char* op = "genad_fast::masked_adam_";
  check_rows(z, op, "z", z);
  check_rows(grad, op, "grad", z);
  check_rows(m, op, "m", z);
  check_rows(v, op, "v", z);
  TORCH_CHECK(grad.sizes() == z.sizes() && m.sizes() == z.sizes() && v.sizes() == z.sizes(), op,
              ": grad, m and v must have the shape of z ", z.sizes());
  const int64_t B = z.size(0), L = z.size(1);
  TORCH_CHECK(step.device() == z.device() && active.device() == z.device(), op,
              ": step and active must be on z's device ", z.device());
  TORCH_CHECK(step.scalar_type() == at::kLong && step.dim() == 1 && step.size(0) == B, op,
              ": step must be an int64 tensor [B] (B = ", B, "), got ", step.scalar_type(), " ", step.sizes());
  TORCH_CHECK(active.scalar_type() == at::kBool && active.dim() == 1 && active.size(0) == B, op,
              ": active must be a bool tensor [B] (B = ", B, "), got ", active.scalar_type(), " ", active.sizes());
  TORCH_CHECK(std::isfinite(lr) && lr >= 0.0, op, ": lr must be a finite number >= 0, got ", lr);
  TORCH_CHECK(beta1 >= 0.0 && beta1 < 1.0 && beta2 >= 0.0 && beta2 < 1.0, op,
              ": beta1 and beta2 must be in [0, 1), got ", beta1, " and ", beta2);
  TORCH_CHECK(std::isfinite(eps) && eps >= 0.0, op, ": eps must be a finite number >= 0, got ", eps);
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
