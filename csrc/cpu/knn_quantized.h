// The k-nearest search's integer filter (AVX2, float32): the dot products that rank the references are taken on
// int16 copies of the centred rows, and a bound on their error per query keeps the filter exact.
//
// vpmaddwd does 16 multiply-adds of int16 pairs into int32 lanes an instruction, the FMA 8 of float32. Where it
// issues on two ports (Intel from Skylake on) the 4 × 2 int16 tile with its epilogue ran 1.27× the 4 × 3 float
// tile (70 against 55 G lane-MAC/s, one Sapphire Rapids core at AVX2); where it issues on one (Haswell among
// them) it does as many multiply-adds a cycle as two FMA ports, so it should run at about the FMA tile's rate.
//
// The arithmetic. Rows are centred as in distance_tiles.h (q, r below are the centred float rows). Each query
// row gets its own scale s_q = max|q_d| / B and the references one scale s_r = max|r_{j,d}| / B, with
// q_d = s_q·q̃_d + e_d, r_d = s_r·r̃_d + ε_d and q̃, r̃ integers in [−B, B] (B = 8191 at D = 32: the int32 sum of D
// products stays below 2^31). The filter's value t̃ = |r|² − 2·s_q·s_r·(q̃·r̃) differs from t = |r|² − 2 q·r by
//   |t̃ − t| <= 2 Σ_d (|e_d|·A_d + s_q|q̃_d|·E_d) + (float roundings)   = margin_q,
// A_d = max_j |r_{j,d}| and E_d = max_j |ε_{j,d}|; the roundings (|r|² stored in float, the int32 sum converted,
// the FMA, the centring against the direct distances the op returns) are each within 2^-23 of (|q| + |r|)², and
// margin_q takes 2^-18 of it. A reference is a candidate while t̃ < (k-th smallest kept value) + 2·margin_q: a
// reference among the k nearest has t <= the k-th true t of those seen <= k-th kept value + margin_q, so its
// t̃ < that + 2·margin_q (ties of equal value aside, which give the same distances). The candidates that survive
// the pass are ranked by their exact distances (direct differences in double), so the op's results are the
// float64 ones, as the other variants' (their float filter keeps its own slack: knn.cpp, expansion_slack).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "distance_tiles.h"

namespace genad::cpu::CPU_CAPABILITY::dist {

#if defined(CPU_CAPABILITY_AVX2)

// Widths the int16 filter takes: the bound B falls as 1/√D (to 1448 at D = 1024), and with it the filter's
// resolution; wider rows take the float tile.
constexpr int64_t kQuantizedMaxD = 1024;
// Scales below this take the float tile (s_q·s_r must stay a normal float with its full precision).
constexpr double kMinScale = 0x1p-60;
// The float roundings' share of the margin: 2^-18·(|q| + |r|)², against about 9·2^-24 of it summed.
constexpr double kRoundingShare = 0x1p-18;
// A residual computed in float (x − s·v, one rounding) is within 2^-23 of itself of the true one.
constexpr double kResidualRounding = 1.0 + 0x1p-20;

// The int16 magnitude bound B for rows of `d_pad` (even) coordinates: D·B² < 2^31, at most 32767.
inline int32_t quantized_bound(int64_t d_pad) {
  const double b = std::floor(std::sqrt(2147483647.0 / static_cast<double>(std::max<int64_t>(d_pad, 2))));
  return static_cast<int32_t>(std::min(32767.0, b));
}

// x/scale rounded to the nearest integer in [−B, B] (0 for a zero scale).
inline int16_t quantize(double x, double scale, int32_t bound) {
  if (scale == 0.0) return 0;
  const double v = std::nearbyint(x / scale);
  return static_cast<int16_t>(std::clamp(v, -static_cast<double>(bound), static_cast<double>(bound)));
}

// The int16 copy of packed float references: strip s holds pairs of coordinates for its L lanes as
// [Dp/2][L][2] (one 256-bit load a pair), Dp = D rounded up to even (the pad is 0).
struct QuantizedRefs {
  int64_t D = 0, Dp = 0;
  int32_t bound = 0;
  double scale = 0.0;            // s_r (a float's value)
  bool usable = false;           // the scale is 0 or at least kMinScale
  std::vector<int16_t> data;     // [n_strips][Dp/2][L][2]
  std::vector<double> amax;      // [D] A_d
  std::vector<double> resid;     // [D] E_d
  double norm_bound = 0.0;       // >= |r| + |ε| of every packed reference

