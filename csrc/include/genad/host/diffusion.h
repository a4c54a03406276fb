// Argument checks and kernel parameters of the diffusion ops (genad_fast::add_noise, diffusion_step,
// recon_error_accumulate_), shared by csrc/cpu/diffusion.cpp and csrc/cuda/diffusion.cu.
//
// Contract (DESIGN.md, "Op contracts"): data x0 / x_t, eps and noise [B, M], float32 or float64, a sample's
// elements contiguous (any stride between samples); per-sample coefficients a, b, c [B] of the data's dtype;
// seed and offset in [0, 2^63). recon: x, x_hat, mask [B, T, C] of any strides, C >= 1, score [B, T] written
// in place, overlapping none of them and none of its elements shared.
#pragma once

#include <ATen/MemoryOverlap.h>

#include <optional>

#include <genad/host/checks.h>

namespace genad::host {

// Pointer members of the kernel parameter structs: plain for the CPU kernels, __restrict__ for the CUDA ones,
// as each kernel was written (a template argument, so the two never share a type).
template <class T>
using Plain = T*;
template <class T>
using Restrict = T* __restrict__;

// add_noise (e, b null) and diffusion_step: out = a·x (+ b·e) + c·z over [B, M] rows.
template <typename T, template <class> class P = Plain, typename Index = int64_t>
struct CombineParams {
  P<const T> x;  // [B, M], row stride sx: x0 (add_noise) or x_t (step)
  int64_t sx;
  P<const T> e;  // [B, M], row stride se: eps (step), null for add_noise
  int64_t se;
  P<const T> a;  // [B], stride sa: coefficient of x
  int64_t sa;
  P<const T> b;  // [B], stride sb: coefficient of eps (step), null for add_noise
  int64_t sb;
  P<const T> c;  // [B], stride sc: coefficient of the noise
  int64_t sc;
  P<T> out;      // [B, M] contiguous
  Index M;
};

struct CombineArgs {
  int64_t B, M;
};

// add_noise when eps (and b) are absent; the noise coefficient is `c`, named c_name ("b" for add_noise).
inline CombineArgs check_combine(Backend backend, const char* op, const at::Tensor& x,
                                 const std::optional<at::Tensor>& eps, const at::Tensor& a,
                                 const std::optional<at::Tensor>& b, const at::Tensor& c, const char* c_name,
                                 int64_t seed, int64_t offset, const std::optional<at::Tensor>& noise) {
  const Checks k(op, backend);
  // "the data": x0 or x_t, as the Triton twin (which takes either) names it too
  k.rows(x, eps ? "x_t" : "x0");
  auto like = [&](const at::Tensor& t, const char* name) {
    k.rows(t, name);
    k.same_device(t, name, x, "the data");
    k.same_shape(t, name, x, "the data");
    k.same_dtype(t, name, x, "the data");
  };
  if (eps) like(*eps, "eps");
  auto coefficient = [&](const at::Tensor& v, const char* name) {
    k.same_device(v, name, x, "the data");
    k.per_row(v, name, x.size(0), "coefficient per sample");
    k.same_dtype(v, name, x, "the data");
  };
  coefficient(a, "a");
  if (b) coefficient(*b, "b");
  coefficient(c, c_name);
  if (noise) like(*noise, "noise");
  TORCH_CHECK(seed >= 0, op, ": seed must be in [0, 2^63), got ", seed);
  TORCH_CHECK(offset >= 0, op, ": offset must be in [0, 2^63), got ", offset);
  return {x.size(0), x.size(1)};
}

template <typename T, template <class> class P = Plain, typename Index = int64_t>
CombineParams<T, P, Index> combine_params(const at::Tensor& x, const std::optional<at::Tensor>& eps,
                                          const at::Tensor& a, const std::optional<at::Tensor>& b,
                                          const at::Tensor& c, at::Tensor& out) {
  return {x.const_data_ptr<T>(),
          x.stride(0),
          eps ? eps->const_data_ptr<T>() : nullptr,
          eps ? eps->stride(0) : 0,
          a.const_data_ptr<T>(),
          a.stride(0),
          b ? b->const_data_ptr<T>() : nullptr,
          b ? b->stride(0) : 0,
          c.const_data_ptr<T>(),
          c.stride(0),
          out.mutable_data_ptr<T>(),
          static_cast<Index>(x.size(1))};
}

// score[B, T] += weight · mean_c(mask·(x − x̂)²) with its strides, and x, x_hat, mask [B, T, C] with theirs.
template <typename T, template <class> class P = Plain>
struct ReconParams {
  P<T> score;  // [B, T]
  int64_t s0, s1;
  P<const T> x;  // [B, T, C]
  int64_t x0, x1, x2;
  P<const T> h;  // x_hat [B, T, C]
  int64_t h0, h1, h2;
  P<const T> m;  // mask [B, T, C] or null
  int64_t m0, m1, m2;
  int64_t Tn, C;
  T weight;
};

struct ReconArgs {
  int64_t B, Tn, C;
};

inline ReconArgs check_recon(Backend backend, const at::Tensor& score, const at::Tensor& x, const at::Tensor& x_hat,
                             const std::optional<at::Tensor>& mask) {
  const Checks k("genad_fast::recon_error_accumulate_", backend);
  k.device(x, "x");
  k.rank(x, "x", 3);
  k.floating(x, "x");
  auto like = [&](const at::Tensor& t, const char* name) {
    k.same_device(t, name, x, "x");
    k.same_shape(t, name, x, "x");
    k.same_dtype(t, name, x, "x");
  };
  like(x_hat, "x_hat");
  if (mask) like(*mask, "mask");
  k.same_device(score, "score", x, "x");
  k.shape(score, "score", {x.size(0), x.size(1)});
  k.same_dtype(score, "score", x, "x");
  // the mean over zero channels is 0/0 (the text of genad_fast.ops.recon_error_accumulate_)
  TORCH_CHECK_VALUE(x.size(2) >= 1, "x must have at least one channel (C >= 1), got shape (", x.size(0), ", ",
                    x.size(1), ", 0): the mean over channels of an empty set is undefined");
  at::assert_no_internal_overlap(score);  // an expanded score would be updated by several timestamps at once
  for (const at::Tensor* t : {&x, &x_hat}) at::assert_no_partial_overlap(score, *t);
  if (mask) at::assert_no_partial_overlap(score, *mask);
  return {x.size(0), x.size(1), x.size(2)};
}

template <typename T, template <class> class P = Plain>
ReconParams<T, P> recon_params(at::Tensor& score, const at::Tensor& x, const at::Tensor& x_hat,
                               const std::optional<at::Tensor>& mask, double weight) {
  return {score.mutable_data_ptr<T>(),
          score.stride(0),
          score.stride(1),
          x.const_data_ptr<T>(),
          x.stride(0),
          x.stride(1),
          x.stride(2),
          x_hat.const_data_ptr<T>(),
          x_hat.stride(0),
          x_hat.stride(1),
          x_hat.stride(2),
          mask ? mask->const_data_ptr<T>() : nullptr,
          mask ? mask->stride(0) : 0,
          mask ? mask->stride(1) : 0,
          mask ? mask->stride(2) : 0,
          x.size(1),
          x.size(2),
          static_cast<T>(weight)};
}

}  // namespace genad::host
