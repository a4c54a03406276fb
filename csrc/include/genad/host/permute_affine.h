// Argument checks of genad_fast::permute_affine and its backward, shared by csrc/cpu/permute_affine.cpp and
// csrc/cuda/permute_affine.cu. Contract (csrc/ops.cpp): x_a [N, Da], x_b [N, Db] float32 or float64 with unit
// stride on their last dimension (column slices are read in place), D = Da + Db; bias, log_scale [D] of x_a's
// dtype; perm [D] int64, a permutation of 0 .. D-1; 0 <= split <= D. The CPU entry points also check that perm is
// a permutation (O(D)); the CUDA ones check its range in the kernel (a device-side assert, as ATen's index_select).
#pragma once

#include <genad/host/checks.h>

#include <initializer_list>
#include <utility>
#include <vector>

namespace genad::host {

struct PermuteAffineArgs {
  int64_t N, Da, Db, D, split;
};

inline void check_permutation(const Checks& c, const at::Tensor& perm) {
  const at::Tensor p = perm.contiguous();
  const int64_t* v = p.const_data_ptr<int64_t>();
  const int64_t D = p.numel();
  std::vector<bool> seen(static_cast<size_t>(D), false);
  for (int64_t j = 0; j < D; ++j) {
    TORCH_CHECK(v[j] >= 0 && v[j] < D && !seen[v[j]], c.op(), ": perm must be a permutation of 0 .. ", D - 1,
                ", got ", v[j], " at position ", j, v[j] >= 0 && v[j] < D ? " (a repeat)" : " (out of range)");
    seen[v[j]] = true;
  }
}

// Two matrices side by side ([a, b]: a's columns, then b's), and the per-column vectors and the permutation of the
// D columns they share; returns D.
inline int64_t check_columns(const Checks& c, const at::Tensor& a, const char* a_name, const at::Tensor& b,
                             const char* b_name,
                             std::initializer_list<std::pair<const at::Tensor*, const char*>> vectors,
                             const at::Tensor& perm) {
  c.rows(a, a_name);
  c.rows_like(b, b_name, a, a_name);
  c.same_rows(b, b_name, a, a_name);
  const int64_t D = a.size(1) + b.size(1);
  for (const auto& [t, name] : vectors) {
    c.same_device(*t, name, a, a_name);
    c.same_dtype(*t, name, a, a_name);
    c.shape(*t, name, {D});
  }
  c.same_device(perm, "perm", a, a_name);
  c.dtype(perm, "perm", {at::kLong});
  c.shape(perm, "perm", {D});
  if (c.backend().type == c10::DeviceType::CPU) check_permutation(c, perm);
  return D;
}

inline void check_split(const char* op, const char* name, int64_t split, int64_t D) {
  TORCH_CHECK(split >= 0 && split <= D, op, ": ", name, " must be in [0, ", D, "] (a column of the ", D,
              " columns), got ", split);
}

inline PermuteAffineArgs check_permute_affine(Backend backend, const at::Tensor& x_a, const at::Tensor& x_b,
                                              const at::Tensor& bias, const at::Tensor& log_scale,
                                              const at::Tensor& perm, int64_t split) {
  constexpr const char* op = "genad_fast::permute_affine";
  const int64_t D = check_columns(Checks(op, backend), x_a, "x_a", x_b, "x_b",
                                  {{&bias, "bias"}, {&log_scale, "log_scale"}}, perm);
  check_split(op, "split", split, D);
  return {x_a.size(0), x_a.size(1), x_b.size(1), D, split};
}

// v_a, v_b: the forward's outputs (split = v_a's width); source_split: x_a's width.
inline PermuteAffineArgs check_permute_affine_backward(Backend backend, const at::Tensor& grad_a,
                                                       const at::Tensor& grad_b, const at::Tensor& v_a,
                                                       const at::Tensor& v_b, const at::Tensor& log_scale,
                                                       const at::Tensor& perm, int64_t source_split) {
  constexpr const char* op = "genad_fast::permute_affine_backward";
  const Checks c(op, backend);
  const int64_t D = check_columns(c, v_a, "v_a", v_b, "v_b", {{&log_scale, "log_scale"}}, perm);
  check_split(op, "source_split", source_split, D);
  c.rows_like(grad_a, "grad_a", v_a, "v_a");
  c.same_shape(grad_a, "grad_a", v_a, "v_a");
  c.rows_like(grad_b, "grad_b", v_b, "v_b");
  c.same_shape(grad_b, "grad_b", v_b, "v_b");
  return {v_a.size(0), source_split, D - source_split, D, v_a.size(1)};
}

}  // namespace genad::host
