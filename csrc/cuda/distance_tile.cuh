// The tile both CUDA distance kernels (kde.cu, knn.cu) share: a block of 16×16 threads owns kTileQ = 64 queries
// and walks the references in tiles of kTileR = 64, staging both through shared memory kChunkD coordinates at a
// time; thread (ty, tx) accumulates the squared distances of queries 4·ty … 4·ty + 3 to references
// tx, tx + 16, tx + 32, tx + 48 of the tile by direct differences, d² = Σ (q − r)² (genad/distance.h's
// definition: exact, and NaN/inf propagate as in torch.cdist, with no special path).
//
// Shared-memory rows are padded to kChunkD + 1 floats: the 16 threads of a half-warp read 16 different reference
// rows at the same column, which then fall in 16 different banks; the query rows they read are the same address
// (a broadcast).
#pragma once

#include <cstdint>

namespace genad::cuda::tile {

constexpr int kTileQ = 64;
constexpr int kTileR = 64;
constexpr int kChunkD = 32;
constexpr int kThreads = 256;
constexpr int kPerThread = 4;  // 4 queries × 4 references per thread

template <typename T>
struct Smem {
  T q[kTileQ][kChunkD + 1];
  T r[kTileR][kChunkD + 1];
};

// Copies rows [row0, row0 + 64) × columns [d0, d0 + kChunkD) of x (row stride sx) into dst, zeros outside
// [0, rows) × [0, D) (zeros on both sides add nothing to the distance). Consecutive threads read consecutive
// columns of a row: coalesced.
template <typename T>
__device__ __forceinline__ void stage(T (*dst)[kChunkD + 1], const T* __restrict__ x, int64_t sx, int64_t row0,
                                      int64_t rows, int64_t d0, int64_t D) {
  for (int e = threadIdx.x; e < kTileQ * kChunkD; e += kThreads) {
    const int row = e / kChunkD, col = e % kChunkD;
    const int64_t gr = row0 + row, gd = d0 + col;
    dst[row][col] = (gr < rows && gd < D) ? x[gr * sx + gd] : T(0);
  }
}

// d2[i][c] = |q_(q0 + 4ty + i) − r_(r0 + tx + 16c)|² in A (float for float32, double for float64).
template <typename T, typename A>
__device__ __forceinline__ void tile_sq_dist(Smem<T>& sm, const T* __restrict__ q, int64_t sq, int64_t q0, int64_t N,
                                             const T* __restrict__ r, int64_t sr, int64_t r0, int64_t M, int64_t D,
                                             A (&d2)[kPerThread][kPerThread]) {
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
#pragma unroll
  for (int i = 0; i < kPerThread; ++i) {
#pragma unroll
    for (int c = 0; c < kPerThread; ++c) d2[i][c] = A(0);
  }
  for (int64_t d0 = 0; d0 < D; d0 += kChunkD) {
    __syncthreads();  // the previous chunk (or tile) is no longer read
    stage(sm.q, q, sq, q0, N, d0, D);
    stage(sm.r, r, sr, r0, M, d0, D);
    __syncthreads();
    const int dk = static_cast<int>(D - d0 < kChunkD ? D - d0 : kChunkD);
    for (int d = 0; d < dk; ++d) {
      A qv[kPerThread], rv[kPerThread];
#pragma unroll
      for (int i = 0; i < kPerThread; ++i) qv[i] = static_cast<A>(sm.q[ty * kPerThread + i][d]);
#pragma unroll
      for (int c = 0; c < kPerThread; ++c) rv[c] = static_cast<A>(sm.r[tx + 16 * c][d]);
#pragma unroll
      for (int i = 0; i < kPerThread; ++i) {
#pragma unroll
        for (int c = 0; c < kPerThread; ++c) {
          const A diff = qv[i] - rv[c];
          d2[i][c] += diff * diff;
        }
      }
    }
  }
}

}  // namespace genad::cuda::tile
