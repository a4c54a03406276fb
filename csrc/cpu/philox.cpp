// CPU kernel of genad_fast::philox_normal_: Philox4x32-10 normals in the tl.randn4x stream (genad/philox.h).
//
// Work is cut into blocks of kBlock consecutive counters. Every block runs the same code whatever the thread
// count or split: Philox on kBlock lanes (plain integer loop, vectorized by the compiler), Box-Muller on whole
// at::vec::Vectorized<float> registers (SLEEF log / sincos), then up to four contiguous stores, partial only at
// the ends of the quarters. So one thread and many threads write bitwise the same tensor.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "genad/philox.h"

namespace genad {
namespace cpu {
namespace {

using Vec = at::vec::Vectorized<float>;
namespace px = genad::philox;

// Counters per block: a multiple of every Vec width (16 on AVX512, 8 on AVX2), small enough for L1.
constexpr int64_t kBlock = 64;
static_assert(kBlock % Vec::size() == 0, "kBlock must hold whole vectors");
// Blocks per parallel task: 256 counters * 4 normals * 4 bytes = 4 KiB of output at least per task.
constexpr int64_t kGrainBlocks = 4;

// sin and cos of th in one SLEEF call (1-ulp versions; Vectorized<float>::sin/cos use the 3.5-ulp ones).
inline void sincos(const Vec& th, Vec& s, Vec& c) {
#if defined(CPU_CAPABILITY_AVX512)
  const Sleef___m512_2 sc = Sleef_sincosf16_u10(th);
  s = sc.x;
  c = sc.y;
#elif defined(CPU_CAPABILITY_AVX2)
  const Sleef___m256_2 sc = Sleef_sincosf8_u10(th);
  s = sc.x;
  c = sc.y;
#else
  s = th.sin();
  c = th.cos();
#endif
}

// Box-Muller on Vec::size() pairs, the vector twin of px::box_muller.
inline void box_muller(const float* u1p, const float* u2p, float* z1p, float* z2p) {
  const Vec u1 = at::vec::maximum(Vec(px::kMinUniform), Vec::loadu(u1p));
  const Vec th = Vec(px::kTwoPi) * Vec::loadu(u2p);
  const Vec r = (Vec(-2.0f) * u1.log()).sqrt();
  Vec s, c;
  sincos(th, s, c);
  (r * c).store(z1p);
  (r * s).store(z2p);
}

// z[k][l] = normal k of counter ctr0 + l, for l < kBlock.
inline void block_normals(uint64_t seed, uint64_t ctr0, float (&z)[4][kBlock]) {
  const uint32_t k0 = static_cast<uint32_t>(seed);
  const uint32_t k1 = static_cast<uint32_t>(seed >> 32);
  alignas(64) float u[4][kBlock];
  // One Philox call per lane; no control flow, so GCC/Clang turn it into 32x32->64 vector multiplies.
  for (int64_t l = 0; l < kBlock; ++l) {
    const uint64_t ctr = ctr0 + static_cast<uint64_t>(l);
    const px::Words w =
        px::philox4x32_10(static_cast<uint32_t>(ctr), static_cast<uint32_t>(ctr >> 32), 0u, 0u, k0, k1);
    u[0][l] = px::uint_to_uniform(w.x0);
    u[1][l] = px::uint_to_uniform(w.x1);
    u[2][l] = px::uint_to_uniform(w.x2);
    u[3][l] = px::uint_to_uniform(w.x3);
  }
  for (int64_t l = 0; l < kBlock; l += Vec::size()) {
    box_muller(&u[0][l], &u[1][l], &z[0][l], &z[1][l]);
    box_muller(&u[2][l], &u[3][l], &z[2][l], &z[3][l]);
  }
}

template <typename scalar_t>
inline void store(scalar_t* dst, const float* src, int64_t count) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    std::copy(src, src + count, dst);
  } else {
    for (int64_t l = 0; l < count; ++l) dst[l] = static_cast<scalar_t>(src[l]);
  }
}

// out[n]: element i = normal i / q of randn4(seed, offset + i % q), q = ceil(n / 4).
template <typename scalar_t>
void philox_normal_impl(scalar_t* out, int64_t n, uint64_t seed, uint64_t offset) {
  const int64_t q = static_cast<int64_t>(px::counters(static_cast<uint64_t>(n)));
  const int64_t blocks = (q + kBlock - 1) / kBlock;
  at::parallel_for(0, blocks, kGrainBlocks, [&](int64_t b0, int64_t b1) {
    alignas(64) float z[4][kBlock];
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t j0 = b * kBlock;  // first counter of the block, relative to offset
      block_normals(seed, offset + static_cast<uint64_t>(j0), z);
      const int64_t in_quarter = std::min(kBlock, q - j0);
      for (int k = 0; k < 4; ++k) {
        const int64_t start = k * q + j0;
        const int64_t count = std::min(in_quarter, n - start);  // the last quarter may be short
        if (count > 0) store(out + start, z[k], count);
      }
    }
  });
}

void philox_normal_(at::Tensor out, int64_t seed, int64_t offset) {
  TORCH_CHECK(out.device().is_cpu(), "philox_normal_: out must be a CPU tensor, got ", out.device());
  TORCH_CHECK(out.scalar_type() == at::kFloat || out.scalar_type() == at::kDouble,
              "philox_normal_: out must be float32 or float64, got ", out.scalar_type());
  TORCH_CHECK(out.is_contiguous(), "philox_normal_: out must be contiguous");
  TORCH_CHECK(seed >= 0, "philox_normal_: seed must be in [0, 2^63), got ", seed);
  TORCH_CHECK(offset >= 0, "philox_normal_: offset must be in [0, 2^63), got ", offset);
  const int64_t n = out.numel();
  if (n == 0) return;
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "philox_normal_", [&] {
    philox_normal_impl<scalar_t>(out.data_ptr<scalar_t>(), n, static_cast<uint64_t>(seed),
                                 static_cast<uint64_t>(offset));
  });
}

}  // namespace
}  // namespace cpu
}  // namespace genad

TORCH_LIBRARY_IMPL(genad_fast, CPU, m) { m.impl("philox_normal_", &genad::cpu::philox_normal_); }
