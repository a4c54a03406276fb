// CUDA kernel of the Gaussian KDE log-density (genad_fast::kde_logpdf):
//
//   log p(q) = logsumexp_j(−|q − r_j|² / (2h²)) − log M' − (D/2)·log(2πh²)     (M' = M, or M − 1 leaving self out)
//
// One block of 256 threads per 64 queries; the references stream through shared memory in tiles of 64
// (distance_tile.cuh), so memory stays O(N + M) and no N×M matrix exists. Each thread folds its 4×4 squared
// distances of a tile (accumulated in the input's dtype) into an online log-sum-exp per query (genad/distance.h,
// the code the CPU kernel runs for its exact path): a running max and a sum in double, so that the M terms of a
// float32 query sum without float32 round-off, and each exponential in the input's precision (a double exp per
// pair, a software routine of ~25 double operations, cost more than the pair's 32-long distance at D = 32: the
// lead of docs/benchmark_gpu.md; expf is a few float operations); at the end the 16 threads sharing a query
// merge their states with warp shuffles. NaN terms make the result NaN; −inf terms (an
// infinite distance) add nothing.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "distance_tile.cuh"
#include "genad/distance.h"
#include "genad/host/distance.h"

namespace genad {
namespace cuda {
namespace {

namespace gd = genad::distance;
using namespace genad::cuda::tile;

template <typename T>
__global__ void __launch_bounds__(kThreads)
    kde_kernel(const T* __restrict__ q, int64_t sq, int64_t N,   // [N, D], row stride sq
               const T* __restrict__ r, int64_t sr, int64_t M,   // [M, D], row stride sr
               int64_t D, double inv_2h2, double log_norm, bool exclude_self,
               T* __restrict__ out) {                            // [N]
  __shared__ Smem<T> sm;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kTileQ;
  // the sums in double, the exponentials in the input's precision (genad/distance.h, OnlineLse)
  gd::OnlineLse<double, T> lse[kPerThread];
  for (int64_t r0 = 0; r0 < M; r0 += kTileR) {
    T d2[kPerThread][kPerThread];
    tile_sq_dist<T, T>(sm, q, sq, q0, N, r, sr, r0, M, D, d2);
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
      const int64_t qi = q0 + ty * kPerThread + i;
#pragma unroll
      for (int c = 0; c < kPerThread; ++c) {
        const int64_t j = r0 + tx + 16 * c;
        if (j < M && !(exclude_self && j == qi)) lse[i].push(-static_cast<double>(d2[i][c]) * inv_2h2);
      }
    }
  }
  // The 16 threads of a query row are one half-warp: a butterfly leaves the merged state in each of them.
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
#pragma unroll
    for (int off = 8; off > 0; off /= 2) {
      const double m_o = __shfl_xor_sync(0xffffffffu, lse[i].m, off, 16);
      const double s_o = __shfl_xor_sync(0xffffffffu, lse[i].s, off, 16);
      const int nan_o = __shfl_xor_sync(0xffffffffu, static_cast<int>(lse[i].nan), off, 16);
      lse[i].merge(m_o, s_o, nan_o != 0);
    }
    const int64_t qi = q0 + ty * kPerThread + i;
    if (tx == 0 && qi < N) out[qi] = static_cast<T>(lse[i].result() + log_norm);
  }
}

at::Tensor kde_logpdf_cuda(const at::Tensor& queries, const at::Tensor& refs, double bandwidth, bool exclude_self) {
  const host::KdeArgs args = host::check_kde(host::kCUDA, queries, refs, bandwidth, exclude_self);
  const int64_t N = args.N, M = args.M, D = args.D;
  at::Tensor out = at::empty({N}, queries.options());
  if (N == 0) return out;
  const c10::cuda::CUDAGuard guard(queries.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  const unsigned blocks = static_cast<unsigned>((N + kTileQ - 1) / kTileQ);
  AT_DISPATCH_FLOATING_TYPES(queries.scalar_type(), "genad_fast_kde_logpdf_cuda", [&] {
    kde_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        queries.const_data_ptr<scalar_t>(), queries.stride(0), N, refs.const_data_ptr<scalar_t>(), refs.stride(0), M,
        D, args.inv_2h2, args.log_norm, exclude_self, out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace
}  // namespace cuda
}  // namespace genad

TORCH_LIBRARY_IMPL(genad_fast, CUDA, m) {
  m.impl("kde_logpdf", &genad::cuda::kde_logpdf_cuda);
}
