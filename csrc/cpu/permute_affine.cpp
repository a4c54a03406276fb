// permute_affine on the CPU: the input of a normalizing-flow step with a fixed permutation (Glow's ActNorm, then
// the permutation, then the coupling's split), read from the previous step's two halves and written as the next
// coupling's two halves:
//   x = [x_a, x_b] (columns),  v[:, j] = (x[:, p_j] + b[p_j])·exp(log_scale[p_j]),  out = (v[:, :split], v[:, split:])
// and its backward, with g = [grad_a, grad_b] and e_j = exp(log_scale[p_j]):
//   ∂/∂x[:, p_j] = g_j·e_j    ∂/∂b[p_j] = Σ_rows g_j·e_j    ∂/∂log_scale[p_j] = Σ_rows g_j·v_j
// Why a kernel of our own: at 1,544 features (FlowDetector on 193 × 8 windows) a training step spent ~15 ms of its
// ~85 in ATen's passes over 256 × 1,544 activations around each coupling: the column gather (index_select), its
// ungather in the backward, the affine map and its two column sums, and the concatenation of the coupling's halves,
// each a pass over memory the products had pushed out of cache. Here each direction is one pass: a row of x is read
// where it lies (the halves are never concatenated: copied side by side into a row buffer in L1), gathered with
// vector gathers, and written once; the backward's ungather is a gather through the inverse permutation.
//
// The column sums are taken in the dtype within fixed blocks of rows (their size depends on N only: at least 64),
// then in double over the blocks in order: the same bits for any number of threads. exp(log_scale) is ATen's.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <vector>

#include <genad/host/permute_affine.h>

#include "kernels.h"

namespace genad::cpu {
namespace CPU_CAPABILITY {
namespace {

constexpr int64_t kBlockRows = 64;     // rows of a column-sum block, at least
constexpr int64_t kMaxBlocks = 1024;   // blocks at most (their partial sums: 2 × kMaxBlocks × D doubles)
constexpr int64_t kMinWork = 1 << 14;  // elements below which a thread is not worth starting

template <class T>
using Vec = at::vec::Vectorized<T>;
template <class T>
using Index = at::vec::int_same_size_t<T>;  // gather indices: int32 for float, int64 for double

// The columns: for output column j, p_j (the source column), b[p_j] and e_j = exp(log_scale[p_j]); for source
// column c, p⁻¹_c and exp(log_scale[c]).
template <class T>
struct Columns {
  std::vector<Index<T>> src, inv;
  std::vector<T> bias, scale, scale_unpermuted;

