// Vectorized Philox4x32-10 normals for the CPU kernels (the stream of genad/philox.h, i.e. Triton's tl.randn4x):
// Philox on kBlock consecutive counters at once (AVX-512 or AVX2 intrinsics, or a loop the compiler vectorizes), then
// Box-Muller on whole at::vec::Vectorized<float> registers. Shared by the CPU kernels that draw noise: the noise
// op (philox.cpp) and the fused diffusion ops (diffusion.cpp). Host-only; every function is a pure function of
// (seed, counter), so a kernel's result does not depend on how its counters are split among threads.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <cstdint>

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

#include "genad/philox.h"

namespace genad {
namespace cpu {
namespace CPU_CAPABILITY {  // compiled once per capability (genad/cpu_dispatch.h)
namespace philox_vec {

using Vec = at::vec::Vectorized<float>;
namespace px = genad::philox;

// Counters per block: a multiple of every Vec width (16 on AVX512, 8 on AVX2), small enough for L1.
constexpr int64_t kBlock = 64;
static_assert(kBlock % Vec::size() == 0, "kBlock must hold whole vectors");

// sin and cos of th in [0, 2 pi] (th = 2 pi u2) with one shared argument reduction: th = q pi/2 + r with q the
// nearest quadrant (0..4) and r in [-pi/4, pi/4] (four-part Cody-Waite split of pi/2), then Cephes' minimax
// polynomials for sin and cos on [-pi/4, pi/4] (S. L. Moshier, "Methods and Programs for Mathematical Functions",
// 1989) and the quadrant's swap and signs: at most 1.7 ulp from the exact values over [0, 2 pi]. SLEEF's 1-ulp
// sin plus cos cost twice as much here, and its fused sincos six times as much.
inline void sincos_0_2pi(const Vec& th, Vec& s, Vec& c) {
  using at::vec::fmadd;
  const Vec q = (th * Vec(0.636619772367581343f)).round();
  // pi/2 = P1 + P2 + P3 + P4 (12-bit P1..P3, error 2e-21): q * Pk is exact and r keeps full precision even for
  // th next to a multiple of pi/2, where sin or cos is tiny.
  Vec r = fmadd(q, Vec(-0x1.922p+0f), th);
  r = fmadd(q, Vec(0x1.2aep-18f), r);
  r = fmadd(q, Vec(0x1.deap-31f), r);
  r = fmadd(q, Vec(-0x1.184698p-44f), r);
  const Vec z = r * r;
  const Vec ps = fmadd(fmadd(Vec(-1.9515295891e-4f), z, Vec(8.3321608736e-3f)), z, Vec(-1.6666654611e-1f));
  const Vec sin_r = fmadd(ps * z, r, r);
  const Vec pc = fmadd(fmadd(Vec(2.443315711809948e-5f), z, Vec(-1.388731625493765e-3f)), z,
                       Vec(4.166664568298827e-2f));
  const Vec cos_r = fmadd(pc * z, z, fmadd(Vec(-0.5f), z, Vec(1.0f)));
  // Quadrant q mod 4: (sin th, cos th) = (sin r, cos r), (cos r, -sin r), (-sin r, -cos r), (-cos r, sin r).
  const Vec q1 = q == Vec(1.0f), q2 = q == Vec(2.0f), q3 = q == Vec(3.0f);
  const Vec swap = q1 | q3;
  const Vec sign = Vec(-0.0f);
  s = Vec::blendv(sin_r, cos_r, swap) ^ ((q2 | q3) & sign);
  c = Vec::blendv(cos_r, sin_r, swap) ^ ((q1 | q2) & sign);
}

// Box-Muller on Vec::size() pairs, the vector twin of px::box_muller.
inline void box_muller(const float* u1p, const float* u2p, float* z1p, float* z2p) {
  const Vec u1 = at::vec::maximum(Vec(px::kMinUniform), Vec::loadu(u1p));
  const Vec th = Vec(px::kTwoPi) * Vec::loadu(u2p);
  const Vec r = (Vec(-2.0f) * u1.log()).sqrt();
  Vec s, c;
  sincos_0_2pi(th, s, c);
  (r * c).store(z1p);
  (r * s).store(z2p);
}

// u[k][l] = uniform k of counter ctr0 + l, for l < kBlock (Philox words through px::uint_to_uniform).
#if defined(CPU_CAPABILITY_AVX512)
// 16 lanes per register, kBlock / 16 registers interleaved so the multiply latencies overlap. GCC vectorizes
// the portable loop below with 64x64-bit multiplies and permutes; the 32x32->64 vpmuludq on even and odd
// lanes, blended back, is about twice as fast.
inline void mulhilo(__m512i a, __m512i x, __m512i& hi, __m512i& lo) {
  const __m512i even = _mm512_mul_epu32(a, x);                         // lanes 0, 2, ... as 64-bit products
  const __m512i odd = _mm512_mul_epu32(a, _mm512_srli_epi64(x, 32));  // lanes 1, 3, ...
  hi = _mm512_mask_blend_epi32(0xAAAA, _mm512_srli_epi64(even, 32), odd);
  lo = _mm512_mask_blend_epi32(0xAAAA, even, _mm512_slli_epi64(odd, 32));
}

inline __m512 to_uniform(__m512i x) {  // px::uint_to_uniform on 16 lanes
  const __m512i folded = _mm512_xor_si512(x, _mm512_srai_epi32(x, 31));
  return _mm512_mul_ps(_mm512_cvtepi32_ps(folded), _mm512_set1_ps(px::kUniformScale));
}

inline void block_uniforms(uint64_t seed, uint64_t ctr0, float (&u)[4][kBlock]) {
  constexpr int kWidth = 16;
  constexpr int kRegs = kBlock / kWidth;
  alignas(64) uint32_t lo[kBlock], hi[kBlock];
  for (int64_t l = 0; l < kBlock; ++l) {
    const uint64_t ctr = ctr0 + static_cast<uint64_t>(l);
    lo[l] = static_cast<uint32_t>(ctr);
    hi[l] = static_cast<uint32_t>(ctr >> 32);
  }
  __m512i c0[kRegs], c1[kRegs], c2[kRegs], c3[kRegs];
  for (int g = 0; g < kRegs; ++g) {
    c0[g] = _mm512_load_si512(lo + g * kWidth);
    c1[g] = _mm512_load_si512(hi + g * kWidth);
    c2[g] = c3[g] = _mm512_setzero_si512();
  }
  const __m512i a = _mm512_set1_epi32(static_cast<int>(px::kRoundA));
  const __m512i b = _mm512_set1_epi32(static_cast<int>(px::kRoundB));
  uint32_t k0 = static_cast<uint32_t>(seed);
  uint32_t k1 = static_cast<uint32_t>(seed >> 32);
  for (int r = 0; r < px::kRounds; ++r) {
    const __m512i key0 = _mm512_set1_epi32(static_cast<int>(k0));
    const __m512i key1 = _mm512_set1_epi32(static_cast<int>(k1));
    for (int g = 0; g < kRegs; ++g) {  // the round of px::philox4x32_10
      __m512i hi_b, lo_b, hi_a, lo_a;
      mulhilo(b, c2[g], hi_b, lo_b);
      mulhilo(a, c0[g], hi_a, lo_a);
      c0[g] = _mm512_ternarylogic_epi32(hi_b, c1[g], key0, 0x96);  // three-way xor
      c2[g] = _mm512_ternarylogic_epi32(hi_a, c3[g], key1, 0x96);
      c1[g] = lo_b;
      c3[g] = lo_a;
    }
    k0 += px::kKeyA;
    k1 += px::kKeyB;
  }
  for (int g = 0; g < kRegs; ++g) {
    _mm512_store_ps(&u[0][g * kWidth], to_uniform(c0[g]));
    _mm512_store_ps(&u[1][g * kWidth], to_uniform(c1[g]));
    _mm512_store_ps(&u[2][g * kWidth], to_uniform(c2[g]));
    _mm512_store_ps(&u[3][g * kWidth], to_uniform(c3[g]));
  }
}
#elif defined(CPU_CAPABILITY_AVX2)
// 8 lanes per register. AVX2 has no 64-bit multiply-low, so GCC's vectorization of the portable loop below
// builds each 64-bit product from three vpmuludq and shifts: about 10x slower than the AVX-512 path. Here the
// 32x32->64 vpmuludq on even and odd lanes, blended back (the AVX-512 path's mulhilo on 256 bits). Two groups of
// 8 counters go through the ten rounds together, so their multiplies overlap in 8 of the 16 ymm registers.
inline void mulhilo(__m256i a, __m256i x, __m256i& hi, __m256i& lo) {
  const __m256i even = _mm256_mul_epu32(a, x);                         // lanes 0, 2, ... as 64-bit products
  const __m256i odd = _mm256_mul_epu32(a, _mm256_srli_epi64(x, 32));  // lanes 1, 3, ...
  hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

inline __m256 to_uniform(__m256i x) {  // px::uint_to_uniform on 8 lanes
  const __m256i folded = _mm256_xor_si256(x, _mm256_srai_epi32(x, 31));
  return _mm256_mul_ps(_mm256_cvtepi32_ps(folded), _mm256_set1_ps(px::kUniformScale));
}

inline void block_uniforms(uint64_t seed, uint64_t ctr0, float (&u)[4][kBlock]) {
  constexpr int kWidth = 8;
  constexpr int kGroup = 2;  // registers of counters in flight together
  static_assert(kBlock % (kWidth * kGroup) == 0, "kBlock must hold whole groups");
  alignas(64) uint32_t lo[kBlock], hi[kBlock];
  for (int64_t l = 0; l < kBlock; ++l) {
    const uint64_t ctr = ctr0 + static_cast<uint64_t>(l);
    lo[l] = static_cast<uint32_t>(ctr);
    hi[l] = static_cast<uint32_t>(ctr >> 32);
  }
  const __m256i a = _mm256_set1_epi32(static_cast<int>(px::kRoundA));
  const __m256i b = _mm256_set1_epi32(static_cast<int>(px::kRoundB));
  for (int g0 = 0; g0 < kBlock; g0 += kWidth * kGroup) {
    __m256i c0[kGroup], c1[kGroup], c2[kGroup], c3[kGroup];
    for (int g = 0; g < kGroup; ++g) {
      c0[g] = _mm256_load_si256(reinterpret_cast<const __m256i*>(lo + g0 + g * kWidth));
      c1[g] = _mm256_load_si256(reinterpret_cast<const __m256i*>(hi + g0 + g * kWidth));
      c2[g] = c3[g] = _mm256_setzero_si256();
    }
    uint32_t k0 = static_cast<uint32_t>(seed);
    uint32_t k1 = static_cast<uint32_t>(seed >> 32);
    for (int r = 0; r < px::kRounds; ++r) {
      const __m256i key0 = _mm256_set1_epi32(static_cast<int>(k0));
      const __m256i key1 = _mm256_set1_epi32(static_cast<int>(k1));
      for (int g = 0; g < kGroup; ++g) {  // the round of px::philox4x32_10
        __m256i hi_b, lo_b, hi_a, lo_a;
        mulhilo(b, c2[g], hi_b, lo_b);
        mulhilo(a, c0[g], hi_a, lo_a);
        c0[g] = _mm256_xor_si256(_mm256_xor_si256(hi_b, c1[g]), key0);
        c2[g] = _mm256_xor_si256(_mm256_xor_si256(hi_a, c3[g]), key1);
        c1[g] = lo_b;
        c3[g] = lo_a;
      }
      k0 += px::kKeyA;
      k1 += px::kKeyB;
    }
    for (int g = 0; g < kGroup; ++g) {
      const int l = g0 + g * kWidth;
      _mm256_store_ps(&u[0][l], to_uniform(c0[g]));
      _mm256_store_ps(&u[1][l], to_uniform(c1[g]));
      _mm256_store_ps(&u[2][l], to_uniform(c2[g]));
      _mm256_store_ps(&u[3][l], to_uniform(c3[g]));
    }
  }
}
#else
inline void block_uniforms(uint64_t seed, uint64_t ctr0, float (&u)[4][kBlock]) {
  const uint32_t k0 = static_cast<uint32_t>(seed);
  const uint32_t k1 = static_cast<uint32_t>(seed >> 32);
  // One Philox call per lane, no control flow: the compiler vectorizes it over lanes.
  for (int64_t l = 0; l < kBlock; ++l) {
    const uint64_t ctr = ctr0 + static_cast<uint64_t>(l);
    const px::Words w =
        px::philox4x32_10(static_cast<uint32_t>(ctr), static_cast<uint32_t>(ctr >> 32), 0u, 0u, k0, k1);
    u[0][l] = px::uint_to_uniform(w.x0);
    u[1][l] = px::uint_to_uniform(w.x1);
    u[2][l] = px::uint_to_uniform(w.x2);
    u[3][l] = px::uint_to_uniform(w.x3);
  }
}
#endif

// z[k][l] = normal k of counter ctr0 + l, for l < kBlock.
inline void block_normals(uint64_t seed, uint64_t ctr0, float (&z)[4][kBlock]) {
  alignas(64) float u[4][kBlock];
  block_uniforms(seed, ctr0, u);
  for (int64_t l = 0; l < kBlock; l += Vec::size()) {
    box_muller(&u[0][l], &u[1][l], &z[0][l], &z[1][l]);
    box_muller(&u[2][l], &u[3][l], &z[2][l], &z[3][l]);
  }
}

}  // namespace philox_vec
}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace genad
