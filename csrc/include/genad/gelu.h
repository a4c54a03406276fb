// The exact (erf) GELU and its derivative, per element, shared by the CPU and CUDA kernels of bias_gelu:
//   GELU(u) = u·Φ(u),   GELU'(u) = Φ(u) + u·φ(u),   Φ(u) = (1 + erf(u/√2))/2,   φ(u) = exp(-u²/2)/√(2π)
// (Hendrycks & Gimpel 2016). erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7: below float32's resolution of
// Φ near 1), the same approximation ATen's vectorised erf uses, with one change: Φ is formed as 1 - P·E/2 for
// u >= 0 and P·E/2 below (P the polynomial, E = exp(-u²/2)), never as 1 + erf with erf near -1, which rounds the
// left tail to zero (ATen's float GELU is 0 there). The bound is absolute, so relative precision still falls off in
// the tail (about 0.2 % at u = -5, 2 % at -10; the output is below 2e-7 in absolute terms). E is φ's exponential
// too, so the derivative costs no second exp.
// T is float; the double kernels use the exact erf of the standard library instead (gelu_exact below).
#pragma once

#include <cmath>

#include <genad/macros.h>

namespace genad {

struct GeluParts {
  float cdf, pdf;  // Φ(u), φ(u)
};

GENAD_HD GeluParts gelu_parts(float u) {
  constexpr float kInvSqrt2 = 0.70710678118654752f, kInvSqrt2Pi = 0.39894228040143268f, p = 0.3275911f;
  constexpr float a1 = 0.254829592f, a2 = -0.284496736f, a3 = 1.421413741f, a4 = -1.453152027f, a5 = 1.061405429f;
  const float ax = std::fabs(u) * kInvSqrt2;
  const float t = 1.0f / (1.0f + p * ax);
  const float poly = ((((a5 * t + a4) * t + a3) * t + a2) * t + a1) * t;
  const float e = std::exp(-ax * ax);  // exp(-u²/2)
  const float tail = 0.5f * poly * e;  // Φ(-|u|)
  return {u >= 0.0f ? 1.0f - tail : tail, e * kInvSqrt2Pi};
}

// Exact parts in double (the reference precision of the double kernels).
GENAD_HD void gelu_exact(double u, double& cdf, double& pdf) {
  cdf = 0.5 * std::erfc(-u * 0.70710678118654752440);
  pdf = std::exp(-0.5 * u * u) * 0.39894228040143267794;
}

}  // namespace genad
