// bias_gelu on the CPU: the exact GELU of a product plus its bias, forward and backward in one pass each,
//   out = GELU(z + b)                    z [M, N] (a matrix product without its bias), b [N]
//   grad_z = g·GELU'(z + b),  grad_b = Σ_rows grad_z
// (genad/gelu.h has the formulas.) Why a kernel of our own: a training step of FlowDetector's conditioners
// (Linear -> GELU residual MLPs, genad_fast/nn/flow/realnvp.py) runs forty such layers at [256, 128]; composed from
// ATen ops each is the bias broadcast into the product's output (addmm's copy), the GELU (an erf per element, and a
// second erf plus an exp in its backward) and a separate reduction for the bias gradient, each a pass of its own.
// Here the forward reads z once and writes out once; the backward reads g and z once, writes grad_z and sums the
// bias gradient while the rows are in registers.
//
// The bias gradient is summed in z's dtype within fixed blocks of rows (their size depends on M only: at least 64
// rows), then in double over the blocks in order: the same bits whatever the number of threads. float32 uses the
// vectorised Abramowitz-Stegun erf of genad/gelu.h (as ATen's float GELU); float64 the exact erf of the standard
// library, element by element.
//
// bias_gelu_keep and bias_gelu_backward_kept are the pair a training step that keeps its activations uses: the
// forward also writes GELU'(z + b) (the backward's own formula, one fused multiply-add, so the same bits), and the
// backward from it is a multiply and the same column sums, without a second erf and exponential.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include <genad/gelu.h>
#include <genad/host/bias_gelu.h>

#include "kernels.h"
#include "vec_math.h"

namespace genad::cpu {
namespace CPU_CAPABILITY {
namespace {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t kBlockRows = 64;        // rows of a bias-gradient block, at least (summed in float32 vectors)
constexpr int64_t kMaxBlocks = 1024;      // blocks at most (their partial sums: kMaxBlocks × N doubles)
constexpr int64_t kMinWork = 1 << 14;     // elements below which a thread is not worth starting

struct VecParts {
  Vec cdf, pdf;
};

// genad::gelu_parts on a vector of u.
inline VecParts gelu_parts(const Vec& u) {
  const Vec zero(0.0f), one(1.0f), half(0.5f), p(0.3275911f);
  // |u|/√2, capped so that 1 + p·ax stays finite for the reciprocal (u = ±inf: t = 0 and exp(-ax²) = 0, so Φ is
  // exactly 0 or 1 and GELU(+inf) = +inf; clamp_max returns a NaN argument as it is)
  const Vec ax = at::vec::clamp_max(u.abs() * Vec(0.70710678118654752f), Vec(1e18f));
  const Vec t = vec_math::reciprocal(at::vec::fmadd(p, ax, one));
  Vec poly = at::vec::fmadd(Vec(1.061405429f), t, Vec(-1.453152027f));
  poly = at::vec::fmadd(poly, t, Vec(1.421413741f));
  poly = at::vec::fmadd(poly, t, Vec(-0.284496736f));
  poly = at::vec::fmadd(poly, t, Vec(0.254829592f)) * t;
  const Vec e = (zero - ax * ax).exp_u20();  // ATen's 20-ulp exp: |relative error| ~2e-6 of the tail's Φ
  const Vec tail = half * poly * e;
  return {Vec::blendv(tail, one - tail, u >= zero), e * Vec(0.39894228040143268f)};
}

// out = GELU(z + b) of one row, and with kKeep (bias_gelu_keep) deriv = GELU'(z + b) by the backward's own formula
// (one fused multiply-add), so that a backward from it gives backward_row's bits. A template parameter, not a test
// of deriv: the plain forward's loop then computes no φ at all.
template <bool kKeep>
void forward_row(const float* z, const float* b, float* out, float* deriv, int64_t n) {
  for (int64_t j = 0; j < n; j += Vec::size()) {
    const int64_t m = std::min<int64_t>(Vec::size(), n - j);
    const Vec u = Vec::loadu(z + j, m) + Vec::loadu(b + j, m);
    const VecParts q = gelu_parts(u);
    (u * q.cdf).store(out + j, m);
    if constexpr (kKeep) at::vec::fmadd(u, q.pdf, q.cdf).store(deriv + j, m);
  }
}

template <bool kKeep>
void forward_row(const double* z, const double* b, double* out, double* deriv, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double cdf, pdf;
    const double u = z[j] + b[j];
    gelu_exact(u, cdf, pdf);
    out[j] = u * cdf;
    if constexpr (kKeep) deriv[j] = std::fma(u, pdf, cdf);  // fma here and in backward_row: the same bits
  }
}

// grad_z of one row, its entries added to acc (the block's column sums, in z's dtype; the blocks are summed in
// double).
void backward_row(const float* g, const float* z, const float* b, float* gz, float* acc, int64_t n) {
  for (int64_t j = 0; j < n; j += Vec::size()) {
    const int64_t m = std::min<int64_t>(Vec::size(), n - j);
    const Vec u = Vec::loadu(z + j, m) + Vec::loadu(b + j, m);
    const VecParts q = gelu_parts(u);
    const Vec d = Vec::loadu(g + j, m) * at::vec::fmadd(u, q.pdf, q.cdf);
    d.store(gz + j, m);
    (Vec::loadu(acc + j, m) + d).store(acc + j, m);
  }
}

void backward_row(const double* g, const double* z, const double* b, double* gz, double* acc, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    double cdf, pdf;
    const double u = z[j] + b[j];
    gelu_exact(u, cdf, pdf);
    gz[j] = g[j] * std::fma(u, pdf, cdf);
    acc[j] += gz[j];
  }
}

// The same from a kept derivative: grad_z = g·GELU', the same product as backward_row's.
void backward_kept_row(const float* g, const float* deriv, float* gz, float* acc, int64_t n) {
  for (int64_t j = 0; j < n; j += Vec::size()) {
    const int64_t m = std::min<int64_t>(Vec::size(), n - j);
    const Vec d = Vec::loadu(g + j, m) * Vec::loadu(deriv + j, m);
    d.store(gz + j, m);
    (Vec::loadu(acc + j, m) + d).store(acc + j, m);
  }
}

void backward_kept_row(const double* g, const double* deriv, double* gz, double* acc, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    gz[j] = g[j] * deriv[j];
    acc[j] += gz[j];
  }
}

