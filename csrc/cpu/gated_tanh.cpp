// gated_tanh on the CPU: WaveNet's gated activation unit, forward and backward, in one pass each,
//   out = s · t,  s = σ(a),  t = 2σ(2b) - 1 = tanh(b)          (x = [a | b] along dim)
//   ∂/∂a = g · t · s(1 - s),   ∂/∂b = g · s · 4σ(2b)(1 - σ(2b))
//
// Why a kernel of our own: the denoiser of DiffusionDetector (genad_fast/nn/diffusion/denoiser.py) applies this
// unit in every residual layer. Composed from ATen ops it is six passes forward (two sigmoids, a scaling, a
// subtraction, a product; the split is a view) and about ten backward (each product's two gradients, the sigmoids'
// backward, the concatenation of the halves' gradients), each over a tensor of several MB: ~14 % of a training step.
// Here each direction reads its inputs once and writes its output once.
//
// The sigmoids use e = exp(-|v|) <= 1, σ(v) = 1/(1 + e) for v >= 0 and e/(1 + e) below, σ(v)(1 - σ(v)) = e/(1 + e)²:
// no overflow, and no cancellation in 1 - σ where σ is near 1 (ATen's sigmoid backward computes out·(1 - out),
// which loses the small gradients of a saturated unit to rounding); both sigmoids share one reciprocal (gate()).
// NaN propagates; ±inf saturate.
// bfloat16 inputs are computed in float32, in chunks, and rounded once.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>

#include <genad/host/gated_tanh.h>

#include "kernels.h"
#include "vec_math.h"

