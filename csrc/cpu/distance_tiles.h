// The CPU machinery shared by the KDE (kde.cpp) and k-nearest (knn.cpp) kernels: reference rows packed in
// strips, query chunks, and the register-blocked tile of dot products both kernels finish in registers.
//
// Squared distances come from the expansion d² = |q|² + |r|² − 2 q·r: the q·r of R queries against V strips of
// L references (L = lanes of a vector register) are accumulated over the D coordinates in R·V registers (the
// micro-kernel of a GEMM; K = D is short, so the whole sum stays in registers), and each kernel applies its
// epilogue to them there: no N×M (or tile-sized) matrix is ever written. Rows are centred on the coordinate-wise
// median of (a sample of) the finite references first (distances do not change; |q|² and |r|² get small, so the
// expansion cancels less). What remains is an absolute error of about eps·(|q − c|² + |r − c|²) in d² (c the centre):
// small next to the distances of data spread around its median, large for clusters far apart relative to
// their own spread in float32 — float64 is the dtype for such data in the KDE. The kNN only filters with it and
// ranks the survivors exactly (knn.cpp, knn_candidates.h).
//
// Rows the expansion cannot take — any NaN/inf, or a centred squared norm so large that |q|² + |r|² could
// overflow — are set aside ("exact" rows) and their pairs computed by direct differences (genad/distance.h),
// which gives the IEEE answer torch.cdist gives: NaN for NaN, inf for an infinite coordinate, NaN for inf − inf.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/macros/Macros.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <type_traits>
#include <utility>
#include <vector>

#include <genad/cpu_helpers.h>
#include <genad/distance.h>

#include "kernels.h"

namespace genad::cpu::CPU_CAPABILITY::dist {  // compiled once per capability (genad/cpu_dispatch.h)

template <typename T>
using Vec = at::vec::Vectorized<T>;

// Register tile: R query rows × V strips of L references, R·V accumulators plus V strip loads and one query
// broadcast. AVX-512 (32 registers): 8 × 3 = 24 accumulators, 28 registers. AVX2 and the baseline have 16: there
// the 8 × 3 tile spilled 13 accumulators to the stack (a load and a store around most FMAs; kNN at N5000-M50000-
// D32 ran 3.8× slower than on AVX-512 instead of 2×), so 4 × 3 = 12 accumulators, 16 registers, as the
// 6 × 16 micro-kernels of AVX2 GEMMs (BLIS, OpenBLAS Haswell) use 12 of them.
#if defined(CPU_CAPABILITY_AVX512)
constexpr int kRows = 8;
#else
constexpr int kRows = 4;
#endif
constexpr int kStrips = 3;

// Squared norms above this go to the exact path: the expansion's terms then stay below 4× it, far from overflow.
template <typename T>
inline double norm_limit() {
  return static_cast<double>(std::numeric_limits<T>::max()) / 8.0;
}

template <typename T>
inline bool row_finite(const T* x, int64_t D) {
  for (int64_t d = 0; d < D; ++d) {
    if (!std::isfinite(x[d])) return false;
  }
  return true;
}

// All references, packed for the tile: strip s holds packed refs s·L … s·L + L − 1 as [D][L] (one vector load
// per coordinate), centred on `shift`. Padding lanes of the last strip have norm +inf.
template <typename T>
struct PackedRefs {
  int64_t M = 0, D = 0;
  int64_t n_reg = 0;              // references on the expansion path
  int64_t n_strips = 0;           // ceil(n_reg / L)
  std::vector<T> shift;           // [D] the centre subtracted from every row
  std::vector<T> data;            // [n_strips][D][L]
  std::vector<T> norm;            // [n_strips · L] |r − shift|² (padding: +inf)
  double norm_max = 0.0;          // the largest |r − shift|² of the packed references, in double
  std::vector<int64_t> orig;      // [n_reg] row of each packed reference
  std::vector<int64_t> pos;       // [M] packed position of each row, −1 for an exact row
  std::vector<int64_t> exact;     // rows on the exact path, ascending
  // A form derived from this one on first use and kept with it (the kNN's int16 copy, knn_quantized.h): built
  // once, under its flag, by whichever call first needs it.
  struct Derived {
    std::once_flag once;
    std::shared_ptr<const void> value;
  };
  std::shared_ptr<Derived> extra = std::make_shared<Derived>();