int64_t grain_rows(int64_t N) {
  return std::max<int64_t>(1, kMinWork / std::max<int64_t>(N, 1));
}

// The rows of an [M, N] backward in parallel, row(r, acc) writing row r of grad_z and adding it to acc; writes the
// column sums to sums[0, N): in scalar_t within blocks of rows whose size depends on M only, then in double over the
// blocks in order, so the same bits for any number of threads.
template <class scalar_t, class Row>
void column_sums_by_block(int64_t M, int64_t N, scalar_t* sums, const Row& row) {
  const int64_t block = std::max(kBlockRows, (M + kMaxBlocks - 1) / kMaxBlocks);
  const int64_t n_blocks = (M + block - 1) / block;
  std::vector<double> partial(static_cast<size_t>(n_blocks * N), 0.0);
  const int64_t grain = std::max<int64_t>(1, grain_rows(N) / block);
  at::parallel_for(0, n_blocks, grain, [&](int64_t k0, int64_t k1) {
    std::vector<scalar_t> acc(N);
    for (int64_t k = k0; k < k1; ++k) {
      std::fill(acc.begin(), acc.end(), scalar_t(0));
      for (int64_t r = k * block; r < std::min(M, (k + 1) * block); ++r) row(r, acc.data());
      std::copy(acc.begin(), acc.end(), partial.begin() + k * N);
    }
  });
  std::vector<double> total(N, 0.0);
  for (int64_t k = 0; k < n_blocks; ++k) {  // in block order
    const double* pk = partial.data() + k * N;
    for (int64_t j = 0; j < N; ++j) total[j] += pk[j];
  }
  std::copy(total.begin(), total.end(), sums);
}

// bias_gelu's and bias_gelu_keep's rows: out, and deriv where it is defined.
void forward_rows(const at::Tensor& z, const at::Tensor& bias, const host::BiasGeluArgs& a, at::Tensor& out,
                  at::Tensor* deriv) {
  if (out.numel() == 0) return;
  const at::Tensor zc = z.contiguous(), bc = bias.contiguous();
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "bias_gelu", [&] {
    const scalar_t* zp = zc.const_data_ptr<scalar_t>();
    const scalar_t* bp = bc.const_data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    scalar_t* dp = deriv != nullptr ? deriv->data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, a.M, grain_rows(a.N), [&](int64_t r0, int64_t r1) {
      for (int64_t r = r0; r < r1; ++r) {
        if (dp != nullptr) {
          forward_row<true>(zp + r * a.N, bp, op + r * a.N, dp + r * a.N, a.N);
        } else {
          forward_row<false>(zp + r * a.N, bp, op + r * a.N, nullptr, a.N);
        }
      }
    });
  });
}

