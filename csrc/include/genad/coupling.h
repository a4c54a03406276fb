// Per-element math of the fused affine coupling (RealNVP, Dinh et al., ICLR 2017; Glow,
// Kingma & Dhariwal, NeurIPS 2018), written once for the CPU and the CUDA kernels.
//
//   s  = clamp·tanh(s_raw / clamp)   (clamp > 0: a soft clamp that bounds |s| < clamp)
//   s  = s_raw                       (clamp == 0)
//   forward:  y = x·e^s + t,          logdet = +Σ_j s_j
//   inverse:  x = (y − t)·e^{−s},     logdet = −Σ_j s_j
//
// Every function is a template over the value type V and a math policy M that supplies
// exp and tanh: V is a scalar (T) with ScalarMath on the host scalar tail and on the GPU,
// or an at::vec::Vectorized<T> with a SLEEF policy in csrc/cpu/coupling.cpp. V must be
// constructible from a scalar T and support + − · /.
#pragma once

#include <math.h>

#include <genad/macros.h>

namespace genad::coupling {

// exp/tanh for one float or double; expf/tanhf keep float math in float on host and device.
struct ScalarMath {
  static GENAD_HD float exp(float v) { return ::expf(v); }
  static GENAD_HD double exp(double v) { return ::exp(v); }
  static GENAD_HD float tanh(float v) { return ::tanhf(v); }
  static GENAD_HD double tanh(double v) { return ::tanh(v); }
};

// The log-scale s from the raw conditioner output. `clamp` is a scalar (0: no clamp); a
// caller that knows it at compile time passes a constant so that the branch folds away.
template <class M, class V, class T>
GENAD_HD V soft_clamp(V s_raw, T clamp) {
  if (clamp > T(0)) {
    return V(clamp) * M::tanh(s_raw / V(clamp));
  }
  return s_raw;
}

// The log-scale s and its derivative ds/ds_raw = 1 − tanh²(s_raw/clamp) = 1 − (s/clamp)²
// (1 without a clamp). The derivative uses tanh itself rather than s/clamp: one division
// fewer, and it is exactly what autograd's tanh backward computes.
template <class M, class V, class T>
GENAD_HD V soft_clamp_and_grad(V s_raw, T clamp, V& ds_dsraw) {
  if (clamp > T(0)) {
    const V th = M::tanh(s_raw / V(clamp));
    ds_dsraw = V(T(1)) - th * th;
    return V(clamp) * th;
  }
  ds_dsraw = V(T(1));
  return s_raw;
}

// y = x·e^s + t
template <class M, class V>
GENAD_HD V forward_elem(V x, V s, V t) {
  return x * M::exp(s) + t;
}

// x = (y − t)·e^{−s}
template <class M, class V>
GENAD_HD V inverse_elem(V y, V s, V t) {
  return (y - t) * M::exp(V(0) - s);
}

// Gradients of the forward direction for one element, recomputing s and e^s from h:
//   grad_x = gy·e^s,  grad_t = gy,  grad_s = gy·x·e^s + gl,  grad_sraw = grad_s·ds/ds_raw
// where gy is the incoming gradient of y and gl that of the row's logdet.
template <class M, class V, class T>
GENAD_HD void forward_backward_elem(V gy, V gl, V x, V s_raw, T clamp, V& grad_x, V& grad_sraw, V& grad_t) {
  V ds;
  const V s = soft_clamp_and_grad<M>(s_raw, clamp, ds);
  const V gye = gy * M::exp(s);
  grad_x = gye;
  grad_t = gy;
  grad_sraw = (gye * x + gl) * ds;
}

// Gradients of the inverse direction for one element (y is the op's input, x its output,
// recomputed here rather than saved):
//   grad_y = gx·e^{−s},  grad_t = −gx·e^{−s},  grad_s = −gx·x − gl,  grad_sraw = grad_s·ds/ds_raw
template <class M, class V, class T>
GENAD_HD void inverse_backward_elem(V gx, V gl, V y, V s_raw, V t, T clamp, V& grad_y, V& grad_sraw,
                                    V& grad_t) {
  V ds;
  const V s = soft_clamp_and_grad<M>(s_raw, clamp, ds);
  const V e = M::exp(V(0) - s);
  const V x = (y - t) * e;
  grad_y = gx * e;
  grad_t = V(0) - grad_y;
  grad_sraw = (V(0) - gx * x - gl) * ds;
}

}  // namespace genad::coupling
