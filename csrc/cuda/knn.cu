// CUDA kernel of the k-nearest distances (genad_fast::knn_distance): [N, k] ascending, NaN last (torch.topk's
// order), exclude_self skipping j == i.
//
// One block of 256 threads per 64 queries; the references stream through shared memory in tiles of 64
// (distance_tile.cuh). After a tile's squared distances are in registers they are written to shared memory
// (over the staging buffers, no longer needed), and thread t < 64 scans its query's row of 64 against a
// register copy of its k-th best, inserting the few that beat it into that query's sorted list
// (genad/distance.h). The list lives in the output row itself ([k] squared distances, written through the L1/L2
// caches; insertions are rare after the first tiles) and becomes the distances by a square root at the end.
// Memory O(N·k + M).
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

// The staging buffers and the tile of squared distances share one shared-memory region (they are used in turn).
template <typename T>
union KnnSmem {
  Smem<T> stage;
  T d2[kTileQ][kTileR + 1];
};

__device__ __forceinline__ float sqrt_(float v) { return sqrtf(v); }
__device__ __forceinline__ double sqrt_(double v) { return sqrt(v); }

template <typename T>
__global__ void __launch_bounds__(kThreads)
    knn_kernel(const T* __restrict__ q, int64_t sq, int64_t N,   // [N, D], row stride sq
               const T* __restrict__ r, int64_t sr, int64_t M,   // [M, D], row stride sr
               int64_t D, int64_t k, bool exclude_self,
               T* __restrict__ out) {                            // [N, k]: the sorted lists, then the distances
  __shared__ KnnSmem<T> sm;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int64_t q0 = static_cast<int64_t>(blockIdx.x) * kTileQ;
  const int64_t mine = q0 + threadIdx.x;                     // the query this thread keeps the list of (t < 64)
  T* list = (threadIdx.x < kTileQ && mine < N) ? out + mine * k : nullptr;
  int64_t count = 0;
  T kth = T(0);                                               // list[k − 1] once count == k
  for (int64_t r0 = 0; r0 < M; r0 += kTileR) {
    T d2[kPerThread][kPerThread];
    tile_sq_dist<T, T>(sm.stage, q, sq, q0, N, r, sr, r0, M, D, d2);
    __syncthreads();  // every thread is done with the staged rows before they are overwritten
#pragma unroll
    for (int i = 0; i < kPerThread; ++i) {
#pragma unroll
      for (int c = 0; c < kPerThread; ++c) sm.d2[ty * kPerThread + i][tx + 16 * c] = d2[i][c];
    }
    __syncthreads();
    if (list != nullptr) {
      const int64_t n = M - r0 < kTileR ? M - r0 : kTileR;
      for (int64_t c = 0; c < n; ++c) {
        const int64_t j = r0 + c;
        if (exclude_self && j == mine) continue;
        const T v = sm.d2[threadIdx.x][c];
        if (count == k && !gd::nan_last_less(v, kth)) continue;
        count = gd::sorted_insert(list, static_cast<int64_t*>(nullptr), count, k, v, j);
        if (count == k) kth = list[k - 1];
      }
    }
    // The next tile's staging starts with __syncthreads(): no thread overwrites d2 while another still scans it.
  }
  if (list != nullptr) {
    for (int64_t t = 0; t < k; ++t) list[t] = sqrt_(list[t]);
  }
}

at::Tensor knn_distance_cuda(const at::Tensor& queries, const at::Tensor& refs, int64_t k, bool exclude_self) {
  const host::KnnArgs args = host::check_knn(host::kCUDA, queries, refs, k, exclude_self);
  const int64_t N = args.N, M = args.M, D = args.D;
  at::Tensor out = at::empty({N, k}, queries.options());
  if (N == 0) return out;
  const c10::cuda::CUDAGuard guard(queries.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  const unsigned blocks = static_cast<unsigned>((N + kTileQ - 1) / kTileQ);
  AT_DISPATCH_FLOATING_TYPES(queries.scalar_type(), "genad_fast_knn_distance_cuda", [&] {
    knn_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        queries.const_data_ptr<scalar_t>(), queries.stride(0), N, refs.const_data_ptr<scalar_t>(), refs.stride(0), M,
        D, k, exclude_self, out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace
}  // namespace cuda
}  // namespace genad

TORCH_LIBRARY_IMPL(genad_fast, CUDA, m) {
  m.impl("knn_distance", &genad::cuda::knn_distance_cuda);
}