  const T* strip(int64_t s) const { return data.data() + s * D * Vec<T>::size(); }
};

// Rows whose coordinate-wise median centres the references: at most this many finite ones, evenly spaced. Any
// centre leaves the distances unchanged and only the conditioning of the expansion depends on it, which a sample
// median serves as well as the full one; the full one cost a gather and a selection per coordinate over all M
// rows (21 ms of a 50,000 × 32 call on one AVX2 core, serial, against ~100 ms for the whole 5,000-query kNN).
constexpr int64_t kCentreSample = 4095;

// Rows per task of the packing passes (at::parallel_for grain).
constexpr int64_t kPackGrain = 2048;

template <typename T>
PackedRefs<T> pack_refs(const T* r, int64_t sr, int64_t M, int64_t D) {
  constexpr int64_t L = Vec<T>::size();
  PackedRefs<T> P;
  P.M = M;
  P.D = D;
  std::vector<char> finite(M);
  at::parallel_for(0, M, kPackGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) finite[i] = row_finite(r + i * sr, D);
  });
  std::vector<int64_t> finite_rows;
  finite_rows.reserve(M);
  for (int64_t i = 0; i < M; ++i) {
    if (finite[i]) finite_rows.push_back(i);
  }
  const int64_t n_fin = static_cast<int64_t>(finite_rows.size());
  // Centre: the coordinate-wise median of (a sample of) the finite rows. A central point keeps |q|² and |r|²
  // small, which is what the expansion's accuracy depends on, and the median, unlike the mean, is not dragged
  // away from the data by a few huge rows (which then go to the exact path).
  P.shift.assign(D, T(0));
  if (n_fin > 0) {
    const int64_t n_s = std::min(n_fin, kCentreSample);
    std::vector<T> col(n_s);
    for (int64_t d = 0; d < D; ++d) {
      for (int64_t c = 0; c < n_s; ++c) col[c] = r[finite_rows[c * n_fin / n_s] * sr + d];
      std::nth_element(col.begin(), col.begin() + n_s / 2, col.end());
      P.shift[d] = col[n_s / 2];
    }
  }

  std::vector<double> norms(M, 0.0);
  at::parallel_for(0, M, kPackGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      if (!finite[i]) continue;
      const T* row = r + i * sr;
      double n2 = 0.0;
      for (int64_t d = 0; d < D; ++d) {
        const double c = static_cast<double>(static_cast<T>(row[d] - P.shift[d]));
        n2 += c * c;
      }
      norms[i] = n2;
    }
  });
  P.pos.assign(M, -1);
  const double limit = norm_limit<T>();
  for (int64_t i = 0; i < M; ++i) {
    if (finite[i] && norms[i] <= limit) {
      P.pos[i] = P.n_reg++;
      P.norm_max = std::max(P.norm_max, norms[i]);
    } else {
      P.exact.push_back(i);
    }
  }
  P.n_strips = (P.n_reg + L - 1) / L;
  P.data.assign(P.n_strips * D * L, T(0));
  P.norm.assign(P.n_strips * L, std::numeric_limits<T>::infinity());
  P.orig.resize(P.n_reg);
  at::parallel_for(0, M, kPackGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t p = P.pos[i];
      if (p < 0) continue;
      P.orig[p] = i;
      const T* row = r + i * sr;
      T* dst = P.data.data() + (p / L) * D * L + p % L;
      for (int64_t d = 0; d < D; ++d) dst[d * L] = static_cast<T>(row[d] - P.shift[d]);
      P.norm[p] = static_cast<T>(norms[i]);
    }
  });
  return P;
}

// The packed form of `refs` ([M, D], rows at stride sr) for this call: the one stored for a held reference set
// (kernels.h, hold_refs) when it is unchanged, else packed now (and stored if the set is held). The tag's
// address is one per capability variant and T, the packed layout's identity.
template <typename T>
std::shared_ptr<const PackedRefs<T>> packed_refs(const at::Tensor& refs, int64_t M, int64_t D) {
  static const char tag = 0;
  if (auto held = find_held_pack(refs, &tag)) return std::static_pointer_cast<const PackedRefs<T>>(held);
  const int64_t version = refs_version(refs);  // before packing: a write during the pack makes it stale
  auto P = std::make_shared<const PackedRefs<T>>(pack_refs<T>(refs.const_data_ptr<T>(), refs.stride(0), M, D));
  store_held_pack(refs, &tag, version, P);
  return P;
}

