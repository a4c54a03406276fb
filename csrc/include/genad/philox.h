// Philox4x32-10 counter-based normals: the stream of Triton's tl.randn4x, shared by the CPU and CUDA kernels.
//
// Philox4x32-10 (Salmon, Moraes, Dror & Shaw, "Parallel random numbers: as easy as 1, 2, 3", SC 2011):
// a 4x32-bit counter and a 2x32-bit key go through ten rounds of two 32x32->64 multiplications, giving four
// uniform 32-bit words. The key is the 64-bit seed (k0 = low 32 bits, k1 = high 32 bits); the counter is
// (low32(ctr), high32(ctr), 0, 0). Uniforms and normals follow triton/language/random.py (Triton 3.8):
//   u = float(x') * 4.6566127342e-10f with x' = int32(x) < 0 ? ~int32(x) : int32(x), u in [0, 1)
//   Box-Muller: u1 = max(u1, 1e-7), th = 2*pi*u2, r = sqrt(-2 log u1), (r cos th, r sin th)
// all in float32, so every backend draws the same numbers up to the last ulp of log/sqrt/sin/cos.
//
// Layout of a tensor of n elements (DESIGN.md, "Noise"): with q = ceil(n / 4), element i is normal number
// i / q of randn4(seed, offset + i % q): four contiguous quarters, each fed by one of the four normals.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "genad/macros.h"

namespace genad {
namespace philox {

constexpr uint32_t kRoundA = 0xD2511F53u;  // Philox multipliers (Random123 PHILOX_M4x32_0/1)
constexpr uint32_t kRoundB = 0xCD9E8D57u;
constexpr uint32_t kKeyA = 0x9E3779B9u;  // Weyl key increments (golden ratio, sqrt(3) - 1)
constexpr uint32_t kKeyB = 0xBB67AE85u;
constexpr int kRounds = 10;
constexpr float kUniformScale = 4.6566127342e-10f;  // largest scale with (2^31 - 1) * scale < 1 in float32
constexpr float kTwoPi = 6.283185307179586f;
constexpr float kMinUniform = 1.0e-7f;  // keeps log(u1) finite, as tl.randn4x does

struct Words {
  uint32_t x0, x1, x2, x3;
};

struct Normals {
  float n0, n1, n2, n3;
};

// Ten Philox rounds on (c0, c1, c2, c3) keyed by (k0, k1); plain integer code the compiler can vectorize
// over lanes (the 64-bit product gives hi and lo halves of the 32x32 multiplication in one step).
GENAD_HD Words philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
#ifdef __CUDACC__
#pragma unroll
#endif
  for (int r = 0; r < kRounds; ++r) {
    const uint64_t pb = static_cast<uint64_t>(kRoundB) * c2;
    const uint64_t pa = static_cast<uint64_t>(kRoundA) * c0;
    c0 = static_cast<uint32_t>(pb >> 32) ^ c1 ^ k0;
    c2 = static_cast<uint32_t>(pa >> 32) ^ c3 ^ k1;
    c1 = static_cast<uint32_t>(pb);
    c3 = static_cast<uint32_t>(pa);
    k0 += kKeyA;
    k1 += kKeyB;
  }
  return {c0, c1, c2, c3};
}

// The four Philox words of counter `ctr` under `seed`, as tl.randint4x(seed, ctr) gives them.
GENAD_HD Words philox_words(uint64_t seed, uint64_t ctr) {
  return philox4x32_10(static_cast<uint32_t>(ctr), static_cast<uint32_t>(ctr >> 32), 0u, 0u,
                       static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// tl uint_to_uniform_float: the word read as int32, negatives folded by bitwise not, scaled into [0, 1).
GENAD_HD float uint_to_uniform(uint32_t x) {
  const int32_t s = static_cast<int32_t>(x);
  const int32_t folded = s ^ (s >> 31);  // s < 0 ? ~s : s
  return static_cast<float>(folded) * kUniformScale;
}

// tl pair_uniform_to_normal: Box-Muller (Box & Muller, Ann. Math. Statist. 1958) in float32.
GENAD_HD void box_muller(float u1, float u2, float& z1, float& z2) {
#ifdef __CUDA_ARCH__
  u1 = fmaxf(kMinUniform, u1);
  const float th = kTwoPi * u2;
  const float r = sqrtf(-2.0f * logf(u1));
  float s, c;
  sincosf(th, &s, &c);
#else
  u1 = std::max(kMinUniform, u1);
  const float th = kTwoPi * u2;
  const float r = std::sqrt(-2.0f * std::log(u1));
  const float s = std::sin(th);
  const float c = std::cos(th);
#endif
  z1 = r * c;
  z2 = r * s;
}

// tl.randn4x(seed, ctr): four standard normals from one Philox call.
GENAD_HD Normals randn4(uint64_t seed, uint64_t ctr) {
  const Words w = philox_words(seed, ctr);
  Normals z;
  box_muller(uint_to_uniform(w.x0), uint_to_uniform(w.x1), z.n0, z.n1);
  box_muller(uint_to_uniform(w.x2), uint_to_uniform(w.x3), z.n2, z.n3);
  return z;
}

// Counters a tensor of n elements uses, q = ceil(n / 4): the amount a caller advances `offset` by to draw again.
GENAD_HD uint64_t counters(uint64_t n) { return (n + 3) / 4; }

GENAD_HD float component(const Normals& z, uint64_t k) {
  return k == 0 ? z.n0 : k == 1 ? z.n1 : k == 2 ? z.n2 : z.n3;
}

// Normal number i of a noise tensor of n elements drawn at (seed, offset): what genad_fast.ops.randn puts at
// flat index i. For fused kernels that draw z in-kernel (diffusion add_noise / step). It computes a whole
// Philox call for one number; a kernel that owns counter j should rather call randn4(seed, offset + j) once
// and use its four normals for elements j, q + j, 2q + j, 3q + j (those below n).
GENAD_HD float normal_at(uint64_t seed, uint64_t offset, uint64_t n, uint64_t i) {
  const uint64_t q = counters(n);
  return component(randn4(seed, offset + i % q), i / q);
}

}  // namespace philox
}  // namespace genad