  const int16_t* strip(int64_t s) const { return data.data() + s * Dp * Vec<float>::size(); }
};

// Per coordinate, the lane-wise maximum over strips [s0, s1) of f(strip's vector of that coordinate), merged into
// `out` (D vectors) under `lock`.
template <class F>
void strip_max(const PackedRefs<float>& P, int64_t s0, int64_t s1, std::vector<__m256>& out, std::mutex& lock,
               const F& f) {
  constexpr int64_t L = Vec<float>::size();
  std::vector<__m256> local(P.D, _mm256_setzero_ps());
  for (int64_t s = s0; s < s1; ++s) {
    const float* src = P.strip(s);
    for (int64_t d = 0; d < P.D; ++d) local[d] = _mm256_max_ps(local[d], f(s, d, _mm256_loadu_ps(src + d * L)));
  }
  std::lock_guard<std::mutex> guard(lock);
  for (int64_t d = 0; d < P.D; ++d) out[d] = _mm256_max_ps(out[d], local[d]);
}

inline double lane_max(__m256 v) {
  alignas(32) float x[8];
  _mm256_store_ps(x, v);
  return *std::max_element(x, x + 8);
}

inline std::shared_ptr<const QuantizedRefs> build_quantized_refs(const PackedRefs<float>& P) {
  constexpr int64_t L = Vec<float>::size();
  constexpr int64_t kGrain = kPackGrain / L;
  auto Q = std::make_shared<QuantizedRefs>();
  const int64_t D = P.D, Dp = (D + 1) / 2 * 2, S = P.n_strips;
  Q->D = D;
  Q->Dp = Dp;
  Q->bound = quantized_bound(Dp);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  std::mutex lock;
  std::vector<__m256> amax(D, _mm256_setzero_ps()), resid(D, _mm256_setzero_ps());
  at::parallel_for(0, S, kGrain, [&](int64_t s0, int64_t s1) {  // padding lanes hold 0
    strip_max(P, s0, s1, amax, lock, [&](int64_t, int64_t, __m256 x) { return _mm256_andnot_ps(sign, x); });
  });
  Q->amax.resize(D);
  for (int64_t d = 0; d < D; ++d) Q->amax[d] = lane_max(amax[d]);
  const double top = D > 0 ? *std::max_element(Q->amax.begin(), Q->amax.end()) : 0.0;
  const float scale = static_cast<float>(top / Q->bound);
  Q->scale = scale;
  Q->usable = Q->scale == 0.0 || Q->scale >= kMinScale;
  Q->resid.assign(D, 0.0);
  if (!Q->usable) return Q;
  // v = round(x / s) clamped to [−B, B] (any integer serves: the residual x − s·v is what the bound uses)
  Q->data.assign(S * Dp * L, 0);
  const __m256 inv = _mm256_set1_ps(scale > 0.0f ? 1.0f / scale : 0.0f), s_v = _mm256_set1_ps(scale);
  const __m256 hi = _mm256_set1_ps(static_cast<float>(Q->bound)), lo = _mm256_set1_ps(-static_cast<float>(Q->bound));
  const auto level = [&](__m256 x) {
    const __m256 v = _mm256_round_ps(_mm256_mul_ps(x, inv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    return _mm256_min_ps(hi, _mm256_max_ps(lo, v));
  };
  at::parallel_for(0, S, kGrain, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const float* src = P.strip(s);
      __m256i* dst = reinterpret_cast<__m256i*>(Q->data.data() + s * Dp * L);
      for (int64_t d = 0; d < D; d += 2) {  // a pair of coordinates: lane l holds (v_d, v_{d+1}) as int16
        const __m256i a = _mm256_cvtps_epi32(level(_mm256_loadu_ps(src + d * L)));
        const __m256i b = d + 1 < D ? _mm256_cvtps_epi32(level(_mm256_loadu_ps(src + (d + 1) * L)))
                                    : _mm256_setzero_si256();
        _mm256_storeu_si256(dst + d / 2, _mm256_or_si256(_mm256_and_si256(a, _mm256_set1_epi32(0xFFFF)),
                                                          _mm256_slli_epi32(b, 16)));
      }
    }
    strip_max(P, s0, s1, resid, lock, [&](int64_t, int64_t, __m256 x) {
      return _mm256_andnot_ps(sign, _mm256_fnmadd_ps(s_v, level(x), x));
    });
  });
  double resid_sq = 0.0;
  for (int64_t d = 0; d < D; ++d) {
    Q->resid[d] = lane_max(resid[d]) * kResidualRounding;
    resid_sq += Q->resid[d] * Q->resid[d];
  }
  Q->norm_bound = std::sqrt(P.norm_max) * (1.0 + 0x1p-20) + std::sqrt(resid_sq);
  return Q;
}

// The int16 copy of P, built once per packed set (a held set keeps it between calls).
inline std::shared_ptr<const QuantizedRefs> quantized_refs(const PackedRefs<float>& P) {
  std::call_once(P.extra->once, [&] { P.extra->value = build_quantized_refs(P); });
  return std::static_pointer_cast<const QuantizedRefs>(P.extra->value);
}

// A chunk's packed query rows in int16 ([n][Dp]) with, per row, the coefficient −2·s_q·s_r of the int32 sums
// and the candidates' slack 2·margin_q (header comment), written to `slack` (the candidate lists' own, [n]).
struct QuantizedQueries {
  std::vector<int16_t> rows;
  std::vector<float> coef;

