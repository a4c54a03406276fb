// Argument checks and parameters of the distance scores (genad_fast::kde_logpdf, genad_fast::knn_distance),
// shared by csrc/cpu/{kde,knn}.cpp and csrc/cuda/{kde,knn}.cu.
//
// Contract (DESIGN.md, "Op contracts"): queries [N, D] and refs [M, D], float32 or float64, one dtype, unit
// stride on the last dimension, D >= 1, M >= 1; exclude_self (the queries are the refs) needs N == M.
#pragma once

#include <cmath>

#include <genad/distance.h>
#include <genad/host/checks.h>

namespace genad::host {

inline void check_distance_pair(const Checks& c, const at::Tensor& queries, const at::Tensor& refs) {
  c.rows(queries, "queries");
  c.rows_like(refs, "refs", queries, "queries");
  TORCH_CHECK(refs.size(1) == queries.size(1), c.op(),
              ": queries and refs must have the same number of columns D, got ", queries.size(1), " and ",
              refs.size(1));
  TORCH_CHECK(queries.size(1) >= 1, c.op(), ": rows must have at least one coordinate (D >= 1), got D = 0");
}

inline void check_exclude_self(const Checks& c, int64_t N, int64_t M) {
  TORCH_CHECK(N == M, c.op(), ": exclude_self needs the queries to be the refs (N == M), got N = ", N, ", M = ", M);
}

struct KdeArgs {
  int64_t N, M, D;
  double inv_2h2;   // 1 / (2h²)
  double log_norm;  // −log M' − (D/2)·log(2πh²), M' = M − 1 leaving each point out of its own density
};

inline KdeArgs check_kde(Backend backend, const at::Tensor& queries, const at::Tensor& refs, double bandwidth,
                         bool exclude_self) {
  const Checks c("genad_fast::kde_logpdf", backend);
  check_distance_pair(c, queries, refs);
  TORCH_CHECK(std::isfinite(bandwidth) && bandwidth > 0.0, c.op(), ": bandwidth must be a finite number > 0, got ",
              bandwidth);
  const double inv_2h2 = 1.0 / (2.0 * bandwidth * bandwidth);
  TORCH_CHECK(std::isfinite(inv_2h2), c.op(), ": bandwidth ", bandwidth, " is too small: 1/(2h²) overflows");
  const int64_t N = queries.size(0), M = refs.size(0), D = queries.size(1);
  if (exclude_self) {
    check_exclude_self(c, N, M);
    TORCH_CHECK(M >= 2, c.op(), ": exclude_self needs at least 2 refs (each point's density comes from the others), ",
                "got ", M);
  }
  TORCH_CHECK(M >= 1, c.op(), ": refs must have at least one row");
  return {N, M, D, inv_2h2, genad::distance::kde_log_norm(exclude_self ? M - 1 : M, D, bandwidth)};
}

struct KnnArgs {
  int64_t N, M, D, k;
};

inline KnnArgs check_knn(Backend backend, const at::Tensor& queries, const at::Tensor& refs, int64_t k,
                         bool exclude_self) {
  const Checks c("genad_fast::knn_distance", backend);
  check_distance_pair(c, queries, refs);
  const int64_t N = queries.size(0), M = refs.size(0);
  if (exclude_self) check_exclude_self(c, N, M);
  const int64_t available = exclude_self ? M - 1 : M;
  TORCH_CHECK(k >= 1, c.op(), ": k must be >= 1, got ", k);
  TORCH_CHECK(k <= available, c.op(), ": k = ", k, " is larger than the ", available, " reference",
              available == 1 ? "" : "s", exclude_self ? " left once each point's own row is excluded" : "",
              " (M = ", M, ")");
  return {N, M, queries.size(1), k};
}

}  // namespace genad::host
