// Rows of a matrix shared out among groups of CUDA lanes, each lane moving 16 bytes a load where the layout
// allows: the index math, the vector width rule and the vector loads of the row kernels (csrc/cuda/coupling.cu,
// csrc/cuda/anogan.cu), written once so that a host program runs the same code in plain loops
// (tests/cpp/row_groups_check.cpp, built and run by tests/test_row_groups.py).
//
// Why: one warp a row with one 4-byte load a lane moves 128 bytes a load instruction, and at D = 64 a warp has
// only 2 such loads of each input in flight. On an H200 that left the coupling kernels at 55 % of copy bandwidth
// against torch.compile's 73 %, and AnoGAN's residual and Adam step at 0.45x compile (docs/benchmark_gpu.md):
// a memory-bound kernel needs about bandwidth x latency (4.8 TB/s x ~0.6 us, ~22 KiB an SM) in flight. Here a row
// of n elements gets G lanes, the smallest power of two >= n / V (at most 32, a warp), and each lane loads V
// consecutive elements at once (V·sizeof(T) = 16 bytes: float4 / double2) when every row start is 16-byte
// aligned. At D = 64 float32 that is 16 lanes a row, two rows a warp, one 16-byte load a lane per input: 4x the
// bytes per load instruction and a 4-step shuffle reduction for two rows instead of a 5-step one for one.
//
// A block's threads are consecutive groups: thread i of block b serves row (b·threads + i) / G, lane i mod G.
// Groups never straddle a warp (G divides 32, a block is whole warps), so a row's reduction is a butterfly of
// __shfl_xor_sync over offsets G/2, ..., 1 within its warp.
#pragma once

#include <stdint.h>
#include <string.h>

#include <initializer_list>

#include "genad/macros.h"

namespace genad {
namespace row_groups {

constexpr int kThreads = 256;      // threads of a block: 8 warps
constexpr int kMaxLog2Lanes = 5;   // 32 lanes a row at most: one warp
constexpr int kVectorBytes = 16;   // the widest load a lane issues (ld.global.v4.f32 / v2.f64)

// V elements of T, aligned as one load: the unit a lane moves.
template <class T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <int V, class T>
GENAD_HD Pack<T, V> load(const T* p) {
#ifdef __CUDA_ARCH__
  return *reinterpret_cast<const Pack<T, V>*>(p);
#else
  Pack<T, V> r;
  memcpy(&r, p, sizeof(r));
  return r;
#endif
}

template <int V, class T>
GENAD_HD void store(T* p, const Pack<T, V>& r) {
#ifdef __CUDA_ARCH__
  *reinterpret_cast<Pack<T, V>*>(p) = r;
#else
  memcpy(p, &r, sizeof(r));
#endif
}

// log2 of the lanes a row of `vectors` loads gets: the smallest power of two >= vectors, at most a warp.
GENAD_HD int log2_lanes(int64_t vectors) {
  int l = 0;
  while (l < kMaxLog2Lanes && (int64_t{1} << l) < vectors) ++l;
  return l;
}

// Whether a row start p + k·stride (any k) is aligned for a V-element load of T: p aligned and stride a multiple
// of V. A kernel takes the wide loads only when this holds for every matrix it reads or writes and the row length
// is a multiple of V.
template <class T>
GENAD_HD bool rows_aligned(const T* p, int64_t stride, int V) {
  return reinterpret_cast<uintptr_t>(p) % (static_cast<uintptr_t>(V) * sizeof(T)) == 0 && stride % V == 0;
}

// A matrix's row starts, for vector_width.
template <class T>
struct Rows {
  const T* p;
  int64_t stride;
};

// The load width a launch takes (host side): V when every row length is a multiple of V and every matrix it reads
// or writes has its rows aligned for V-element loads (rows_aligned), else 1.
template <class T>
int vector_width(int V, std::initializer_list<int64_t> lengths, std::initializer_list<Rows<T>> matrices) {
  for (const int64_t n : lengths) {
    if (n % V != 0) return 1;
  }
  for (const Rows<T>& m : matrices) {
    if (!rows_aligned(m.p, m.stride, V)) return 1;
  }
  return V;
}

// Blocks of kThreads for `rows` rows of 2^log2 lanes each.
GENAD_HD int64_t blocks_for(int64_t rows, int log2) {
  const int64_t rows_per_block = kThreads >> log2;
  return (rows + rows_per_block - 1) / rows_per_block;
}

struct RowLane {
  int64_t row;
  int lane;
};

// The row and lane of thread `thread` of block `block`.
GENAD_HD RowLane row_lane(int64_t block, int thread, int log2) {
  return {(block * kThreads + thread) >> log2, thread & ((1 << log2) - 1)};
}

}  // namespace row_groups
}  // namespace genad
