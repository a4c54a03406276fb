// Argument checks of AnoGAN's latent-search ops (genad_fast::anogan_residual, genad_fast::masked_adam_), shared
// by csrc/cpu/anogan.cpp and csrc/cuda/anogan.cu.
//
// Contract (DESIGN.md, "Op contracts"): x, gx [B, P] and fx, fgx [B, F], float32 or float64, one dtype, unit
// stride on the last dimension, lam in [0, 1]; masked_adam_: z, grad, m, v [B, L] of z's dtype, step int64 [B],
// active bool [B], lr >= 0, beta1 and beta2 in [0, 1), eps >= 0, every step count in [0, 2^63 − 1).
#pragma once

#include <cmath>
#include <limits>
#include <utility>

#include <genad/host/checks.h>

namespace genad::host {

struct ResidualArgs {
  int64_t B, P, F;
  double w_p, w_f;  // (1 − lam) and lam: the weights of the two sums
};

inline ResidualArgs check_anogan_residual(Backend backend, const at::Tensor& x, const at::Tensor& gx,
                                          const at::Tensor& fx, const at::Tensor& fgx, double lam) {
  const Checks c("genad_fast::anogan_residual", backend);
  c.rows(x, "x");
  c.rows_like(gx, "gx", x, "x");
  c.rows_like(fx, "fx", x, "x");
  c.rows_like(fgx, "fgx", x, "x");
  c.same_shape(gx, "gx", x, "x");
  c.same_shape(fgx, "fgx", fx, "fx");
  c.same_rows(fx, "fx", x, "x");
  TORCH_CHECK(std::isfinite(lam) && lam >= 0.0 && lam <= 1.0, c.op(), ": lam must be a number in [0, 1], got ", lam);
  return {x.size(0), x.size(1), fx.size(1), 1.0 - lam, lam};
}

struct AdamArgs {
  int64_t B, L;
};

inline AdamArgs check_masked_adam(Backend backend, const at::Tensor& z, const at::Tensor& grad, const at::Tensor& m,
                                  const at::Tensor& v, const at::Tensor& step, const at::Tensor& active, double lr,
                                  double beta1, double beta2, double eps) {
  const Checks c("genad_fast::masked_adam_", backend);
  c.rows(z, "z");
  for (const auto& [t, name] : {std::pair{&grad, "grad"}, std::pair{&m, "m"}, std::pair{&v, "v"}}) {
    c.rows_like(*t, name, z, "z");
    c.same_shape(*t, name, z, "z");
  }
  const int64_t B = z.size(0);
  c.same_device(step, "step", z, "z");
  c.same_device(active, "active", z, "z");
  c.dtype(step, "step", {at::kLong});
  c.dtype(active, "active", {at::kBool});
  c.per_row(step, "step", B, "update count per row");
  c.per_row(active, "active", B, "flag per row");
  TORCH_CHECK(std::isfinite(lr) && lr >= 0.0, c.op(), ": lr must be a finite number >= 0, got ", lr);
  TORCH_CHECK(beta1 >= 0.0 && beta1 < 1.0, c.op(), ": beta1 must be in [0, 1), got ", beta1);
  TORCH_CHECK(beta2 >= 0.0 && beta2 < 1.0, c.op(), ": beta2 must be in [0, 1), got ", beta2);
  TORCH_CHECK(std::isfinite(eps) && eps >= 0.0, c.op(), ": eps must be a finite number >= 0, got ", eps);
  return {B, z.size(1)};
}

// Every count must be in [0, 2^63 − 1) before anything is written (the text of
// genad_fast.reference.anogan.check_step_counts): a negative count is no bias correction, 2^63 − 1 would wrap.
// Reads the counts on the host, so only the CPU kernel calls it; the CUDA kernel asserts the same range
// per row on the device (the op layer queues the check, without a host sync).
inline void check_step_counts_on_host(const at::Tensor& step) {
  const int64_t* counts = step.const_data_ptr<int64_t>();
  for (int64_t r = 0; r < step.size(0); ++r) {
    const int64_t t = counts[r * step.stride(0)];
    TORCH_CHECK_VALUE(t >= 0 && t < std::numeric_limits<int64_t>::max(),
                      "masked_adam_: step must hold update counts in [0, 2^63 - 1) (2^63 - 1 would wrap when "
                      "incremented), got ", t);
  }
}

}  // namespace genad::host
