// Per-element math of the diffusion ops (DDPM, Ho et al., NeurIPS 2020; DDIM, Song et al., ICLR 2021), shared by
// the CPU kernels (where T is also at::vec::Vectorized<float|double>: the same expression on whole registers) and
// the CUDA kernels (T = float or double).
//
// Data are [B, M] rows (a sample's M elements contiguous, any stride between samples); a, b, c are per-sample
// coefficients, so any schedule (DDPM posterior, DDIM with eta, per-sample timesteps) is one call. The noise z of
// flat element i = r·M + k is the project's Philox stream for the whole [B, M] tensor (DESIGN.md, "Noise"):
// normal number i / q of randn4(seed, offset + i % q), q = ceil(B·M / 4). A kernel that owns counter j computes
// randn4 once and updates the (up to) four elements j, q + j, 2q + j, 3q + j: nothing drawn is wasted, and every
// element's value is a function of its position only, never of how the work is split.
#pragma once

#include <stdint.h>

#include "genad/macros.h"
#include "genad/philox.h"

namespace genad {
namespace diffusion {

// Forward process q(x_t | x0): x_t = a·x0 + b·z (a = sqrt(alpha_bar_t), b = sqrt(1 - alpha_bar_t) for DDPM).
// Evaluated as the eager oracle writes it, (a·x0) + (b·z), so both round alike where no FMA is formed.
template <class T>
GENAD_HD T add_noise_elem(T x0, T a, T b, T z) {
  return a * x0 + b * z;
}

// One reverse step: x_s = a·x_t + b·eps + c·z, i.e. ((a·x_t) + (b·eps)) + (c·z) as in the oracle.
template <class T>
GENAD_HD T step_elem(T x_t, T eps, T a, T b, T c, T z) {
  return a * x_t + b * eps + c * z;
}

// One term of the reconstruction error, m·(x − x̂)². NaN and inf propagate (0·inf = NaN on purpose: a masked-out
// point whose reconstruction blew up is still reported, as the oracle's (x − x̂)²·mask reports it).
template <class T>
GENAD_HD T masked_sq_err(T x, T x_hat, T m) {
  const T d = x - x_hat;
  return m * (d * d);
}

template <class T>
GENAD_HD T sq_err(T x, T x_hat) {
  const T d = x - x_hat;
  return d * d;
}

// Visit the elements fed by counter j of a tensor of n elements (q = ceil(n / 4) counters): f(flat_index, z) for
// each of the four normals of randn4(seed, offset + j) whose element index is below n. j < q, so j itself is.
template <class F>
GENAD_HD void for_counter(uint64_t seed, uint64_t offset, uint64_t n, uint64_t q, uint64_t j, F&& f) {
  const genad::philox::Normals z = genad::philox::randn4(seed, offset + j);
  f(j, z.n0);
  if (q + j < n) f(q + j, z.n1);
  if (2 * q + j < n) f(2 * q + j, z.n2);
  if (3 * q + j < n) f(3 * q + j, z.n3);
}

}  // namespace diffusion
}  // namespace genad
