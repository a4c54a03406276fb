// CUDA kernels of the diffusion ops (math in genad/diffusion.h, shared with the CPU kernels):
//   add_noise       out = a·x0 + b·z                  x0, out: [B, M]; a, b: [B]
//   diffusion_step  out = a·x_t + b·eps + c·z         x_t, eps, out: [B, M]; a, b, c: [B]
//   recon_error_accumulate_   score[B, T] += w · mean_c(mask·(x − x̂)²)   x, x̂, mask: [B, T, C], any strides
//
// In-kernel noise: one thread per Philox counter j (grid-stride loop); its four normals feed elements j, q + j,
// 2q + j, 3q + j (q = ceil(B·M / 4)), so a warp reads and writes four contiguous runs: coalesced. The reduction
// gives each (b, t) to one thread, so no two threads update one score and no atomics are needed. No host
// synchronisation anywhere: a sampling loop of these ops can be captured in a CUDA graph.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/MemoryOverlap.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "genad/diffusion.h"

namespace genad {
namespace cuda {
namespace {

namespace gd = genad::diffusion;
constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 65535u * 8u;

template <typename T>
struct Combine {
  const T* __restrict__ x;  // [B, M], row stride sx
  int64_t sx;
  const T* __restrict__ e;  // [B, M], row stride se (diffusion_step only)
  int64_t se;
  const T* __restrict__ a;  // [B], stride sa
  int64_t sa;
  const T* __restrict__ b;  // [B], stride sb (diffusion_step only)
  int64_t sb;
  const T* __restrict__ c;  // [B], stride sc: the noise coefficient
  int64_t sc;
  T* __restrict__ out;  // [B, M] contiguous
  uint64_t M;
};

template <typename T, bool kEps>
__device__ __forceinline__ void combine_at(const Combine<T>& p, uint64_t i, T z) {
  const uint64_t r = i / p.M, col = i - r * p.M;
  const T x = p.x[r * p.sx + col];
  if constexpr (kEps) {
    p.out[i] = gd::step_elem<T>(x, p.e[r * p.se + col], p.a[r * p.sa], p.b[r * p.sb], p.c[r * p.sc], z);
  } else {
    p.out[i] = gd::add_noise_elem<T>(x, p.a[r * p.sa], p.c[r * p.sc], z);
  }
}

template <typename T, bool kEps>
__global__ void combine_philox_kernel(Combine<T> p, uint64_t n, uint64_t q, uint64_t seed, uint64_t offset) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t j = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < q; j += stride) {
    gd::for_counter(seed, offset, n, q, j, [&](uint64_t i, float z) { combine_at<T, kEps>(p, i, static_cast<T>(z)); });
  }
}

template <typename T, bool kEps>
__global__ void combine_noise_kernel(Combine<T> p, const T* __restrict__ noise, int64_t sn, uint64_t n) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t i = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const uint64_t r = i / p.M;
    combine_at<T, kEps>(p, i, noise[r * sn + (i - r * p.M)]);
  }
}

unsigned blocks_for(uint64_t work) {
  const uint64_t b = (work + kThreads - 1) / kThreads;
  return static_cast<unsigned>(b == 0 ? 1 : (b < kMaxBlocks ? b : kMaxBlocks));
}

void check_data(const at::Tensor& t, const char* op, const char* name) {
  TORCH_CHECK(t.is_cuda(), op, ": ", name, " must be a CUDA tensor, got ", t.device());
  TORCH_CHECK(t.dim() == 2, op, ": ", name, " must be 2-D [B, M], got shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, op, ": ", name,
              " must be float32 or float64, got ", t.scalar_type());
  TORCH_CHECK(t.size(1) <= 1 || t.stride(1) == 1, op, ": ", name,
              " must have a sample's elements contiguous (unit last stride), got strides ", t.strides());
}

void check_like(const at::Tensor& t, const at::Tensor& like, const char* op, const char* name) {
  check_data(t, op, name);
  TORCH_CHECK(t.device() == like.device(), op, ": ", name, " must be on the data's device ", like.device(), ", got ",
              t.device());
  TORCH_CHECK(t.sizes() == like.sizes(), op, ": ", name, " must have the data's shape ", like.sizes(), ", got ",
              t.sizes());
  TORCH_CHECK(t.scalar_type() == like.scalar_type(), op, ": ", name, " must have the data's dtype ",
              like.scalar_type(), ", got ", t.scalar_type());
}