at::Tensor bias_gelu_cpu(const at::Tensor& z, const at::Tensor& bias) {
  const host::BiasGeluArgs a = host::check_bias_gelu("genad_fast::bias_gelu", host::kCPU, z, bias);
  at::Tensor out = host::empty_rows(z, a);
  forward_rows(z, bias, a, out, nullptr);
  return out;
}

std::tuple<at::Tensor, at::Tensor> bias_gelu_keep_cpu(const at::Tensor& z, const at::Tensor& bias) {
  const host::BiasGeluArgs a = host::check_bias_gelu("genad_fast::bias_gelu_keep", host::kCPU, z, bias);
  at::Tensor out = host::empty_rows(z, a), deriv = host::empty_rows(z, a);
  forward_rows(z, bias, a, out, &deriv);
  return {out, deriv};
}

std::tuple<at::Tensor, at::Tensor> bias_gelu_backward_cpu(const at::Tensor& grad, const at::Tensor& z,
                                                          const at::Tensor& bias) {
  const host::BiasGeluArgs a = host::check_bias_gelu_backward(host::kCPU, grad, z, bias);
  at::Tensor grad_z = host::empty_rows(z, a);
  at::Tensor grad_b = at::zeros({a.N}, bias.options());
  if (grad_z.numel() == 0) return {grad_z, grad_b};
  const at::Tensor zc = z.contiguous(), bc = bias.contiguous(), gc = grad.contiguous();
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "bias_gelu_backward", [&] {
    const scalar_t* zp = zc.const_data_ptr<scalar_t>();
    const scalar_t* bp = bc.const_data_ptr<scalar_t>();
    const scalar_t* gp = gc.const_data_ptr<scalar_t>();
    scalar_t* gzp = grad_z.data_ptr<scalar_t>();
    column_sums_by_block(a.M, a.N, grad_b.data_ptr<scalar_t>(), [&](int64_t r, scalar_t* acc) {
      backward_row(gp + r * a.N, zp + r * a.N, bp, gzp + r * a.N, acc, a.N);
    });
  });
  return {grad_z, grad_b};
}

std::tuple<at::Tensor, at::Tensor> bias_gelu_backward_kept_cpu(const at::Tensor& grad, const at::Tensor& deriv) {
  const host::BiasGeluArgs a = host::check_bias_gelu_backward_kept(host::kCPU, grad, deriv);
  at::Tensor grad_z = host::empty_rows(deriv, a);
  at::Tensor grad_b = at::zeros({a.N}, deriv.options());
  if (grad_z.numel() == 0) return {grad_z, grad_b};
  const at::Tensor dc = deriv.contiguous(), gc = grad.contiguous();
  AT_DISPATCH_FLOATING_TYPES(deriv.scalar_type(), "bias_gelu_backward_kept", [&] {
    const scalar_t* dp = dc.const_data_ptr<scalar_t>();
    const scalar_t* gp = gc.const_data_ptr<scalar_t>();
    scalar_t* gzp = grad_z.data_ptr<scalar_t>();
    column_sums_by_block(a.M, a.N, grad_b.data_ptr<scalar_t>(), [&](int64_t r, scalar_t* acc) {
      backward_kept_row(gp + r * a.N, dp + r * a.N, gzp + r * a.N, acc, a.N);
    });
  });
  return {grad_z, grad_b};
}

}  // namespace

GENAD_REGISTER_KERNEL(bias_gelu_stub, &bias_gelu_cpu);
GENAD_REGISTER_KERNEL(bias_gelu_backward_stub, &bias_gelu_backward_cpu);
GENAD_REGISTER_KERNEL(bias_gelu_keep_stub, &bias_gelu_keep_cpu);
GENAD_REGISTER_KERNEL(bias_gelu_backward_kept_stub, &bias_gelu_backward_kept_cpu);

}  // namespace CPU_CAPABILITY
}  // namespace genad::cpu
