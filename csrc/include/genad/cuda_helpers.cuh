// Helpers of the CUDA kernels (csrc/cuda): warp reductions and grid sizes.
#pragma once

#include <cstdint>

namespace genad::cuda {

constexpr int kWarp = 32;

// The sum of v over each aligned group of 2^log2_lanes lanes (a row's group, genad/row_groups.h; 5: the warp), left
// in every lane of the group: a butterfly of shuffles over offsets 2^log2_lanes / 2, ..., 1. All 32 lanes must take
// part.
template <typename T>
__device__ __forceinline__ T group_sum(T v, int log2_lanes) {
  for (int o = (1 << log2_lanes) >> 1; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Blocks for one warp per row, `warps_per_block` rows a block.
inline unsigned warp_row_blocks(int64_t rows, int warps_per_block) {
  return static_cast<unsigned>((rows + warps_per_block - 1) / warps_per_block);
}

// Blocks of `threads` for `work` items of a grid-stride loop: one item a thread, at least one block and at most
// max_blocks (the loop covers the rest).
inline unsigned grid_stride_blocks(uint64_t work, int threads, unsigned max_blocks) {
  const uint64_t b = (work + threads - 1) / threads;
  return static_cast<unsigned>(b == 0 ? 1 : (b < max_blocks ? b : max_blocks));
}

}  // namespace genad::cuda