  void build(const QueryChunk<float>& ch, const QuantizedRefs& Q, std::vector<double>& slack) {
    const int64_t D = Q.D, Dp = Q.Dp, n = ch.n;
    rows.assign(n * Dp, 0);
    coef.resize(n);
    for (int64_t i = 0; i < n; ++i) {
      const float* q = ch.rows.data() + i * D;
      double top = 0.0;
      for (int64_t d = 0; d < D; ++d) top = std::max(top, std::fabs(double(q[d])));
      double scale = static_cast<double>(static_cast<float>(top / Q.bound));
      if (scale < kMinScale) scale = 0.0;  // the row is taken as 0: its whole value goes to the margin
      int16_t* dst = rows.data() + i * Dp;
      double dot_err = 0.0, norm_sq = 0.0, resid_sq = 0.0;
      for (int64_t d = 0; d < D; ++d) {
        const double x = q[d];
        dst[d] = quantize(x, scale, Q.bound);
        const double e = std::fabs(x - scale * dst[d]);
        dot_err += e * Q.amax[d] + scale * std::abs(dst[d]) * Q.resid[d];
        norm_sq += x * x;
        resid_sq += e * e;
      }
      const double reach = std::sqrt(norm_sq) + std::sqrt(resid_sq) + Q.norm_bound;
      const double margin = (2.0 * dot_err + kRoundingShare * reach * reach) * (1.0 + 0x1p-20);
      coef[i] = static_cast<float>(-2.0 * scale * Q.scale);
      slack[i] = 2.0 * margin;
    }
  }
};

// Register tile of the int16 filter: R query rows × V strips, R·V int32 accumulators. A pair of coordinates is one
// vpmaddwd of the query's pair (broadcast) with the strip's 8 lanes of pairs, then an add: 4 × 2 keeps the
// 8 accumulators, 2 strip loads, the broadcast and the product in 12 of the 16 registers (4 × 3 needs 17 and
// spilled; 3 × 3 ran as fast, 5 × 2 and 4 × 3 slower, on the same core).
constexpr int kQuantizedRows = 4;
constexpr int kQuantizedStrips = 2;

template <int R, int V>
C10_ALWAYS_INLINE void dot_tile_int16(const int16_t* __restrict__ q, int64_t Dp, const int16_t* __restrict__ strips,
                                      __m256i (&acc)[R][V]) {
  constexpr int64_t L = Vec<float>::size();
  const int64_t step = Dp * L;
  unroll<R>([&](auto r) GENAD_INLINE {
    unroll<V>([&](auto v) GENAD_INLINE { acc[r][v] = _mm256_setzero_si256(); });
  });
  for (int64_t p = 0; p < Dp / 2; ++p) {
    __m256i rv[V];
    unroll<V>([&](auto v) GENAD_INLINE {
      rv[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(strips + v * step + p * 2 * L));
    });
    unroll<R>([&](auto r) GENAD_INLINE {
      int32_t pair;
      __builtin_memcpy(&pair, q + r * Dp + 2 * p, sizeof(pair));
      const __m256i qb = _mm256_set1_epi32(pair);
      unroll<V>([&](auto v) GENAD_INLINE {
        const __m256i prod = _mm256_madd_epi16(qb, rv[v]);
        __asm__("vpaddd %1, %0, %0" : "+x"(acc[r][v]) : "x"(prod));
      });
    });
  }
}

// Strips per panel of the int16 tile: ~16 KiB of int16 strips (distance_tiles.h, panel_strips), a multiple of
// kQuantizedStrips.
inline int64_t quantized_panel_strips(int64_t Dp) {
  const int64_t bytes = Vec<float>::size() * Dp * static_cast<int64_t>(sizeof(int16_t));
  const int64_t strips = std::clamp<int64_t>((16 * 1024) / std::max<int64_t>(bytes, 1), kQuantizedStrips, 64);
  return strips / kQuantizedStrips * kQuantizedStrips;
}
#endif

}  // namespace genad::cpu::CPU_CAPABILITY::dist
