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

// log u for u in [kMinUniform, 1): positive normal floats, so no special case. u = 2^e m with m in [sqrt(1/2),
// sqrt(2)) read off the bits (the exponent of u / sqrt(1/2)), then Cephes' logf (S. L. Moshier, 1989): log(1 + f)
// = f - f^2/2 + f^3 P(f), P of degree 8, and e log 2 in two parts: peak relative error 7.6e-8 (under 1 ulp).
// Inline and without a division: SLEEF's logf (what Vectorized::log calls) is an out-of-line call with a divide,
// a third of a block's time on AVX2.
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
inline Vec log_unit(const Vec& u) {
  using at::vec::fmadd;
#if defined(CPU_CAPABILITY_AVX512)
  const __m512i bits = _mm512_castps_si512(u);
  const __m512i e = _mm512_srai_epi32(_mm512_sub_epi32(bits, _mm512_set1_epi32(0x3f3504f3)), 23);
  const Vec m(_mm512_castsi512_ps(_mm512_sub_epi32(bits, _mm512_slli_epi32(e, 23))));
  const Vec ef(_mm512_cvtepi32_ps(e));
#else
  const __m256i bits = _mm256_castps_si256(u);
  const __m256i e = _mm256_srai_epi32(_mm256_sub_epi32(bits, _mm256_set1_epi32(0x3f3504f3)), 23);
  const Vec m(_mm256_castsi256_ps(_mm256_sub_epi32(bits, _mm256_slli_epi32(e, 23))));
  const Vec ef(_mm256_cvtepi32_ps(e));
#endif
  const Vec f = m - Vec(1.0f);
  const Vec z = f * f;
  // P(f) by Estrin's scheme: a 4-deep chain of multiply-adds instead of Horner's 8 (the latency is what is left
  // once the out-of-order window is full of these).
  const Vec z2 = z * z;
  const Vec p01 = fmadd(Vec(-2.4999993993e-1f), f, Vec(3.3333331174e-1f));
  const Vec p23 = fmadd(Vec(-1.6668057665e-1f), f, Vec(2.0000714765e-1f));
  const Vec p45 = fmadd(Vec(-1.2420140846e-1f), f, Vec(1.4249322787e-1f));
  const Vec p67 = fmadd(Vec(-1.1514610310e-1f), f, Vec(1.1676998740e-1f));
  const Vec p8 = Vec(7.0376836292e-2f);
  const Vec p03 = fmadd(p23, z, p01);
  const Vec p47 = fmadd(p67, z, p45);
  const Vec p48 = fmadd(p8, z2, p47);
  const Vec p = fmadd(p48, z2, p03);
  Vec y = (p * f) * z;
  y = fmadd(ef, Vec(-2.12194440e-4f), y);
  y = fmadd(Vec(-0.5f), z, y);
  return fmadd(ef, Vec(0.693359375f), f + y);
}
#else
inline Vec log_unit(const Vec& u) { return u.log(); }
#endif

// max(kMinUniform, u): u is never NaN here, so the plain max instruction (Vectorized's maximum adds a NaN test).
inline Vec max_min_uniform(const Vec& u) {
#if defined(CPU_CAPABILITY_AVX512)
  return Vec(_mm512_max_ps(u, _mm512_set1_ps(px::kMinUniform)));
#elif defined(CPU_CAPABILITY_AVX2)
  return Vec(_mm256_max_ps(u, _mm256_set1_ps(px::kMinUniform)));
#else
  return at::vec::maximum(Vec(px::kMinUniform), u);
#endif
}

