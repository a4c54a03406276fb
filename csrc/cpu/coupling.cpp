// Fused affine coupling on the CPU: forward, inverse and their shared backward, one pass over
// each row (read x and h once, write y and the row's logdet). Math in genad/coupling.h;
// exp/tanh vectorised with at::vec::Vectorized (SLEEF), never -ffast-math, so NaN/inf propagate.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <cmath>
#include <tuple>

#include "kernels.h"

#include <genad/coupling.h>
#include <genad/cpu_helpers.h>
#include <genad/host/coupling.h>

namespace genad::cpu {
namespace CPU_CAPABILITY {
namespace {

namespace gc = genad::coupling;

// tanh of 16 (AVX-512) or 8 (AVX2) floats, about 2.5x faster than SLEEF's tanhf and within ~2 ulp:
//   |u| < 0.625:  tanh u = u + u³·P(u²), P of degree 4 (relative-error minimax fit on [0, 0.625], 4e-9);
//   |u| ≥ 0.625:  tanh u = 1 − 2/(e^{2|u|} + 1), where 1 − (…) ≥ 0.55 loses no precision to cancellation;
// the sign of u is copied back (tanh(−0) = −0). NaN takes the second branch and stays NaN; ±inf gives ±1.
at::vec::Vectorized<float> tanh_float(const at::vec::Vectorized<float>& u) {
  using Vec = at::vec::Vectorized<float>;
  const Vec a = u.abs();
  const Vec z = a * a;
  Vec p(-0.005704986862838268f);
  p = at::vec::fmadd(p, z, Vec(0.0206390880048275f));
  p = at::vec::fmadd(p, z, Vec(-0.05373971536755562f));
  p = at::vec::fmadd(p, z, Vec(0.13331441581249237f));
  p = at::vec::fmadd(p, z, Vec(-0.3333328068256378f));
  const Vec small = at::vec::fmadd(a * z, p, a);
  const Vec big = Vec(1.0f) - Vec(2.0f) / ((a + a).exp() + Vec(1.0f));
  const Vec magnitude = Vec::blendv(big, small, a < Vec(0.625f));
  return magnitude | (u & Vec(-0.0f));
}

// exp/tanh of a whole vector: ATen's SLEEF bindings (1-ulp variants), and the faster float tanh above.
struct VecMath {
  template <class V>
  static V exp(const V& v) {
    return v.exp();
  }
  static at::vec::Vectorized<float> tanh(const at::vec::Vectorized<float>& v) { return tanh_float(v); }
  static at::vec::Vectorized<double> tanh(const at::vec::Vectorized<double>& v) { return v.tanh(); }
};

// y[N, D] and logdet[N] from x[N, D] (row stride sx) and h[N, 2D] (row stride sh).
template <typename T, bool kInverse, bool kClamp>
void coupling_rows(const T* x, int64_t sx, const T* h, int64_t sh, T* y, T* logdet, int64_t N, int64_t D,
                   T clamp_arg) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  // A compile-time 0 without a clamp, so the header's branch folds away.
  const T clamp = kClamp ? clamp_arg : T(0);
  at::parallel_for(0, N, row_grain(D), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* xr = x + r * sx;
      const T* sr = h + r * sh;
      const T* tr = sr + D;
      T* yr = y + r * D;
      Vec acc(T(0));
      int64_t j = 0;
      for (; j + W <= D; j += W) {
        const Vec s = gc::soft_clamp<VecMath>(Vec::loadu(sr + j), clamp);
        const Vec xv = Vec::loadu(xr + j);
        const Vec tv = Vec::loadu(tr + j);
        const Vec out = kInverse ? gc::inverse_elem<VecMath>(xv, s, tv) : gc::forward_elem<VecMath>(xv, s, tv);
        out.store(yr + j);
        acc = acc + s;
      }
      // The logdet is reduced in registers, in the input's precision (float32 or float64).
      T sum = at::vec::vec_reduce_all<T>([](Vec& a, Vec& b) { return a + b; }, acc);
      for (; j < D; ++j) {
        const T s = gc::soft_clamp<gc::ScalarMath>(sr[j], clamp);
        yr[j] = kInverse ? gc::inverse_elem<gc::ScalarMath>(xr[j], s, tr[j])
                         : gc::forward_elem<gc::ScalarMath>(xr[j], s, tr[j]);
        sum += s;
      }
      logdet[r] = kInverse ? -sum : sum;
    }
  });
}