  Columns(const at::Tensor& perm, const at::Tensor* bias_t, const at::Tensor& log_scale_t, int64_t D)
      : src(D), inv(D), bias(D), scale(D), scale_unpermuted(D) {
    // ATen's exp: the same scale, bit for bit, as the ActNorm module's torch.exp(log_scale)
    const at::Tensor p = perm.contiguous(), e = at::exp(log_scale_t).contiguous();
    const at::Tensor b = bias_t != nullptr ? bias_t->contiguous() : at::Tensor();
    const int64_t* pp = p.const_data_ptr<int64_t>();
    const T* ep = e.const_data_ptr<T>();
    const T* bp = b.defined() ? b.const_data_ptr<T>() : nullptr;
    std::copy(ep, ep + D, scale_unpermuted.begin());
    for (int64_t j = 0; j < D; ++j) {
      src[j] = static_cast<Index<T>>(pp[j]);
      inv[pp[j]] = static_cast<Index<T>>(j);
      bias[j] = bp != nullptr ? bp[pp[j]] : T(0);
      scale[j] = ep[pp[j]];
    }
  }
};

// dst[k] = (row[idx[k]] + add[k])·mul[k] for k < n (add null: no add): a gather from a row in L1.
template <class T>
void gather_affine(const T* row, const Index<T>* idx, const T* add, const T* mul, T* dst, int64_t n) {
  int64_t k = 0;
  for (; k + Vec<T>::size() <= n; k += Vec<T>::size()) {
    Vec<T> v = at::vec::gather<sizeof(T)>(row, Vec<Index<T>>::loadu(idx + k));
    if (add != nullptr) v = v + Vec<T>::loadu(add + k);
    (v * Vec<T>::loadu(mul + k)).store(dst + k);
  }
  for (; k < n; ++k) dst[k] = ((add != nullptr ? row[idx[k]] + add[k] : row[idx[k]])) * mul[k];
}

// acc_bias[k] += g[k]·e[k], acc_scale[k] += g[k]·v[k] (k < n): one row's share of the column sums, in permuted order.
template <class T>
void column_sums(const T* g, const T* v, const T* e, T* acc_bias, T* acc_scale, int64_t n) {
  int64_t k = 0;
  for (; k + Vec<T>::size() <= n; k += Vec<T>::size()) {
    const Vec<T> gk = Vec<T>::loadu(g + k);
    (Vec<T>::loadu(acc_bias + k) + gk * Vec<T>::loadu(e + k)).store(acc_bias + k);
    (Vec<T>::loadu(acc_scale + k) + gk * Vec<T>::loadu(v + k)).store(acc_scale + k);
  }
  for (; k < n; ++k) {
    acc_bias[k] += g[k] * e[k];
    acc_scale[k] += g[k] * v[k];
  }
}

// [a, b] of one row into buf (D values): the two halves side by side, so that one index reaches either.
template <class T>
void join(const T* a, int64_t na, const T* b, int64_t nb, T* buf) {
  std::copy(a, a + na, buf);
  std::copy(b, b + nb, buf + na);
}

int64_t grain_rows(int64_t D) { return std::max<int64_t>(1, kMinWork / std::max<int64_t>(D, 1)); }

std::tuple<at::Tensor, at::Tensor> permute_affine_cpu(const at::Tensor& x_a, const at::Tensor& x_b,
                                                      const at::Tensor& bias, const at::Tensor& log_scale,
                                                      const at::Tensor& perm, int64_t split) {
  const host::PermuteAffineArgs a = host::check_permute_affine(host::kCPU, x_a, x_b, bias, log_scale, perm, split);
  const auto opts = x_a.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor out_a = at::empty({a.N, a.split}, opts), out_b = at::empty({a.N, a.D - a.split}, opts);
  if (a.N == 0 || a.D == 0) return {out_a, out_b};
  AT_DISPATCH_FLOATING_TYPES(x_a.scalar_type(), "permute_affine", [&] {
    const Columns<scalar_t> col(perm, &bias, log_scale, a.D);
    const scalar_t* xa = x_a.const_data_ptr<scalar_t>();
    const scalar_t* xb = x_b.const_data_ptr<scalar_t>();
    const int64_t sa = x_a.stride(0), sb = x_b.stride(0), nb = a.D - a.split;
    scalar_t* oa = out_a.data_ptr<scalar_t>();
    scalar_t* ob = out_b.data_ptr<scalar_t>();
    at::parallel_for(0, a.N, grain_rows(a.D), [&](int64_t r0, int64_t r1) {
      std::vector<scalar_t> row(a.D);
      for (int64_t r = r0; r < r1; ++r) {
        join(xa + r * sa, a.Da, xb + r * sb, a.Db, row.data());
        gather_affine(row.data(), col.src.data(), col.bias.data(), col.scale.data(), oa + r * a.split, a.split);
        gather_affine(row.data(), col.src.data() + a.split, col.bias.data() + a.split, col.scale.data() + a.split,
                      ob + r * nb, nb);
      }
    });
  });
  return {out_a, out_b};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> permute_affine_backward_cpu(
    const at::Tensor& grad_a, const at::Tensor& grad_b, const at::Tensor& v_a, const at::Tensor& v_b,
    const at::Tensor& log_scale, const at::Tensor& perm, int64_t source_split) {
  const host::PermuteAffineArgs a =
      host::check_permute_affine_backward(host::kCPU, grad_a, grad_b, v_a, v_b, log_scale, perm, source_split);
  const auto opts = v_a.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor gx_a = at::empty({a.N, a.Da}, opts), gx_b = at::empty({a.N, a.Db}, opts);
  at::Tensor grad_bias = at::zeros({a.D}, log_scale.options()), grad_log_scale = at::zeros({a.D}, log_scale.options());
  if (a.N == 0 || a.D == 0) return {gx_a, gx_b, grad_bias, grad_log_scale};
  // rows per block: a function of N alone, so the sums are the same for any number of threads
  const int64_t block = std::max(kBlockRows, (a.N + kMaxBlocks - 1) / kMaxBlocks);
  const int64_t n_blocks = (a.N + block - 1) / block;
  std::vector<double> partial(static_cast<size_t>(2 * n_blocks * a.D), 0.0);
  AT_DISPATCH_FLOATING_TYPES(v_a.scalar_type(), "permute_affine_backward", [&] {
    const Columns<scalar_t> col(perm, nullptr, log_scale, a.D);
    const scalar_t *ga = grad_a.const_data_ptr<scalar_t>(), *gb = grad_b.const_data_ptr<scalar_t>();
    const scalar_t *va = v_a.const_data_ptr<scalar_t>(), *vb = v_b.const_data_ptr<scalar_t>();
    const int64_t s_ga = grad_a.stride(0), s_gb = grad_b.stride(0), s_va = v_a.stride(0), s_vb = v_b.stride(0);
    const int64_t split = a.split, nb = a.D - a.split;
    scalar_t *pa = gx_a.data_ptr<scalar_t>(), *pb = gx_b.data_ptr<scalar_t>();
    const scalar_t* e = col.scale.data();
    const scalar_t* e_src = col.scale_unpermuted.data();
    const int64_t grain = std::max<int64_t>(1, grain_rows(a.D) / block);
    at::parallel_for(0, n_blocks, grain, [&](int64_t k0, int64_t k1) {
      std::vector<scalar_t> acc(static_cast<size_t>(2 * a.D)), row(a.D);
      scalar_t *acc_bias = acc.data(), *acc_scale = acc.data() + a.D;
      for (int64_t k = k0; k < k1; ++k) {
        std::fill(acc.begin(), acc.end(), scalar_t(0));
        for (int64_t r = k * block; r < std::min(a.N, (k + 1) * block); ++r) {
          const scalar_t *g_a = ga + r * s_ga, *g_b = gb + r * s_gb;
          column_sums(g_a, va + r * s_va, e, acc_bias, acc_scale, split);
          column_sums(g_b, vb + r * s_vb, e + split, acc_bias + split, acc_scale + split, nb);
          // ∂/∂x[:, c] = g_{p⁻¹(c)}·e(c): the ungather as a gather through the inverse permutation
          join(g_a, split, g_b, nb, row.data());
          gather_affine<scalar_t>(row.data(), col.inv.data(), nullptr, e_src, pa + r * a.Da, a.Da);
          gather_affine<scalar_t>(row.data(), col.inv.data() + a.Da, nullptr, e_src + a.Da, pb + r * a.Db, a.Db);
        }
        std::copy(acc.begin(), acc.end(), partial.begin() + 2 * k * a.D);
      }
    });
    std::vector<double> total(static_cast<size_t>(2 * a.D), 0.0);
    for (int64_t k = 0; k < n_blocks; ++k) {  // in block order
      const double* pk = partial.data() + 2 * k * a.D;
      for (int64_t j = 0; j < 2 * a.D; ++j) total[j] += pk[j];
    }
    scalar_t *gbp = grad_bias.data_ptr<scalar_t>(), *gsp = grad_log_scale.data_ptr<scalar_t>();
    for (int64_t j = 0; j < a.D; ++j) {  // back to the unpermuted columns
      gbp[col.src[j]] = static_cast<scalar_t>(total[j]);
      gsp[col.src[j]] = static_cast<scalar_t>(total[a.D + j]);
    }
  });
  return {gx_a, gx_b, grad_bias, grad_log_scale};
}

}  // namespace

GENAD_REGISTER_KERNEL(permute_affine_stub, &permute_affine_cpu);
GENAD_REGISTER_KERNEL(permute_affine_backward_stub, &permute_affine_backward_cpu);

}  // namespace CPU_CAPABILITY
}  // namespace genad::cpu
