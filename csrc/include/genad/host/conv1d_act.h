// Argument checks of genad_fast::conv1d_act (one stage of a 1-D convolutional encoder or decoder), shared by
// csrc/cpu/conv1d_act.cpp and csrc/cuda/conv1d_act.cu. Contract (csrc/ops.cpp): x [N, C_in, L_in] float32 or
// float64, any strides; weight [C_out, C_in, k] and bias [C_out] of x's dtype on x's device; length >= 1 (the
// input's length after nearest upsampling; L_in: none); the output [N, C_out, L_out], L_c = length + 2·(k / 2)
// - k + 1 and L_out = pool ? ceil(L_c / 2) : L_c.
#pragma once

#include <cmath>
#include <optional>

#include <genad/host/checks.h>

namespace genad::host {

struct Conv1dActArgs {
  int64_t N, C_in, L_in, C_out, k, length, pad, L_conv, L_out;
};

inline Conv1dActArgs check_conv1d_act(Backend backend, const at::Tensor& x, const at::Tensor& weight,
                                      const std::optional<at::Tensor>& bias, int64_t length, bool pool) {
  const Checks c("genad_fast::conv1d_act", backend);
  c.device(x, "x");
  c.rank(x, "x", 3);
  c.floating(x, "x");
  c.same_device(weight, "weight", x, "x");
  c.rank(weight, "weight", 3);
  c.same_dtype(weight, "weight", x, "x");
  const int64_t N = x.size(0), C_in = x.size(1), L_in = x.size(2), C_out = weight.size(0), k = weight.size(2);
  TORCH_CHECK(C_in >= 1 && L_in >= 1, c.op(), ": x must have at least one channel and one timestamp, got shape ",
              x.sizes());
  TORCH_CHECK(C_out >= 1 && k >= 1, c.op(), ": weight must have at least one output channel and one tap, got shape ",
              weight.sizes());
  c.shape(weight, "weight", {C_out, C_in, k});
  if (bias) {
    c.same_device(*bias, "bias", x, "x");
    c.same_dtype(*bias, "bias", x, "x");
    c.shape(*bias, "bias", {C_out});
  }
  TORCH_CHECK(length >= 1, c.op(), ": length must be >= 1 (the input's length after upsampling), got ", length);
  const int64_t pad = k / 2;
  const int64_t L_conv = length + 2 * pad - k + 1;
  return {N, C_in, L_in, C_out, k, length, pad, L_conv, pool ? (L_conv + 1) / 2 : L_conv};
}

// The source index of output position i of a nearest upsampling from `in` to `out` positions, as ATen's
// upsample_nearest1d computes it (scale = in / out in float32, floor(i · scale), clamped), so both pick the same
// input timestamps. Host code: the CUDA twin composes ATen's own upsampling.
inline int64_t nearest_source(int64_t i, int64_t in, int64_t out) {
  if (in == out) return i;
  if (out == 2 * in) return i >> 1;  // ATen's exact shortcut for a factor of 2
  const float scale = static_cast<float>(in) / static_cast<float>(out);
  const int64_t src = static_cast<int64_t>(std::floor(static_cast<float>(i) * scale));
  return src < in - 1 ? src : in - 1;
}

}  // namespace genad::host