// grad_inp[N, D] and grad_h[N, 2D] from grad_out[N, D] (row stride sg; column stride 0 when g_bcast),
// grad_logdet[N] (stride sl, 0 when broadcast), inp[N, D] (row stride si) and h[N, 2D] (row stride sh).
template <typename T, bool kInverse, bool kClamp>
void coupling_backward_rows(const T* gout, int64_t sg, bool g_bcast, const T* gld, int64_t sl, const T* inp,
                            int64_t si, const T* h, int64_t sh, T* ginp, T* gh, int64_t N, int64_t D, T clamp_arg) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  const T clamp = kClamp ? clamp_arg : T(0);
  at::parallel_for(0, N, row_grain(D), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T* gr = gout + r * sg;
      const T* ir = inp + r * si;
      const T* sr = h + r * sh;
      const T* tr = sr + D;
      T* gir = ginp + r * D;
      T* gsr = gh + r * 2 * D;
      T* gtr = gsr + D;
      const T gl = gld[r * sl];
      const Vec glv(gl);
      int64_t j = 0;
      for (; j + W <= D; j += W) {
        const Vec gv = g_bcast ? Vec(gr[0]) : Vec::loadu(gr + j);
        Vec gi, gs, gt;
        if constexpr (kInverse) {
          gc::inverse_backward_elem<VecMath>(gv, glv, Vec::loadu(ir + j), Vec::loadu(sr + j), Vec::loadu(tr + j), clamp,
                                             gi, gs, gt);
        } else {
          gc::forward_backward_elem<VecMath>(gv, glv, Vec::loadu(ir + j), Vec::loadu(sr + j), clamp, gi, gs, gt);
        }
        gi.store(gir + j);
        gs.store(gsr + j);
        gt.store(gtr + j);
      }
      for (; j < D; ++j) {
        const T g = g_bcast ? gr[0] : gr[j];
        if constexpr (kInverse) {
          gc::inverse_backward_elem<gc::ScalarMath>(g, gl, ir[j], sr[j], tr[j], clamp, gir[j], gsr[j], gtr[j]);
        } else {
          gc::forward_backward_elem<gc::ScalarMath>(g, gl, ir[j], sr[j], clamp, gir[j], gsr[j], gtr[j]);
        }
      }
    }
  });
}

// run(inverse_tag, clamp_tag) with both flags as compile-time constants (std::true_type / std::false_type).
template <class F>
void with_tags(bool inverse, bool clamp, const F& run) {
  if (inverse) {
    clamp ? run(std::true_type{}, std::true_type{}) : run(std::true_type{}, std::false_type{});
  } else {
    clamp ? run(std::false_type{}, std::true_type{}) : run(std::false_type{}, std::false_type{});
  }
}

std::tuple<at::Tensor, at::Tensor> coupling_cpu(const at::Tensor& a, const at::Tensor& h, double clamp,
                                                bool inverse) {
  const host::CouplingArgs args = host::check_coupling(host::kCPU, inverse, a, h, clamp);
  const int64_t N = args.N, D = args.D;
  at::Tensor out = empty_output({N, D}, a.options());
  at::Tensor logdet = empty_output({N}, a.options());
  if (N == 0) {
    return {out, logdet};
  }
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "genad_fast_coupling_cpu", [&] {
    const scalar_t c = static_cast<scalar_t>(clamp);
    auto run = [&](auto inv_tag, auto clamp_tag) {
      coupling_rows<scalar_t, decltype(inv_tag)::value, decltype(clamp_tag)::value>(
          a.const_data_ptr<scalar_t>(), a.stride(0), h.const_data_ptr<scalar_t>(), h.stride(0),
          out.mutable_data_ptr<scalar_t>(), logdet.mutable_data_ptr<scalar_t>(), N, D, c);
    };
    with_tags(inverse, clamp > 0, run);
  });
  return {out, logdet};
}

std::tuple<at::Tensor, at::Tensor> coupling_forward_cpu(const at::Tensor& x, const at::Tensor& h, double clamp) {
  return coupling_cpu(x, h, clamp, /*inverse=*/false);
}

std::tuple<at::Tensor, at::Tensor> coupling_inverse_cpu(const at::Tensor& y, const at::Tensor& h, double clamp) {
  return coupling_cpu(y, h, clamp, /*inverse=*/true);
}

std::tuple<at::Tensor, at::Tensor> coupling_backward_cpu(const at::Tensor& grad_out, const at::Tensor& grad_logdet,
                                                         const at::Tensor& inp, const at::Tensor& h, double clamp,
                                                         bool inverse) {
  const host::CouplingArgs args = host::check_coupling_backward(host::kCPU, grad_out, grad_logdet, inp, h, clamp);
  const int64_t N = args.N, D = args.D;
  at::Tensor grad_inp = empty_output({N, D}, inp.options());
  at::Tensor grad_h = empty_output({N, 2 * D}, inp.options());
  if (N == 0) {
    return {grad_inp, grad_h};
  }
  const bool g_bcast = D > 1 && grad_out.stride(1) == 0;
  AT_DISPATCH_FLOATING_TYPES(inp.scalar_type(), "genad_fast_coupling_backward_cpu", [&] {
    const scalar_t c = static_cast<scalar_t>(clamp);
    auto run = [&](auto inv_tag, auto clamp_tag) {
      coupling_backward_rows<scalar_t, decltype(inv_tag)::value, decltype(clamp_tag)::value>(
          grad_out.const_data_ptr<scalar_t>(), grad_out.stride(0), g_bcast, grad_logdet.const_data_ptr<scalar_t>(),
          grad_logdet.stride(0), inp.const_data_ptr<scalar_t>(), inp.stride(0), h.const_data_ptr<scalar_t>(),
          h.stride(0), grad_inp.mutable_data_ptr<scalar_t>(), grad_h.mutable_data_ptr<scalar_t>(), N, D, c);
    };
    with_tags(inverse, clamp > 0, run);
  });
  return {grad_inp, grad_h};
}

}  // namespace

GENAD_REGISTER_KERNEL(coupling_forward_stub, &coupling_forward_cpu);
GENAD_REGISTER_KERNEL(coupling_inverse_stub, &coupling_inverse_cpu);
GENAD_REGISTER_KERNEL(coupling_backward_stub, &coupling_backward_cpu);

}  // namespace CPU_CAPABILITY
}  // namespace genad::cpu
