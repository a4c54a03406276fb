// Argument checks of the Philox noise op (genad_fast::philox_normal_), shared by csrc/cpu/philox.cpp and
// csrc/cuda/philox.cu. Contract (DESIGN.md, "Noise"): out contiguous, float32 or float64, filled in place;
// seed and offset in [0, 2^63).
#pragma once

#include <genad/host/checks.h>

namespace genad::host {

// The number of elements to fill.
inline int64_t check_philox_normal(Backend backend, const at::Tensor& out, int64_t seed, int64_t offset) {
  const Checks c("genad_fast::philox_normal_", backend);
  c.device(out, "out");
  c.floating(out, "out");
  c.contiguous(out, "out");
  TORCH_CHECK(seed >= 0, c.op(), ": seed must be in [0, 2^63), got ", seed);
  TORCH_CHECK(offset >= 0, c.op(), ": offset must be in [0, 2^63), got ", offset);
  return out.numel();
}

}  // namespace genad::host
