// Per-element math of AnoGAN's latent search (Schlegl et al., "Unsupervised Anomaly Detection with
// Generative Adversarial Networks to Guide Marker Discovery", IPMI 2017), written once for the CPU and
// the CUDA kernels.
//
// Residual (one sample, data x, generated G(z), discriminator features f(x), f(G(z))):
//   loss      = (1−λ)·Σ_p |x_p − G(z)_p| + λ·Σ_f |f(x)_f − f(G(z))_f|
//   grad_gx   = ∂loss/∂G(z)    = −(1−λ)·sign(x − G(z))
//   grad_fgx  = ∂loss/∂f(G(z)) = −λ·sign(f(x) − f(G(z)))
// with sign(0) = 0 (the sub-gradient at a tie) and sign(NaN) = NaN: a NaN in the data must show in the
// gradient, not look like a perfect fit (torch.sign(NaN) is 0, so the eager reference cannot use it).
//
// Adam (Kingma & Ba, ICLR 2015) for one row whose step count has just been incremented to t, in the
// order of operations of torch.optim.Adam's default (single-tensor, no amsgrad, no weight decay) step:
//   m ← lerp(m, g, 1−β1)                  (torch: exp_avg.lerp_(grad, 1 − beta1))
//   v ← v·β2 + (1−β2)·g·g                 (torch: exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 − beta2))
//   z ← z + (−lr/(1−β1^t))·m / (√v / √(1−β2^t) + ε)
// The two bias corrections are row scalars, computed in double as torch computes them in Python and
// then rounded to the tensor's type, as torch rounds a Python scalar argument.
//
// Every element function is a template over a value type V and a math policy M supplying abs, sign,
// sqrt and fmadd: V is a scalar T with ScalarMath (CUDA, and the CPU's scalar tail), or an
// at::vec::Vectorized<T> with the vector policy of csrc/cpu/anogan.cpp.
#pragma once

#include <math.h>
#include <stdint.h>

#include <genad/macros.h>

namespace genad::anogan {

struct ScalarMath {
  static GENAD_HD float abs(float v) { return ::fabsf(v); }
  static GENAD_HD double abs(double v) { return ::fabs(v); }
  static GENAD_HD float sqrt(float v) { return ::sqrtf(v); }
  static GENAD_HD double sqrt(double v) { return ::sqrt(v); }
  static GENAD_HD float fmadd(float a, float b, float c) { return ::fmaf(a, b, c); }
  static GENAD_HD double fmadd(double a, double b, double c) { return ::fma(a, b, c); }
  // 1, −1, or d itself for ±0 (a tie: zero sub-gradient) and NaN (propagates).
  template <class T>
  static GENAD_HD T sign(T d) {
    return d > T(0) ? T(1) : (d < T(0) ? T(-1) : d);
  }
};

// |a − b| (the loss term) and neg_w·sign(a − b) (its gradient with respect to b, neg_w = −weight).
template <class M, class V>
GENAD_HD V residual_elem(V a, V b, V neg_w, V& grad_b) {
  const V d = a - b;
  grad_b = neg_w * M::sign(d);
  return M::abs(d);
}

// The row's loss from its two sums of absolute differences.
template <class T>
GENAD_HD T residual_loss(T sum_p, T sum_f, T w_p, T w_f) {
  return w_p * sum_p + w_f * sum_f;
}

// Row scalars of Adam at step t (the count after this update), in double as torch.optim.Adam's
// Python code computes them: neg_step_size = −lr/(1 − β1^t), bc2_sqrt = √(1 − β2^t).
GENAD_HD void adam_row_scalars(int64_t t, double lr, double beta1, double beta2, double& neg_step_size,
                               double& bc2_sqrt) {
  const double td = static_cast<double>(t);
  neg_step_size = -(lr / (1.0 - ::pow(beta1, td)));
  bc2_sqrt = ::sqrt(1.0 - ::pow(beta2, td));
}

// Per-element Adam constants in the tensor's type. lerp_small: 1−β1 < 0.5, where torch's lerp computes
// m + w·(g − m); otherwise it computes g − (1−w)·(g − m) = g + (w − 1)·(g − m). Either is one fmadd
// (ATen's vectorised lerp), with coefficient lerp_coef = w or w − 1.
template <class T>
struct AdamConsts {
  T lerp_coef;      // 1−β1, or −β1 when 1−β1 >= 0.5
  bool lerp_small;  // 1−β1 < 0.5
  T beta2;
  T one_minus_beta2;
  T eps;
};

template <class T>
GENAD_HD AdamConsts<T> adam_consts(double beta1, double beta2, double eps) {
  AdamConsts<T> c;
  const double w = 1.0 - beta1;
  c.lerp_small = w < 0.5;
  // torch rounds the weight to the tensor's type first, then forms weight − 1 in that type.
  const T wt = static_cast<T>(w);
  c.lerp_coef = c.lerp_small ? wt : wt - T(1);
  c.beta2 = static_cast<T>(beta2);
  c.one_minus_beta2 = static_cast<T>(1.0 - beta2);
  c.eps = static_cast<T>(eps);
  return c;
}

// One element's update in place. V-typed constants come from AdamConsts (splat for vectors).
template <class M, class V>
GENAD_HD void adam_elem(V& z, V g, V& m, V& v, V lerp_coef, bool lerp_small, V beta2, V one_minus_beta2, V eps,
                        V neg_step_size, V bc2_sqrt) {
  m = M::fmadd(lerp_coef, g - m, lerp_small ? m : g);
  v = v * beta2 + one_minus_beta2 * g * g;
  const V denom = M::sqrt(v) / bc2_sqrt + eps;
  z = z + neg_step_size * m / denom;
}

}  // namespace genad::anogan