// Box-Muller on Vec::size() pairs, the vector twin of px::box_muller.
inline void box_muller(const float* u1p, const float* u2p, float* z1p, float* z2p) {
  const Vec u1 = max_min_uniform(Vec::loadu(u1p));
  const Vec th = Vec(px::kTwoPi) * Vec::loadu(u2p);
  const Vec r = (Vec(-2.0f) * log_unit(u1)).sqrt();
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
// counters' even and odd lanes go through the ten rounds apart, each word in the low half of a 64-bit lane,
// where the 32x32->64 vpmuludq reads it and leaves the product whole: hi is one shift away, lo is the product
// itself (its upper half is never read again: the multiplies and the final blend ignore it). A round of 8
// counters is then 4 multiplies, 4 shifts and 8 xors (16 uops, against 18 with the products blended back into
// 32-bit lanes every round), and the first round, whose c2 = c3 = 0, needs one multiply per half instead of two.
inline __m256i to_words(__m256i even, __m256i odd) {  // the low halves of even and odd lanes, back to 8 words
  return _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
}

inline __m256 to_uniform(__m256i x) {  // px::uint_to_uniform on 8 lanes
  const __m256i folded = _mm256_xor_si256(x, _mm256_srai_epi32(x, 31));
  return _mm256_mul_ps(_mm256_cvtepi32_ps(folded), _mm256_set1_ps(px::kUniformScale));
}

// Rounds kFirst + 1 .. kRounds of px::philox4x32_10 on kChains chains (a compile-time count, so the loop unrolls).
template <int kFirst, int kChains>
inline void rounds_from(uint32_t seed0, uint32_t seed1, __m256i (&c0)[kChains], __m256i (&c1)[kChains],
                        __m256i (&c2)[kChains], __m256i (&c3)[kChains]) {
  const __m256i a = _mm256_set1_epi32(static_cast<int>(px::kRoundA));
  const __m256i b = _mm256_set1_epi32(static_cast<int>(px::kRoundB));
  uint32_t k0 = seed0 + static_cast<uint32_t>(kFirst) * px::kKeyA;
  uint32_t k1 = seed1 + static_cast<uint32_t>(kFirst) * px::kKeyB;
  for (int r = kFirst; r < px::kRounds; ++r) {
    const __m256i key0 = _mm256_set1_epi32(static_cast<int>(k0));
    const __m256i key1 = _mm256_set1_epi32(static_cast<int>(k1));
    for (int h = 0; h < kChains; ++h) {
      const __m256i pb = _mm256_mul_epu32(b, c2[h]);
      const __m256i pa = _mm256_mul_epu32(a, c0[h]);
      // c1 ^ key first: off the multiply's critical path (7 cycles a round instead of 8)
      c0[h] = _mm256_xor_si256(_mm256_srli_epi64(pb, 32), _mm256_xor_si256(c1[h], key0));
      c2[h] = _mm256_xor_si256(_mm256_srli_epi64(pa, 32), _mm256_xor_si256(c3[h], key1));
      c1[h] = pb;
      c3[h] = pa;
    }
    k0 += px::kKeyA;
    k1 += px::kKeyB;
  }
}

inline void block_uniforms(uint64_t seed, uint64_t ctr0, float (&u)[4][kBlock]) {
  constexpr int kWidth = 8;
  alignas(64) uint32_t lo[kBlock], hi[kBlock];
  for (int64_t l = 0; l < kBlock; ++l) {
    const uint64_t ctr = ctr0 + static_cast<uint64_t>(l);
    lo[l] = static_cast<uint32_t>(ctr);
    hi[l] = static_cast<uint32_t>(ctr >> 32);
  }
  const __m256i a = _mm256_set1_epi32(static_cast<int>(px::kRoundA));
  const __m256i b = _mm256_set1_epi32(static_cast<int>(px::kRoundB));
  const uint32_t seed0 = static_cast<uint32_t>(seed), seed1 = static_cast<uint32_t>(seed >> 32);
  // Two groups of 8 counters at a time: four independent chains (their even and odd lanes) keep the multiply
  // latency of a round (7 cycles) hidden under the other chains' work (5 % faster than one group; four groups
  // spill registers and are slower).
  constexpr int kGroups = 2;
  static_assert(kBlock % (kGroups * kWidth) == 0, "kBlock must hold whole pairs of groups");
  // Where the block's counters share their high word (all but one block in 2^26), round 1 leaves c0 = high ^ seed0
  // the same in every lane, so round 2's A product is one scalar product: its lo is c3 and its hi goes into c2's
  // xor. Rounds 1 and 2 then cost a chain 7 uops instead of 12, the same words.
  const bool one_high_word = (ctr0 >> 32) == ((ctr0 + kBlock - 1) >> 32);
  const uint64_t pa_2 = uint64_t{px::kRoundA} * (static_cast<uint32_t>(ctr0 >> 32) ^ seed0);
  for (int g0 = 0; g0 < kBlock; g0 += kGroups * kWidth) {
    constexpr int kChains = 2 * kGroups;  // chain 2g: lanes 0, 2, 4, 6 of group g; chain 2g + 1: lanes 1, 3, 5, 7
    __m256i c0[kChains], c1[kChains], c2[kChains], c3[kChains];
    const __m256i seed_0 = _mm256_set1_epi32(static_cast<int>(seed0));
    const __m256i seed_1 = _mm256_set1_epi32(static_cast<int>(seed1));
    for (int g = 0; g < kGroups; ++g) {  // round 1 on (c0, c1, 0, 0): the B product is 0
      const __m256i x_lo = _mm256_load_si256(reinterpret_cast<const __m256i*>(lo + g0 + g * kWidth));
      const __m256i x_hi = _mm256_load_si256(reinterpret_cast<const __m256i*>(hi + g0 + g * kWidth));
      const __m256i in0[2] = {x_lo, _mm256_srli_epi64(x_lo, 32)};
      const __m256i in1[2] = {x_hi, _mm256_srli_epi64(x_hi, 32)};
      for (int h = 0; h < 2; ++h) {
        const __m256i pa = _mm256_mul_epu32(a, in0[h]);
        c0[2 * g + h] = _mm256_xor_si256(in1[h], seed_0);
        c1[2 * g + h] = _mm256_setzero_si256();
        c2[2 * g + h] = _mm256_xor_si256(_mm256_srli_epi64(pa, 32), seed_1);
        c3[2 * g + h] = pa;
      }
    }
    if (one_high_word) {  // round 2 with c1 = 0 and the A product pa_2
      const __m256i key0 = _mm256_set1_epi32(static_cast<int>(seed0 + px::kKeyA));
      const __m256i c2_xor = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(pa_2 >> 32) ^
                                                                 (seed1 + px::kKeyB)));
      const __m256i c3_lo = _mm256_set1_epi32(static_cast<int>(static_cast<uint32_t>(pa_2)));
      for (int h = 0; h < kChains; ++h) {
        const __m256i pb = _mm256_mul_epu32(b, c2[h]);
        c0[h] = _mm256_xor_si256(_mm256_srli_epi64(pb, 32), key0);
        c2[h] = _mm256_xor_si256(c3[h], c2_xor);
        c1[h] = pb;
        c3[h] = c3_lo;
      }
      rounds_from<2, kChains>(seed0, seed1, c0, c1, c2, c3);
    } else {
      rounds_from<1, kChains>(seed0, seed1, c0, c1, c2, c3);
    }
    for (int g = 0; g < kGroups; ++g) {
      const int at = g0 + g * kWidth, e = 2 * g, o = 2 * g + 1;
      _mm256_store_ps(&u[0][at], to_uniform(to_words(c0[e], c0[o])));
      _mm256_store_ps(&u[1][at], to_uniform(to_words(c1[e], c1[o])));
      _mm256_store_ps(&u[2][at], to_uniform(to_words(c2[e], c2[o])));
      _mm256_store_ps(&u[3][at], to_uniform(to_words(c3[e], c3[o])));
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