// A chunk of query rows [i0, i1): the expansion-path rows centred and packed contiguously ([n][D]) with their
// squared norms, and the rows set aside for the exact path.
template <typename T>
struct QueryChunk {
  std::vector<T> rows;
  std::vector<T> norm;
  std::vector<int64_t> orig;
  std::vector<int64_t> exact;
  int64_t n = 0;

  void pack(const T* q, int64_t sq, int64_t i0, int64_t i1, int64_t D, const T* shift) {
    const int64_t cap = i1 - i0;
    rows.resize(cap * D);
    norm.resize(cap);
    orig.resize(cap);
    exact.clear();
    n = 0;
    const double limit = norm_limit<T>();
    for (int64_t i = i0; i < i1; ++i) {
      const T* row = q + i * sq;
      if (row_finite(row, D)) {
        T* dst = rows.data() + n * D;
        double n2 = 0.0;
        for (int64_t d = 0; d < D; ++d) {
          dst[d] = static_cast<T>(row[d] - shift[d]);
          n2 += static_cast<double>(dst[d]) * static_cast<double>(dst[d]);
        }
        if (n2 <= limit) {
          norm[n] = static_cast<T>(n2);
          orig[n] = i;
          ++n;
          continue;
        }
      }
      exact.push_back(i);
    }
  }
};

// unroll<N>(f) calls f(integral_constant<0>) … f(integral_constant<N − 1>): every index into the tile's arrays
// of registers is a compile-time constant from the start, so the compiler keeps those arrays in registers
// (with loops over them, even fully unrolled ones, GCC left most accumulators on the stack). Lambdas passed to
// it are marked GENAD_INLINE so that nothing takes the arrays' addresses.
#define GENAD_INLINE __attribute__((always_inline))

template <class F, int... I>
C10_ALWAYS_INLINE void unroll_seq(F& f, std::integer_sequence<int, I...>) {
  (f(std::integral_constant<int, I>{}), ...);
}

template <int N, class F>
C10_ALWAYS_INLINE void unroll(F&& f) {
  unroll_seq(f, std::make_integer_sequence<int, N>{});
}

// acc[r][v] = q_r · (lane l of strip v) for R packed query rows q ([R][D]) and V consecutive strips.
template <typename T, int R, int V>
C10_ALWAYS_INLINE void dot_tile(const T* __restrict__ q, int64_t D, const T* __restrict__ strips,
                                Vec<T> (&acc)[R][V]) {
  constexpr int64_t L = Vec<T>::size();
  const int64_t step = D * L;
  unroll<R>([&](auto r) GENAD_INLINE {
    unroll<V>([&](auto v) GENAD_INLINE { acc[r][v] = Vec<T>(T(0)); });
  });
  for (int64_t d = 0; d < D; ++d) {
    Vec<T> rv[V];
    unroll<V>([&](auto v) GENAD_INLINE { rv[v] = Vec<T>::loadu(strips + v * step + d * L); });
    unroll<R>([&](auto r) GENAD_INLINE {
      const Vec<T> qb(q[r * D + d]);
      unroll<V>([&](auto v) GENAD_INLINE { acc[r][v] = at::vec::fmadd(qb, rv[v], acc[r][v]); });
    });
  }
}

// Runs the epilogue over the strips [s0, s1) for one block of R packed queries: groups of kStrips strips, then
// single strips, and the strips listed in `masked` (ascending, unique) one at a time through the epilogue's
// masked variant.
template <typename T, int R, class Epi>
C10_ALWAYS_INLINE void run_strips(const T* q, const PackedRefs<T>& P, int64_t s0, int64_t s1, const int64_t* masked,
                                  int n_masked, Epi& epi) {
  int mi = 0;
  int64_t s = s0;
  while (s < s1) {
    while (mi < n_masked && masked[mi] < s) ++mi;
    const int64_t stop = (mi < n_masked && masked[mi] < s1) ? masked[mi] : s1;
    for (; s + kStrips <= stop; s += kStrips) {
      Vec<T> acc[R][kStrips];
      dot_tile<T, R, kStrips>(q, P.D, P.strip(s), acc);
      epi.template apply<kStrips, false>(acc, s);
    }
    for (; s < stop; ++s) {
      Vec<T> acc[R][1];
      dot_tile<T, R, 1>(q, P.D, P.strip(s), acc);
      epi.template apply<1, false>(acc, s);
    }
    if (s < s1) {  // s is masked[mi]
      Vec<T> acc[R][1];
      dot_tile<T, R, 1>(q, P.D, P.strip(s), acc);
      epi.template apply<1, true>(acc, s);
      ++s;
      ++mi;
    }
  }
}

