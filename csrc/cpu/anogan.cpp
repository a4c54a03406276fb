// AnoGAN latent search on the CPU: the residual loss with its sub-gradients in one pass over each row,
// and the per-row masked Adam update of the latent codes in place. Math in genad/anogan.h; vectorised
// with at::vec::Vectorized, never -ffast-math, so NaN/inf propagate.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <tuple>

#include "kernels.h"

#include <genad/anogan.h>
#include <genad/cpu_helpers.h>
#include <genad/host/anogan.h>

namespace genad::cpu {
namespace CPU_CAPABILITY {
namespace {

namespace ga = genad::anogan;

// abs/sign/sqrt/fmadd of a whole vector; sign keeps ±0 and NaN as they are (see ScalarMath::sign).
struct VecMath {
  template <class V>
  static V abs(const V& v) {
    return v.abs();
  }
  template <class V>
  static V sqrt(const V& v) {
    return v.sqrt();
  }
  template <class V>
  static V fmadd(const V& a, const V& b, const V& c) {
    return at::vec::fmadd(a, b, c);
  }
  template <class V>
  static V sign(const V& d) {
    using T = typename V::value_type;
    const V zero(T(0));
    const V s = V::blendv(d, V(T(1)), d > zero);
    return V::blendv(s, V(T(-1)), d < zero);
  }
};

// loss[B], grad_gx[B, P], grad_fgx[B, F] from x, gx [B, P] and fx, fgx [B, F] (each with its own row stride).
template <typename T>
void residual_rows(const T* x, int64_t sx, const T* gx, int64_t sgx, const T* fx, int64_t sfx, const T* fgx,
                   int64_t sfgx, T* loss, T* ggx, T* gfgx, int64_t B, int64_t P, int64_t F, T w_p, T w_f) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  // One pass over a row pair: the sum of |a − b| (reduced in registers, in T: float32 or float64) and
  // neg_w·sign(a − b) stored contiguously.
  auto pass = [](const T* a, const T* b, T* grad, int64_t K, T neg_w) -> T {
    const Vec nw(neg_w);
    Vec acc(T(0));
    int64_t j = 0;
    for (; j + W <= K; j += W) {
      Vec g;
      acc = acc + ga::residual_elem<VecMath>(Vec::loadu(a + j), Vec::loadu(b + j), nw, g);
      g.store(grad + j);
    }
    T sum = at::vec::vec_reduce_all<T>([](Vec& u, Vec& v) { return u + v; }, acc);
    for (; j < K; ++j) {
      sum += ga::residual_elem<ga::ScalarMath>(a[j], b[j], neg_w, grad[j]);
    }
    return sum;
  };
  at::parallel_for(0, B, row_grain(P + F), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const T sum_p = pass(x + r * sx, gx + r * sgx, ggx + r * P, P, -w_p);
      const T sum_f = pass(fx + r * sfx, fgx + r * sfgx, gfgx + r * F, F, -w_f);
      loss[r] = ga::residual_loss(sum_p, sum_f, w_p, w_f);
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> anogan_residual_cpu(const at::Tensor& x, const at::Tensor& gx,
                                                                   const at::Tensor& fx, const at::Tensor& fgx,
                                                                   double lam) {
  const host::ResidualArgs args = host::check_anogan_residual(host::kCPU, x, gx, fx, fgx, lam);
  const int64_t B = args.B, P = args.P, F = args.F;
  at::Tensor loss = at::empty({B}, x.options());
  at::Tensor grad_gx = at::empty({B, P}, x.options());
  at::Tensor grad_fgx = at::empty({B, F}, x.options());
  if (B == 0) {
    return {loss, grad_gx, grad_fgx};
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "genad_fast_anogan_residual_cpu", [&] {
    residual_rows<scalar_t>(x.const_data_ptr<scalar_t>(), x.stride(0), gx.const_data_ptr<scalar_t>(), gx.stride(0),
                            fx.const_data_ptr<scalar_t>(), fx.stride(0), fgx.const_data_ptr<scalar_t>(),
                            fgx.stride(0), loss.mutable_data_ptr<scalar_t>(), grad_gx.mutable_data_ptr<scalar_t>(),
                            grad_fgx.mutable_data_ptr<scalar_t>(), B, P, F, static_cast<scalar_t>(args.w_p),
                            static_cast<scalar_t>(args.w_f));
  });
  return {loss, grad_gx, grad_fgx};
}

// Adam on the active rows of z[B, L] (row strides sz, sg, sm, sv; step and active with strides ss, sa).
template <typename T>
void masked_adam_rows(T* z, int64_t sz, const T* g, int64_t sg, T* m, int64_t sm, T* v, int64_t sv, int64_t* step,
                      int64_t ss, const bool* active, int64_t sa, int64_t B, int64_t L, double lr, double beta1,
                      double beta2, double eps) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t W = Vec::size();
  const ga::AdamConsts<T> c = ga::adam_consts<T>(beta1, beta2, eps);
  const Vec coef(c.lerp_coef), b2(c.beta2), omb2(c.one_minus_beta2), epsv(c.eps);
  at::parallel_for(0, B, row_grain(L), [&](int64_t r0, int64_t r1) {
    // The two pow() calls of the bias corrections cost more than a short row's update; rows mostly share
    // their step count (they start together), so the scalars of the last count seen are reused.
    int64_t cached_t = -1;
    T neg_step_size = T(0), bc2_sqrt = T(1);
    for (int64_t r = r0; r < r1; ++r) {
      if (!active[r * sa]) {
        continue;  // an inactive row keeps z, m, v and its step count
      }
      const int64_t t = step[r * ss] + 1;
      step[r * ss] = t;
      if (t != cached_t) {
        double nss, bc2s;
        ga::adam_row_scalars(t, lr, beta1, beta2, nss, bc2s);
        neg_step_size = static_cast<T>(nss);
        bc2_sqrt = static_cast<T>(bc2s);
        cached_t = t;
      }
      const Vec nssv(neg_step_size), bc2v(bc2_sqrt);
      T* zr = z + r * sz;
      const T* gr = g + r * sg;
      T* mr = m + r * sm;
      T* vr = v + r * sv;
      int64_t j = 0;
      for (; j + W <= L; j += W) {
        Vec zv = Vec::loadu(zr + j), mv = Vec::loadu(mr + j), vv = Vec::loadu(vr + j);
        ga::adam_elem<VecMath>(zv, Vec::loadu(gr + j), mv, vv, coef, c.lerp_small, b2, omb2, epsv, nssv, bc2v);
        zv.store(zr + j);
        mv.store(mr + j);
        vv.store(vr + j);
      }
      for (; j < L; ++j) {
        ga::adam_elem<ga::ScalarMath>(zr[j], gr[j], mr[j], vr[j], c.lerp_coef, c.lerp_small, c.beta2,
                                      c.one_minus_beta2, c.eps, neg_step_size, bc2_sqrt);
      }
    }
  });
}

void masked_adam_cpu(const at::Tensor& z, const at::Tensor& grad, const at::Tensor& m, const at::Tensor& v,
                     const at::Tensor& step, const at::Tensor& active, double lr, double beta1, double beta2,
                     double eps) {
  const host::AdamArgs args = host::check_masked_adam(host::kCPU, z, grad, m, v, step, active, lr, beta1, beta2, eps);
  const int64_t B = args.B, L = args.L;
  host::check_step_counts_on_host(step);
  if (B == 0) {
    return;
  }
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "genad_fast_masked_adam_cpu", [&] {
    masked_adam_rows<scalar_t>(z.mutable_data_ptr<scalar_t>(), z.stride(0), grad.const_data_ptr<scalar_t>(),
                               grad.stride(0), m.mutable_data_ptr<scalar_t>(), m.stride(0),
                               v.mutable_data_ptr<scalar_t>(), v.stride(0), step.mutable_data_ptr<int64_t>(),
                               step.stride(0), active.const_data_ptr<bool>(), active.stride(0), B, L, lr, beta1,
                               beta2, eps);
  });
}

}  // namespace

GENAD_REGISTER_KERNEL(anogan_residual_stub, &anogan_residual_cpu);
GENAD_REGISTER_KERNEL(masked_adam_stub, &masked_adam_cpu);

}  // namespace CPU_CAPABILITY
}  // namespace genad::cpu
