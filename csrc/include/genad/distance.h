// Per-element math of the classic density and distance scores, written once for the CPU (scalar paths: rows
// with non-finite values, the final combination of partial sums, the k-nearest buffers) and the CUDA kernels.
//
//   squared distance   d²(q, r) = Σ_d (q_d − r_d)²                                 (direct differences)
//   Gaussian KDE       log p(q) = logsumexp_j(−d²(q, r_j) / (2h²)) − log M − (D/2)·log(2πh²)
//                      (scikit-learn's KernelDensity(kernel="gaussian") normalisation; M − 1 when a point is
//                      left out of its own density)
//   k nearest          the k smallest d(q, r_j) = √d², ascending, in the order of torch.topk(largest=False):
//                      NaN after +inf (a NaN distance ranks last, so it is returned only when fewer than k
//                      numbers are left).
//
// The CPU kernels get d² of finite rows from the expansion |q|² + |r|² − 2 q·r in registers (see
// csrc/cpu/distance_tiles.h); everything here is the exact, IEEE-propagating definition they fall back to.
#pragma once

#include <math.h>
#include <stdint.h>

#include <genad/macros.h>

namespace genad::distance {

// −log M − (D/2)·log(2πh²): the normalisation of a Gaussian KDE over M points in D dimensions.
// log(2πh²) as log(2π) + 2·log h: h² overflows double for h > 1.3e154 (the density would be −inf).
GENAD_HD double kde_log_norm(int64_t M, int64_t D, double bandwidth) {
  const double log_two_pi = 1.8378770664093454835606594728112;
  return -::log(static_cast<double>(M)) - 0.5 * static_cast<double>(D) * (log_two_pi + 2.0 * ::log(bandwidth));
}

// Σ_d (a_d − b_d)² accumulated in A (float or double): NaN in, NaN out; inf − inf = NaN, as torch.cdist.
template <typename A, typename T>
GENAD_HD A sq_dist_direct(const T* a, const T* b, int64_t D) {
  A acc = A(0);
  for (int64_t d = 0; d < D; ++d) {
    const A diff = static_cast<A>(a[d]) - static_cast<A>(b[d]);
    acc += diff * diff;
  }
  return acc;
}

GENAD_HD float exp_(float v) { return ::expf(v); }
GENAD_HD double exp_(double v) { return ::exp(v); }
GENAD_HD float log_(float v) { return ::logf(v); }
GENAD_HD double log_(double v) { return ::log(v); }

// Online log-sum-exp (Milakov & Gimelshein, "Online normalizer calculation for softmax", 2018): a running
// maximum m and a sum s of exp(x − m). −inf terms add nothing; a NaN term makes the result NaN (tracked by a
// flag, so that no max/compare rule for NaN needs to be trusted). Natural-log units.
//
// m and s are kept in A; each exponential is taken in E (A unless given). The CUDA KDE of float32 queries takes
// E = float: a double exp is a software routine of ~25 double operations on sm_80/sm_90, more than the D-long
// distance of the pair it weights, where expf is a few float ones. The term exp(x − m) then carries the rounding
// of x − m to float (2^-24·|x − m| of the term, relative) and expf's 2 ulps: below 1e-6 of a term with
// |x − m| < 16, and the terms with a larger |x − m| weigh less than e^-16 of the largest.
template <typename A, typename E = A>
struct OnlineLse {
  A m;
  A s;
  bool nan;

  GENAD_HD OnlineLse() : m(-static_cast<A>(INFINITY)), s(A(0)), nan(false) {}

  GENAD_HD void push(A x) {
    if (x != x) {
      nan = true;
    } else if (x > m) {       // never true for x = −inf, so m stays −inf only while every term is −inf
      s = s * static_cast<A>(exp_(static_cast<E>(m - x))) + A(1);  // exp(−inf) = 0 on the first finite term
      m = x;
    } else if (x > -static_cast<A>(INFINITY)) {
      s += static_cast<A>(exp_(static_cast<E>(x - m)));
    }
  }

  // Adds Σ exp(x_i) given as (m_o, s_o) with s_o = Σ exp(x_i − m_o), s_o >= 0.
  GENAD_HD void merge(A m_o, A s_o, bool nan_o) {
    nan = nan || nan_o;
    if (!(s_o > A(0))) return;
    if (m_o > m) {
      s = s * exp_(m - m_o) + s_o;
      m = m_o;
    } else {
      s += s_o * exp_(m_o - m);
    }
  }

  // log Σ exp(x): NaN if any term was NaN, −inf if there was no finite term.
  GENAD_HD A result() const {
    if (nan) return static_cast<A>(NAN);
    if (!(s > A(0))) return -static_cast<A>(INFINITY);
    return m + log_(s);
  }
};

// The order of the k-nearest buffers: a < b, with NaN after everything (torch.topk's order).
template <typename T>
GENAD_HD bool nan_last_less(T a, T b) {
  return a < b || (b != b && a == a);
}

// Inserts value v (with its index j, when idx is not null) into vals[0..count), kept sorted by nan_last_less
// and at most k long; returns the new count. A value that does not beat the k-th is dropped.
template <typename T, typename I>
GENAD_HD int64_t sorted_insert(T* vals, I* idx, int64_t count, int64_t k, T v, I j) {
  if (count == k) {
    if (!nan_last_less(v, vals[k - 1])) return count;
    --count;  // the current k-th falls out
  }
  int64_t pos = count;
  while (pos > 0 && nan_last_less(v, vals[pos - 1])) {
    vals[pos] = vals[pos - 1];
    if (idx != nullptr) idx[pos] = idx[pos - 1];
    --pos;
  }
  vals[pos] = v;
  if (idx != nullptr) idx[pos] = j;
  return count + 1;
}

}  // namespace genad::distance
