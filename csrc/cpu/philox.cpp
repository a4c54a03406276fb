// CPU kernel of genad_fast::philox_normal_: Philox4x32-10 normals in the tl.randn4x stream (genad/philox.h).
//
// Work is cut into blocks of kBlock consecutive counters. Every block runs the same code whatever the thread
// count or split: Philox on kBlock lanes (AVX-512 intrinsics, or a loop the compiler vectorizes), Box-Muller on
// whole at::vec::Vectorized<float> registers (an inline log, a shared sin/cos reduction), then up to four contiguous
// stores, partial only at the ends of the quarters. So one thread and many threads write bitwise the same tensor.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>

#include "genad/cpu_helpers.h"
#include "genad/host/philox.h"
#include "genad/philox.h"
#include "kernels.h"
#include "philox_block.h"

namespace genad {
namespace cpu {
namespace CPU_CAPABILITY {
namespace {

using philox_vec::block_normals;
using philox_vec::kBlock;
namespace px = genad::philox;

// Blocks per parallel task: 256 counters * 4 normals * 4 bytes = 4 KiB of output at least per task.
constexpr int64_t kGrainBlocks = 4;


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
  const int64_t n = host::check_philox_normal(host::kCPU, out, seed, offset);
  if (n == 0) return;
  // The op writes every byte of a buffer that is often fresh: for a large noise tensor the page faults cost
  // more than generating it (2^24 floats: ~30 ms of faults against ~12 ms of work on 2 cores).
  advise_huge_pages(out.data_ptr(), static_cast<size_t>(n) * out.element_size());
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "philox_normal_", [&] {
    philox_normal_impl<scalar_t>(out.data_ptr<scalar_t>(), n, static_cast<uint64_t>(seed),
                                 static_cast<uint64_t>(offset));
  });
}

}  // namespace

GENAD_REGISTER_KERNEL(philox_normal_stub, &philox_normal_);

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace genad
