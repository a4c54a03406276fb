// CUDA kernels of the diffusion ops (math in genad/diffusion.h, shared with the CPU kernels):
//   add_noise       out = a·x0 + b·z                  x0, out: [B, M]; a, b: [B]
//   diffusion_step  out = a·x_t + b·eps + c·z         x_t, eps, out: [B, M]; a, b, c: [B]
//   recon_error_accumulate_   score[B, T] += w · mean_c(mask·(x − x̂)²)   x, x̂, mask: [B, T, C], any strides
//
// In-kernel noise: one thread per Philox counter j (grid-stride loop); its four normals feed elements j, q + j,
// 2q + j, 3q + j (q = ceil(B·M / 4)), so a warp reads and writes four contiguous runs: coalesced. The reduction
// gives each (b, t) to one thread, so no two threads update one score and no atomics are needed; where the
// channels are contiguous and few, a block first reads a tile of rows as consecutive elements into shared memory
// (genad/recon_tile.h). No host synchronisation anywhere: a sampling loop of these ops can be captured in a CUDA
// graph.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <optional>

#include "genad/cuda_helpers.cuh"
#include "genad/diffusion.h"
#include "genad/host/diffusion.h"
#include "genad/recon_tile.h"

namespace genad {
namespace cuda {
namespace {

namespace gd = genad::diffusion;
constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 65535u * 8u;

template <typename T>
using Combine = host::CombineParams<T, host::Restrict, uint64_t>;

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

unsigned blocks_for(uint64_t work) { return grid_stride_blocks(work, kThreads, kMaxBlocks); }

// add_noise when eps (and b) are absent; the noise coefficient is `c`.
at::Tensor combine(const char* op, const at::Tensor& x, const std::optional<at::Tensor>& eps, const at::Tensor& a,
                   const std::optional<at::Tensor>& b, const at::Tensor& c, const char* c_name, int64_t seed,
                   int64_t offset, const std::optional<at::Tensor>& noise) {
  const host::CombineArgs args = host::check_combine(host::kCUDA, op, x, eps, a, b, c, c_name, seed, offset, noise);
  const int64_t B = args.B, M = args.M;
  at::Tensor out = at::empty({B, M}, x.options());
  if (B == 0 || M == 0) return out;
  const uint64_t n = static_cast<uint64_t>(B) * static_cast<uint64_t>(M);
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "genad_fast_diffusion_cuda", [&] {
    const Combine<scalar_t> p = host::combine_params<scalar_t, host::Restrict, uint64_t>(x, eps, a, b, c, out);
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
using Recon = host::ReconParams<T, host::Restrict>;

// One thread per (b, t): the sum over channels in T (float32 or wider), then one read-modify-write of its score
// (recon_tile::add_row_strided: any strides).
template <typename T>
__global__ void recon_error_kernel(Recon<T> p, int64_t BT) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t r = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; r < BT; r += stride) {
    recon_tile::add_row_strided<T>(p, r);
  }
}

// A block per tile of recon_tile::kRows rows (genad/recon_tile.h): offsets, then the terms read as consecutive
// elements into shared memory, then one thread per row sums them. Channel strides 1, and recon_tile::fits<T>(C).
template <typename T>
__global__ void __launch_bounds__(recon_tile::kRows) recon_tile_kernel(Recon<T> p, int64_t BT) {
  extern __shared__ __align__(16) unsigned char shared[];
  auto* offsets = reinterpret_cast<recon_tile::RowOffsets*>(shared);
  T* terms = reinterpret_cast<T*>(shared + recon_tile::kRows * sizeof(recon_tile::RowOffsets));
  const int64_t r0 = static_cast<int64_t>(blockIdx.x) * recon_tile::kRows;
  const int rows = static_cast<int>(BT - r0 < recon_tile::kRows ? BT - r0 : recon_tile::kRows);
  const int i = static_cast<int>(threadIdx.x);
  if (i < rows) offsets[i] = recon_tile::row_offsets(p, r0 + i);
  __syncthreads();
  const int n = rows * static_cast<int>(p.C);
#pragma unroll 4
  for (int f = i; f < n; f += recon_tile::kRows) recon_tile::store_term<T>(p, offsets, f, terms);
  __syncthreads();
  if (i < rows) recon_tile::add_row<T>(p, offsets, terms, i);
}

// The tiles: channel strides 1, a tile of the C channels within the shared-memory budget, a grid of tiles within
// the launch limit (else the one-thread-per-row kernel, grid-stride).
template <typename T>
bool tiles_apply(const Recon<T>& p, int64_t BT) {
  return p.x2 == 1 && p.h2 == 1 && (p.m == nullptr || p.m2 == 1) && recon_tile::fits<T>(p.C) &&
         (BT + recon_tile::kRows - 1) / recon_tile::kRows <= 0x7fffffff;
}

void recon_error_accumulate_cuda(at::Tensor score, const at::Tensor& x, const at::Tensor& x_hat,
                                 const std::optional<at::Tensor>& mask, double weight) {
  const host::ReconArgs args = host::check_recon(host::kCUDA, score, x, x_hat, mask);
  const int64_t B = args.B, Tn = args.Tn;
  if (B == 0 || Tn == 0) return;
  const c10::cuda::CUDAGuard guard(x.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "genad_fast_recon_error_cuda", [&] {
    const Recon<scalar_t> p = host::recon_params<scalar_t, host::Restrict>(score, x, x_hat, mask, weight);
    const int64_t BT = B * Tn;
    if (tiles_apply(p, BT)) {
      const int64_t tiles = (BT + recon_tile::kRows - 1) / recon_tile::kRows;
      recon_tile_kernel<scalar_t><<<static_cast<unsigned>(tiles), recon_tile::kRows,
                                    static_cast<size_t>(recon_tile::shared_bytes<scalar_t>(p.C)), stream>>>(p, BT);
    } else {
      recon_error_kernel<scalar_t><<<blocks_for(static_cast<uint64_t>(BT)), kThreads, 0, stream>>>(p, BT);
    }
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