void check_coefficient(const at::Tensor& v, const at::Tensor& data, const char* op, const char* name) {
  TORCH_CHECK(v.device() == data.device(), op, ": ", name, " must be on the data's device ", data.device(), ", got ",
              v.device());
  TORCH_CHECK(v.dim() == 1 && v.size(0) == data.size(0), op, ": ", name,
              " must be a vector of one coefficient per sample, shape [", data.size(0), "], got ", v.sizes());
  TORCH_CHECK(v.scalar_type() == data.scalar_type(), op, ": ", name, " must have the data's dtype ",
              data.scalar_type(), ", got ", v.scalar_type());
}

// add_noise when eps (and b) are absent; the noise coefficient is `c`.
at::Tensor combine(const char* op, const at::Tensor& x, const std::optional<at::Tensor>& eps, const at::Tensor& a,
                   const std::optional<at::Tensor>& b, const at::Tensor& c, const char* c_name, int64_t seed,
                   int64_t offset, const std::optional<at::Tensor>& noise) {
  check_data(x, op, eps ? "x_t" : "x0");
  if (eps) check_like(*eps, x, op, "eps");
  check_coefficient(a, x, op, "a");
  if (b) check_coefficient(*b, x, op, "b");
  check_coefficient(c, x, op, c_name);
  if (noise) check_like(*noise, x, op, "noise");
  TORCH_CHECK(seed >= 0, op, ": seed must be in [0, 2^63), got ", seed);
  TORCH_CHECK(offset >= 0, op, ": offset must be in [0, 2^63), got ", offset);
  const int64_t B = x.size(0), M = x.size(1);
  at::Tensor out = at::empty({B, M}, x.options());
  if (B == 0 || M == 0) return out;
  const uint64_t n = static_cast<uint64_t>(B) * static_cast<uint64_t>(M);
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "genad_fast_diffusion_cuda", [&] {
    const Combine<scalar_t> p{x.const_data_ptr<scalar_t>(),
                              x.stride(0),
                              eps ? eps->const_data_ptr<scalar_t>() : nullptr,
                              eps ? eps->stride(0) : 0,
                              a.const_data_ptr<scalar_t>(),
                              a.stride(0),
                              b ? b->const_data_ptr<scalar_t>() : nullptr,
                              b ? b->stride(0) : 0,
                              c.const_data_ptr<scalar_t>(),
                              c.stride(0),
                              out.mutable_data_ptr<scalar_t>(),
                              static_cast<uint64_t>(M)};
    if (noise) {
      const scalar_t* z = noise->const_data_ptr<scalar_t>();
      if (eps) {
        combine_noise_kernel<scalar_t, true><<<blocks_for(n), kThreads, 0, stream>>>(p, z, noise->stride(0), n);
      } else {
        combine_noise_kernel<scalar_t, false><<<blocks_for(n), kThreads, 0, stream>>>(p, z, noise->stride(0), n);
      }
    } else {
      const uint64_t q = genad::philox::counters(n);
      const uint64_t s = static_cast<uint64_t>(seed), o = static_cast<uint64_t>(offset);
      if (eps) {
        combine_philox_kernel<scalar_t, true><<<blocks_for(q), kThreads, 0, stream>>>(p, n, q, s, o);
      } else {
        combine_philox_kernel<scalar_t, false><<<blocks_for(q), kThreads, 0, stream>>>(p, n, q, s, o);
      }
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor add_noise_cuda(const at::Tensor& x0, const at::Tensor& a, const at::Tensor& b, int64_t seed,
                          int64_t offset, const std::optional<at::Tensor>& noise) {
  return combine("genad_fast::add_noise", x0, std::nullopt, a, std::nullopt, b, "b", seed, offset, noise);
}

at::Tensor diffusion_step_cuda(const at::Tensor& x_t, const at::Tensor& eps, const at::Tensor& a,
                               const at::Tensor& b, const at::Tensor& c, int64_t seed, int64_t offset,
                               const std::optional<at::Tensor>& noise) {
  return combine("genad_fast::diffusion_step", x_t, eps, a, b, c, "c", seed, offset, noise);
}

// ---- recon_error_accumulate_ ----------------------------------------------------------------------------------

template <typename T>
struct Recon {
  T* __restrict__ score;  // [B, T]
  int64_t s0, s1;
  const T* __restrict__ x;  // [B, T, C]
  int64_t x0, x1, x2;
  const T* __restrict__ h;  // x_hat [B, T, C]
  int64_t h0, h1, h2;
  const T* __restrict__ m;  // mask [B, T, C] or null
  int64_t m0, m1, m2;
  int64_t T_, C;
  T weight;
};

// One thread per (b, t): the sum over channels in T (float32 or wider), then one read-modify-write of its score.
template <typename T>
__global__ void recon_error_kernel(Recon<T> p, int64_t BT) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < BT; r += stride) {
    const int64_t bi = r / p.T_, t = r - bi * p.T_;
    const T* x = p.x + bi * p.x0 + t * p.x1;
    const T* h = p.h + bi * p.h0 + t * p.h1;
    T acc = T(0);
    if (p.m != nullptr) {
      const T* m = p.m + bi * p.m0 + t * p.m1;
      for (int64_t k = 0; k < p.C; ++k) acc += gd::masked_sq_err<T>(x[k * p.x2], h[k * p.h2], m[k * p.m2]);
    } else {
      for (int64_t k = 0; k < p.C; ++k) acc += gd::sq_err<T>(x[k * p.x2], h[k * p.h2]);
    }
    p.score[bi * p.s0 + t * p.s1] += p.weight * (acc / static_cast<T>(p.C));
  }
}

void check_recon(const at::Tensor& t, const at::Tensor& x, const char* op, const char* name) {
  TORCH_CHECK(t.device() == x.device(), op, ": ", name, " must be on x's device ", x.device(), ", got ", t.device());
  TORCH_CHECK(t.sizes() == x.sizes(), op, ": ", name, " must have x's shape ", x.sizes(), ", got ", t.sizes());
  TORCH_CHECK(t.scalar_type() == x.scalar_type(), op, ": ", name, " must have x's dtype ", x.scalar_type(), ", got ",
              t.scalar_type());
}

void recon_error_accumulate_cuda(at::Tensor score, const at::Tensor& x, const at::Tensor& x_hat,
                                 const std::optional<at::Tensor>& mask, double weight) {
  const char* op = "genad_fast::recon_error_accumulate_";
  TORCH_CHECK(x.is_cuda(), op, ": x must be a CUDA tensor, got ", x.device());
  TORCH_CHECK(x.dim() == 3, op, ": x must be 3-D [B, T, C], got shape ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble, op,
              ": x must be float32 or float64, got ", x.scalar_type());
  check_recon(x_hat, x, op, "x_hat");
  if (mask) check_recon(*mask, x, op, "mask");
  TORCH_CHECK(score.device() == x.device(), op, ": score must be on x's device ", x.device(), ", got ",
              score.device());
  TORCH_CHECK(score.dim() == 2 && score.size(0) == x.size(0) && score.size(1) == x.size(1), op,
              ": score must be [B, T] = [", x.size(0), ", ", x.size(1), "], got ", score.sizes());
  TORCH_CHECK(score.scalar_type() == x.scalar_type(), op, ": score must have x's dtype ", x.scalar_type(), ", got ",
              score.scalar_type());
  // the mean over zero channels is 0/0 (the text of genad_fast.ops.recon_error_accumulate_)
  TORCH_CHECK_VALUE(x.size(2) >= 1, "x must have at least one channel (C >= 1), got shape (", x.size(0), ", ",
                    x.size(1), ", 0): the mean over channels of an empty set is undefined");
  at::assert_no_internal_overlap(score);
  for (const at::Tensor* t : {&x, &x_hat}) at::assert_no_partial_overlap(score, *t);
  if (mask) at::assert_no_partial_overlap(score, *mask);
  const int64_t B = x.size(0), Tn = x.size(1), C = x.size(2);
  if (B == 0 || Tn == 0) return;
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "genad_fast_recon_error_cuda", [&] {
    const Recon<scalar_t> p{score.mutable_data_ptr<scalar_t>(),
                            score.stride(0),
                            score.stride(1),
                            x.const_data_ptr<scalar_t>(),
                            x.stride(0),
                            x.stride(1),
                            x.stride(2),
                            x_hat.const_data_ptr<scalar_t>(),
                            x_hat.stride(0),
                            x_hat.stride(1),
                            x_hat.stride(2),
                            mask ? mask->const_data_ptr<scalar_t>() : nullptr,
                            mask ? mask->stride(0) : 0,
                            mask ? mask->stride(1) : 0,
                            mask ? mask->stride(2) : 0,
                            Tn,
                            C,
                            static_cast<scalar_t>(weight)};
    recon_error_kernel<scalar_t><<<blocks_for(static_cast<uint64_t>(B * Tn)), kThreads, 0, stream>>>(p, B * Tn);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace
}  // namespace cuda
}  // namespace genad

TORCH_LIBRARY_IMPL(genad_fast, CUDA, m) {
  m.impl("add_noise", &genad::cuda::add_noise_cuda);
  m.impl("diffusion_step", &genad::cuda::diffusion_step_cuda);
  m.impl("recon_error_accumulate_", &genad::cuda::recon_error_accumulate_cuda);
}
