// Argument checks of the affine coupling ops (genad_fast::coupling_forward / _inverse / _backward), shared by
// csrc/cpu/coupling.cpp and csrc/cuda/coupling.cu. Contract (DESIGN.md, "Op contracts"): a = x (forward), y
// (inverse) or inp (backward) [N, D] and h [N, 2D] = (raw log-scale | shift), float32 or float64, unit stride
// on the last dimension; clamp finite and >= 0.
#pragma once

#include <cmath>

#include <genad/host/checks.h>

namespace genad::host {

struct CouplingArgs {
  int64_t N, D;
};

inline void check_coupling_pair(const Checks& c, const at::Tensor& a, const char* a_name, const at::Tensor& h,
                                double clamp) {
  c.rows(a, a_name);
  c.rows_like(h, "h", a, a_name);
  c.same_rows(h, "h", a, a_name);
  TORCH_CHECK(h.size(1) == 2 * a.size(1), c.op(), ": h must be 2·D = ", 2 * a.size(1),
              " wide (log-scale | shift) for ", a_name, " of width D = ", a.size(1), ", got ", h.size(1));
  TORCH_CHECK(std::isfinite(clamp) && clamp >= 0.0, c.op(),
              ": clamp must be a finite number >= 0 (0: no clamp), got ", clamp);
}

// Forward (a = x) or inverse (a = y).
inline CouplingArgs check_coupling(Backend backend, bool inverse, const at::Tensor& a, const at::Tensor& h,
                                   double clamp) {
  const Checks c(inverse ? "genad_fast::coupling_inverse" : "genad_fast::coupling_forward", backend);
  check_coupling_pair(c, a, inverse ? "y" : "x", h, clamp);
  return {a.size(0), a.size(1)};
}

// grad_out [N, D] may be broadcast along its rows (column stride 0, as autograd hands over the gradient of
// y.sum()): the kernels read it as such rather than materialising an [N, D] tensor of ones.
inline CouplingArgs check_coupling_backward(Backend backend, const at::Tensor& grad_out,
                                            const at::Tensor& grad_logdet, const at::Tensor& inp,
                                            const at::Tensor& h, double clamp) {
  const Checks c("genad_fast::coupling_backward", backend);
  check_coupling_pair(c, inp, "inp", h, clamp);
  c.rows_like(grad_out, "grad_out", inp, "inp", 2, /*broadcast_ok=*/true);
  c.same_shape(grad_out, "grad_out", inp, "inp");
  c.same_device(grad_logdet, "grad_logdet", inp, "inp");
  c.per_row(grad_logdet, "grad_logdet", inp.size(0), "entry per row");
  c.same_dtype(grad_logdet, "grad_logdet", inp, "inp");
  return {inp.size(0), inp.size(1)};
}

}  // namespace genad::host