// Bit l set where a[l] < b[l] (false for NaN).
template <typename T>
C10_ALWAYS_INLINE uint32_t lt_bits(const Vec<T>& a, const Vec<T>& b) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ);
  } else {
    return _mm512_cmp_pd_mask(a, b, _CMP_LT_OQ);
  }
#elif defined(CPU_CAPABILITY_AVX2)
  // one compare and a movemask (zero_mask() would compare the mask against zero once more)
  if constexpr (std::is_same_v<T, float>) {
    return static_cast<uint32_t>(_mm256_movemask_ps(_mm256_cmp_ps(a, b, _CMP_LT_OQ)));
  } else {
    return static_cast<uint32_t>(_mm256_movemask_pd(_mm256_cmp_pd(a, b, _CMP_LT_OQ)));
  }
#else
  constexpr uint32_t full = (uint32_t{1} << Vec<T>::size()) - 1;
  return ~static_cast<uint32_t>((a < b).zero_mask()) & full;
#endif
}

// 2^x for x <= 0 (−inf gives 0). float on AVX-512: x = n + f with n = round(x), |f| <= 1/2; 2^f by a degree-6
// polynomial with p(0) = 1 exactly (near-minimax relative error 2e-9, so the float result is within about one
// ulp), and 2^n applied by vscalefps, which also underflows exactly to 0 (x is kept >= −151 so that f stays
// finite; 2^−151 rounds to 0). Elsewhere, and for double, SLEEF's exp2 (1 ulp).
template <typename T>
C10_ALWAYS_INLINE Vec<T> exp2_nonpos(const Vec<T>& x) {
#if defined(CPU_CAPABILITY_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    const __m512 xc = _mm512_max_ps(x, _mm512_set1_ps(-151.0f));
    const __m512 n = _mm512_roundscale_ps(xc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(xc, n);
    __m512 p = _mm512_set1_ps(1.535336188e-04f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.339887442e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.618437358e-03f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.550332471e-02f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.402264791e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.931472029e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return Vec<T>(_mm512_scalef_ps(p, n));
  }
#endif
  return x.exp2();
}

// Strips per panel: the packed references one pass over a query block touches. About 16 KiB, so that the panel
// and a chunk's packed queries (128 rows, 16 KiB at D = 32 float32) stay in a 32 KiB L1 (AMD Zen 1-4; kNN at
// N5000-M50000-D32 on forced AVX2 ran ~4 % faster than with 128 KiB panels read from L2); a multiple of kStrips
// (a strip left over goes through the one-strip tile, one load per four FMAs), between kStrips and 63 strips.
template <typename T>
inline int64_t panel_strips(int64_t D) {
  const int64_t bytes = Vec<T>::size() * D * static_cast<int64_t>(sizeof(T));
  const int64_t strips = std::clamp<int64_t>((16 * 1024) / std::max<int64_t>(bytes, 1), kStrips, 63);
  return strips / kStrips * kStrips;
}

// f(b0, rows, p0, p1) for a chunk's n packed queries in blocks of `block` rows (the last one shorter) and the
// n_strips reference strips in panels of `panel`: every block passes over a panel while it is in L1. The block
// functions f calls are kept out of line (C10_NOINLINE): inlined into the caller's loop, GCC spilled the int16
// tile's accumulators to the stack (kNN on forced AVX2 1.45x slower).
template <class F>
inline void over_panels(int64_t n_strips, int64_t panel, int64_t n, int block, const F& f) {
  for (int64_t p0 = 0; p0 < n_strips; p0 += panel) {
    const int64_t p1 = std::min(n_strips, p0 + panel);
    for (int64_t b0 = 0; b0 < n; b0 += block) f(b0, static_cast<int>(std::min<int64_t>(block, n - b0)), p0, p1);
  }
}

// Queries per chunk: 128, fewer when that would leave a thread idle, a multiple of the register tile's rows.
inline int64_t chunk_rows(int64_t N) {
  const int64_t threads = std::max<int64_t>(1, at::get_num_threads());
  int64_t rows = std::min<int64_t>(128, (N + 4 * threads - 1) / (4 * threads));
  rows = (rows + kRows - 1) / kRows * kRows;
  return std::max<int64_t>(rows, kRows);
}

}  // namespace genad::cpu::CPU_CAPABILITY::dist