namespace genad::cpu {
namespace CPU_CAPABILITY {
namespace {

constexpr int64_t kGrain = 1 << 15;  // elements below which a thread is not worth starting
constexpr int64_t kChunk = 512;      // bfloat16: elements converted to float32 at a time

// exp for the sigmoids: ATen's 20-ulp polynomial for float (exp_u20: relative error ~1e-6, below what a float32
// product of the unit keeps), its Sleef exp for double.
inline at::vec::Vectorized<float> fast_exp(const at::vec::Vectorized<float>& v) { return v.exp_u20(); }
inline at::vec::Vectorized<double> fast_exp(const at::vec::Vectorized<double>& v) { return v.exp(); }

// The unit's pieces from e = exp(-|a|) and e2 = exp(-2|b|), with one reciprocal for both sigmoids:
// r = 1/((1 + e)(1 + e2)), so 1/(1 + e) = r(1 + e2) and 1/(1 + e2) = r(1 + e).
//   σ(a) = (a >= 0 ? 1 : e)/(1 + e)        σ'(a) = e/(1 + e)²
//   tanh(b) = sign(b)(1 - e2)/(1 + e2)     σ'(2b) = e2/(1 + e2)²   (tanh(b) = 2σ(2b) - 1, the same function)
template <class V>
struct Gate {
  V s, t, inv_a, inv_b, e, e2;  // σ(a), tanh(b), 1/(1 + e), 1/(1 + e2), e, e2
};

template <class V>
inline Gate<V> gate(V a, V b) {
  const V zero(0), one(1), two(2);
  const V e = fast_exp(zero - a.abs()), e2 = fast_exp(zero - two * b.abs());
  const V r = vec_math::reciprocal((one + e) * (one + e2));
  const V inv_a = r * (one + e2), inv_b = r * (one + e);
  const V s = V::blendv(e * inv_a, inv_a, a >= zero);
  const V th = (one - e2) * inv_b;
  return {s, V::blendv(zero - th, th, b >= zero), inv_a, inv_b, e, e2};
}

template <class T>
void forward_span(const T* a, const T* b, T* out, int64_t n) {
  using V = at::vec::Vectorized<T>;
  for (int64_t i = 0; i < n; i += V::size()) {
    const int64_t m = std::min<int64_t>(V::size(), n - i);
    const Gate<V> u = gate(V::loadu(a + i, m), V::loadu(b + i, m));
    (u.s * u.t).store(out + i, m);
  }
}

template <class T>
void backward_span(const T* g, const T* a, const T* b, T* ga, T* gb, int64_t n) {
  using V = at::vec::Vectorized<T>;
  const V four(4);
  for (int64_t i = 0; i < n; i += V::size()) {
    const int64_t m = std::min<int64_t>(V::size(), n - i);
    const V vg = V::loadu(g + i, m);
    const Gate<V> u = gate(V::loadu(a + i, m), V::loadu(b + i, m));
    (vg * u.t * (u.e * u.inv_a * u.inv_a)).store(ga + i, m);
    (vg * u.s * four * (u.e2 * u.inv_b * u.inv_b)).store(gb + i, m);
  }
}

// bfloat16: the float32 spans above over converted chunks.
void forward_span(const at::BFloat16* a, const at::BFloat16* b, at::BFloat16* out, int64_t n) {
  float fa[kChunk], fb[kChunk], fo[kChunk];
  for (int64_t i = 0; i < n; i += kChunk) {
    const int64_t m = std::min(kChunk, n - i);
    for (int64_t j = 0; j < m; ++j) fa[j] = a[i + j], fb[j] = b[i + j];
    forward_span<float>(fa, fb, fo, m);
    for (int64_t j = 0; j < m; ++j) out[i + j] = fo[j];
  }
}

void backward_span(const at::BFloat16* g, const at::BFloat16* a, const at::BFloat16* b, at::BFloat16* ga,
                   at::BFloat16* gb, int64_t n) {
  float fg[kChunk], fa[kChunk], fb[kChunk], oa[kChunk], ob[kChunk];
  for (int64_t i = 0; i < n; i += kChunk) {
    const int64_t m = std::min(kChunk, n - i);
    for (int64_t j = 0; j < m; ++j) fg[j] = g[i + j], fa[j] = a[i + j], fb[j] = b[i + j];
    backward_span<float>(fg, fa, fb, oa, ob, m);
    for (int64_t j = 0; j < m; ++j) ga[i + j] = oa[j], gb[i + j] = ob[j];
  }
}

// fn(o, j, n) for the pieces of [begin, end) of the flat range [0, outer · span), split at every row o's end.
template <class Fn>
void for_pieces(int64_t begin, int64_t end, int64_t span, const Fn& fn) {
  for (int64_t i = begin; i < end;) {
    const int64_t o = i / span, j = i % span, n = std::min(span - j, end - i);
    fn(o, j, n);
    i += n;
  }
}

at::Tensor gated_tanh_cpu(const at::Tensor& x, int64_t dim) {
  const host::GatedArgs a = host::check_gated_tanh("genad_fast::gated_tanh", host::kCPU, x, dim);
  at::Tensor out = at::empty(a.out_sizes, x.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const at::Tensor xc = x.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x.scalar_type(), "gated_tanh", [&] {
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    const int64_t span = a.span;
    at::parallel_for(0, a.outer * span, kGrain, [&](int64_t begin, int64_t end) {
      for_pieces(begin, end, span, [&](int64_t o, int64_t j, int64_t n) {
        const scalar_t* row = xp + o * 2 * span + j;
        forward_span(row, row + span, op + o * span + j, n);
      });
    });
  });
  return out;
}

at::Tensor gated_tanh_backward_cpu(const at::Tensor& grad, const at::Tensor& x, int64_t dim) {
  const host::GatedArgs a = host::check_gated_tanh_backward(host::kCPU, grad, x, dim);
  at::Tensor grad_x = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  if (grad_x.numel() == 0) return grad_x;
  const at::Tensor xc = x.contiguous(), gc = grad.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x.scalar_type(), "gated_tanh_backward", [&] {
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    const scalar_t* gp = gc.const_data_ptr<scalar_t>();
    scalar_t* op = grad_x.data_ptr<scalar_t>();
    const int64_t span = a.span;
    at::parallel_for(0, a.outer * span, kGrain, [&](int64_t begin, int64_t end) {
      for_pieces(begin, end, span, [&](int64_t o, int64_t j, int64_t n) {
        const int64_t row = o * 2 * span + j;
        backward_span(gp + o * span + j, xp + row, xp + row + span, op + row, op + row + span, n);
      });
    });
  });
  return grad_x;
}

}  // namespace

GENAD_REGISTER_KERNEL(gated_tanh_stub, &gated_tanh_cpu);
GENAD_REGISTER_KERNEL(gated_tanh_backward_stub, &gated_tanh_backward_cpu);

}  // namespace CPU_CAPABILITY
}  // namespace genad::cpu
