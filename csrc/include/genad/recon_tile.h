// recon_error_accumulate_ on tiles of rows whose channels are contiguous, in the three phases a CUDA block runs
// apart (csrc/cuda/diffusion.cu), written once so that a host program runs the same code in plain loops
// (tests/cpp/recon_tile_check.cpp, built and run by tests/test_recon_tile.py: the indexing is checked without a GPU).
//
//   score[b, t] += w · mean_c(m·(x − x̂)²)   x, x̂, m: [B, T, C]; the rows r = b·T + t of a tile are consecutive
//
// Why tiles: one thread per row reads its C channels in a loop, so the 32 threads of a warp read 32 addresses C
// elements apart at each step (most of every load transaction unused: 25 % of copy bandwidth on an H200 at C = 25,
// against torch.compile's 65 %, docs/benchmark_gpu.md). Here the block first reads the tile's rows·C terms as
// consecutive elements (consecutive threads, consecutive addresses within a sample), writes them to shared memory,
// and only then sums each row, one thread per row, channels in order, from shared memory.
//
// Phase 0 (row_offsets): thread i < rows stores row r0 + i's offsets into x, x̂, m and the score (the one
// division by T).
// Phase 1 (store_term): element f < rows·C of the tile, row f / C and channel f % C, writes its term.
// Phase 2 (add_row): thread i < rows sums row i's C terms in channel order and adds w · sum / C to its score.
// add_row_strided is the one-thread-a-row form, for every other layout.
//
// Terms sit at row·S + c with S = C | 1 (odd): in phase 2, 32 threads reading at stride S touch 32 distinct banks.
#pragma once

#include <stdint.h>

#include "genad/diffusion.h"
#include "genad/macros.h"

namespace genad {
namespace recon_tile {

constexpr int kRows = 128;                    // rows of a tile = threads of a block
constexpr int kMaxRowBytes = 256;             // terms of a row in shared memory: kRows · 256 B = 32 KiB at most

struct RowOffsets {
  int64_t x, h, m, score;
};

GENAD_HD int64_t row_stride(int64_t C) { return C | 1; }

// Whether a tile of C-channel rows of T fits the shared-memory budget (else the one-thread-per-row kernel runs).
template <class T>
GENAD_HD bool fits(int64_t C) {
  return C >= 1 && row_stride(C) * static_cast<int64_t>(sizeof(T)) <= kMaxRowBytes;
}

// Shared bytes of a block: the offsets, then the terms (RowOffsets keeps them 8-byte aligned).
template <class T>
GENAD_HD int64_t shared_bytes(int64_t C) {
  return kRows * static_cast<int64_t>(sizeof(RowOffsets)) + kRows * row_stride(C) * static_cast<int64_t>(sizeof(T));
}

// P: host::ReconParams (x, h, m pointers with strides x0, x1, ...; Tn, C; score with s0, s1; weight); the
// channel strides x2, h2, m2 are 1 on this path.
template <class P>
GENAD_HD RowOffsets row_offsets(const P& p, int64_t r) {
  const int64_t b = r / p.Tn, t = r - b * p.Tn;
  return {b * p.x0 + t * p.x1, b * p.h0 + t * p.h1, b * p.m0 + t * p.m1, b * p.s0 + t * p.s1};
}

template <class T, class P>
GENAD_HD void store_term(const P& p, const RowOffsets* offsets, int f, T* terms) {
  const int C = static_cast<int>(p.C);
  const int row = f / C, c = f - row * C;
  const RowOffsets o = offsets[row];
  const T x = p.x[o.x + c], h = p.h[o.h + c];
  terms[row * static_cast<int>(row_stride(C)) + c] =
      p.m != nullptr ? diffusion::masked_sq_err<T>(x, h, p.m[o.m + c]) : diffusion::sq_err<T>(x, h);
}

template <class T, class P>
GENAD_HD void add_row(const P& p, const RowOffsets* offsets, const T* terms, int row) {
  const int C = static_cast<int>(p.C);
  const T* own = terms + row * static_cast<int>(row_stride(C));
  T acc = T(0);
  for (int c = 0; c < C; ++c) acc += own[c];
  p.score[offsets[row].score] += p.weight * (acc / static_cast<T>(C));
}

// The one-thread-a-row form for any strides: row r's terms summed in channel order and added to its score. The
// CUDA kernel for the layouts the tiles do not take, and the reference the host check holds the tiles to.
template <class T, class P>
GENAD_HD void add_row_strided(const P& p, int64_t r) {
  const int64_t b = r / p.Tn, t = r - b * p.Tn;
  const T* x = p.x + b * p.x0 + t * p.x1;
  const T* h = p.h + b * p.h0 + t * p.h1;
  T acc = T(0);
  if (p.m != nullptr) {
    const T* m = p.m + b * p.m0 + t * p.m1;
    for (int64_t k = 0; k < p.C; ++k) acc += diffusion::masked_sq_err<T>(x[k * p.x2], h[k * p.h2], m[k * p.m2]);
  } else {
    for (int64_t k = 0; k < p.C; ++k) acc += diffusion::sq_err<T>(x[k * p.x2], h[k * p.h2]);
  }
  p.score[b * p.s0 + t * p.s1] += p.weight * (acc / static_cast<T>(p.C));
}

}  // namespace recon_tile
}  // namespace genad
