// Gaussian kernel density on the CPU (genad_fast::kde_logpdf), fused and tiled: memory O(N + M), no N×M matrix.
//
//   log p(q) = logsumexp_j(−|q − r_j|² / (2h²)) − log M' − (D/2)·log(2πh²)     (M' = M, or M − 1 leaving self out)
//
// Each thread takes chunks of queries and streams the packed references past them in panels (distance_tiles.h):
// the register tile yields q·r, the epilogue turns it into s = c·d² with c = −log2(e)/(2h²) (base-2 units, so
// the exponential is a bare 2^x) and folds it into an online log-sum-exp kept per query *and per lane*: a lane
// max m_l and a lane sum Σ 2^(s − m_l). Keeping the max per lane avoids a horizontal reduction per tile, and the
// max is raised lazily: only when some s of the tile exceeds it (rare after the first tiles) are the sums
// rescaled. Lane sums run in T within a panel (at most 64 terms per lane) and are added into double sums at
// each panel's end; lanes, references on the exact path and the normalisation are combined in double.
// exp2 is a polynomial on AVX-512 (distance_tiles.h, about 1 ulp) and SLEEF elsewhere; no -ffast-math, so
// non-finite values follow IEEE rules. NaN/inf rows take the exact path (direct differences, genad/distance.h).

#include <genad/host/distance.h>

#include "distance_tiles.h"
#include "kernels.h"

namespace genad::cpu {
namespace CPU_CAPABILITY {
namespace {

using namespace dist;
namespace gd = genad::distance;

constexpr double kLog2e = 1.4426950408889634074;
constexpr double kLn2 = 0.69314718055994530942;

template <typename T>
struct KdeContext {
  const PackedRefs<T>* P;
  const T* q;
  int64_t sq;
  const T* r;
  int64_t sr;
  T c2;              // −log2(e) / (2h²): s = c2·d² in base-2 units
  double inv_2h2;    // 1 / (2h²) for the exact path (natural units)
  double log_norm;   // −log M' − (D/2)·log(2πh²)
  bool exclude_self;
};

// Multiplies the double lane sums by the lane factors f (out of line: rare, and it keeps the tile's registers).
template <typename T>
C10_NOINLINE void scale_lanes(double* sd, Vec<T> f) {
  T fs[Vec<T>::size()];
  f.store(fs);
  for (int64_t l = 0; l < Vec<T>::size(); ++l) sd[l] *= static_cast<double>(fs[l]);
}

// The epilogue of one block of R queries: running lane max m (base-2 units), the lane sums sf since the last
// flush (T), and pointers to the flushed lane sums (double).
template <typename T, int R>
struct KdeEpilogue {
  static constexpr int64_t L = Vec<T>::size();
  Vec<T> m[R];
  Vec<T> sf[R];
  T qn[R];           // |q − shift|²
  double* sd[R];
  int64_t self[R];   // packed position of each query's own point (exclude_self), or −1
  const T* rnorm;
  T c2;
  int64_t n_reg;

  template <int V, bool MASKED>
  C10_ALWAYS_INLINE void apply(Vec<T> (&acc)[R][V], int64_t s) {
    const Vec<T> m2(T(-2)), zero(T(0)), c2v(c2), ninf(-std::numeric_limits<T>::infinity());
    Vec<T> rn[V];
    unroll<V>([&](auto v) GENAD_INLINE { rn[v] = Vec<T>::loadu(rnorm + (s + v) * L); });
    unroll<R>([&](auto r) GENAD_INLINE {
      const Vec<T> qv(qn[r]);
      Vec<T> valid;
      if constexpr (MASKED) valid = lane_mask(s, self[r]);
      Vec<T> sv[V];
      uint32_t up = 0;
      unroll<V>([&](auto v) GENAD_INLINE {
        // d² = |q|² + |r|² − 2 q·r. Rounding in this cancellation can leave a tiny negative number for a pair
        // at (nearly) zero distance; the true value is >= 0, so it is clamped there — only values that cannot
        // be distances are changed, and NaN cannot reach here (exact path).
        const Vec<T> d2 = at::vec::clamp_min(at::vec::fmadd(m2, acc[r][v], rn[v] + qv), zero);
        sv[v] = c2v * d2;  // <= 0
        // Padding and masked lanes (only in masked strips): −inf itself, not c2·inf, which is NaN when c2 reads as
        // 0 (a bandwidth so large that 1/(2h²) underflows in T, or a denormal c2 under denormals-are-zero); a NaN
        // lane sum was then dropped at the merge, losing every term of that lane (h = 1e160, M = 7 on AVX2).
        if constexpr (MASKED) sv[v] = Vec<T>::blendv(ninf, sv[v], valid);
        up |= lt_bits<T>(m[r], sv[v]);
      });
      if (C10_UNLIKELY(up != 0)) {
        // New lane maxima: rescale the lane sums by 2^(m_old − m_new) (1 where the max did not move).
        Vec<T> bm = sv[0];
        unroll<V - 1>([&](auto v) GENAD_INLINE { bm = at::vec::clamp_min(bm, sv[v + 1]); });
        const Vec<T> mn = at::vec::clamp_min(m[r], bm);
        const Vec<T> f = exp2_nonpos<T>(m[r] - mn);
        sf[r] = sf[r] * f;
        scale_lanes<T>(sd[r], f);
        m[r] = mn;
      }
      Vec<T> e = exp2_nonpos<T>(sv[0] - m[r]);
      unroll<V - 1>([&](auto v) GENAD_INLINE { e = e + exp2_nonpos<T>(sv[v + 1] - m[r]); });
      sf[r] = sf[r] + e;
    });
  }

  // All-ones lanes for the references of strip s that count: not padding, not the query's own point.
  C10_ALWAYS_INLINE Vec<T> lane_mask(int64_t s, int64_t self_pos) const {
    T lanes[L];
    for (int64_t l = 0; l < L; ++l) {
      const int64_t p = s * L + l;
      lanes[l] = (p < n_reg && p != self_pos) ? T(1) : T(0);
    }
    return Vec<T>::loadu(lanes) > Vec<T>(T(0.5));
  }
};

// One block of R packed queries (rows b0 … b0 + R − 1 of the chunk) against the strips [p0, p1).
template <typename T, int R>
C10_NOINLINE void kde_block(const KdeContext<T>& ctx, const QueryChunk<T>& ch, int64_t b0, int64_t p0,
                            int64_t p1, T* m_state, double* sd_state) {
  constexpr int64_t L = Vec<T>::size();
  const PackedRefs<T>& P = *ctx.P;
  KdeEpilogue<T, R> epi;
  epi.rnorm = P.norm.data();
  epi.c2 = ctx.c2;
  epi.n_reg = P.n_reg;
  int64_t masked[R + 1];
  int n_masked = 0;
  if (P.n_reg % L != 0) masked[n_masked++] = P.n_strips - 1;  // padding lanes in the last strip
  for (int r = 0; r < R; ++r) {
    const int64_t row = b0 + r;
    epi.m[r] = Vec<T>::loadu(m_state + row * L);
    epi.sf[r] = Vec<T>(T(0));
    epi.sd[r] = sd_state + row * L;
    epi.qn[r] = ch.norm[row];
    epi.self[r] = ctx.exclude_self ? P.pos[ch.orig[row]] : -1;
    if (epi.self[r] >= 0) masked[n_masked++] = epi.self[r] / L;
  }
  std::sort(masked, masked + n_masked);
  n_masked = static_cast<int>(std::unique(masked, masked + n_masked) - masked);
  run_strips<T, R>(ch.rows.data() + b0 * P.D, P, p0, p1, masked, n_masked, epi);
  for (int r = 0; r < R; ++r) {
    const int64_t row = b0 + r;
    epi.m[r].store(m_state + row * L);
    T sums[L];
    epi.sf[r].store(sums);
    for (int64_t l = 0; l < L; ++l) epi.sd[r][l] += static_cast<double>(sums[l]);
  }
}

// The block of `rows` (1 … kRows) queries, through the tile instantiated for that many rows.
template <typename T, int R = kRows>
void kde_rows(const KdeContext<T>& ctx, const QueryChunk<T>& ch, int64_t b0, int rows, int64_t p0, int64_t p1,
              T* m_state, double* sd_state) {
  if constexpr (R > 1) {
    if (rows < R) return kde_rows<T, R - 1>(ctx, ch, b0, rows, p0, p1, m_state, sd_state);
  }
  kde_block<T, R>(ctx, ch, b0, p0, p1, m_state, sd_state);
}

// Adds the exact-path terms −d²/(2h²) of query row i against the reference rows `js` (original indices).
template <typename T>
void push_exact(const KdeContext<T>& ctx, int64_t i, const int64_t* js, int64_t n, gd::OnlineLse<double>& lse) {
  const int64_t D = ctx.P->D;
  const T* qi = ctx.q + i * ctx.sq;
  for (int64_t t = 0; t < n; ++t) {
    const int64_t j = js[t];
    if (ctx.exclude_self && j == i) continue;
    lse.push(-gd::sq_dist_direct<double>(qi, ctx.r + j * ctx.sr, D) * ctx.inv_2h2);
  }
}

template <typename T>
void kde_chunk(const KdeContext<T>& ctx, int64_t i0, int64_t i1, T* out) {
  constexpr int64_t L = Vec<T>::size();
  const PackedRefs<T>& P = *ctx.P;
  QueryChunk<T> ch;
  ch.pack(ctx.q, ctx.sq, i0, i1, P.D, P.shift.data());
  std::vector<T> m_state(ch.n * L, std::numeric_limits<T>::lowest());  // finite start: no −inf − (−inf)
  std::vector<double> sd_state(ch.n * L, 0.0);
  over_panels(P.n_strips, panel_strips<T>(P.D), ch.n, kRows, [&](int64_t b0, int rows, int64_t p0, int64_t p1) {
    kde_rows(ctx, ch, b0, rows, p0, p1, m_state.data(), sd_state.data());
  });
  for (int64_t row = 0; row < ch.n; ++row) {
    gd::OnlineLse<double> lse;
    for (int64_t l = 0; l < L; ++l) {
      lse.merge(kLn2 * static_cast<double>(m_state[row * L + l]), sd_state[row * L + l], false);
    }
    const int64_t i = ch.orig[row];
    push_exact(ctx, i, P.exact.data(), static_cast<int64_t>(P.exact.size()), lse);
    out[i] = static_cast<T>(lse.result() + ctx.log_norm);
  }
  if (!ch.exact.empty()) {  // queries on the exact path: every reference by direct differences
    std::vector<int64_t> all(P.M);
    for (int64_t j = 0; j < P.M; ++j) all[j] = j;
    for (const int64_t i : ch.exact) {
      gd::OnlineLse<double> lse;
      push_exact(ctx, i, all.data(), P.M, lse);
      out[i] = static_cast<T>(lse.result() + ctx.log_norm);
    }
  }
}

template <typename T>
void kde_impl(const at::Tensor& queries, const at::Tensor& refs, double bandwidth, const host::KdeArgs& args,
              bool exclude_self, at::Tensor& out) {
  const int64_t N = args.N;
  const std::shared_ptr<const PackedRefs<T>> P = packed_refs<T>(refs, args.M, args.D);  // held sets: packed once
  KdeContext<T> ctx{P.get(),
                    queries.const_data_ptr<T>(),
                    queries.stride(0),
                    refs.const_data_ptr<T>(),
                    refs.stride(0),
                    static_cast<T>(-kLog2e * args.inv_2h2),
                    args.inv_2h2,
                    args.log_norm,
                    exclude_self};
  // This kernel's exponent scale is in T: a bandwidth that is fine in double can overflow it in float32.
  TORCH_CHECK(std::isfinite(ctx.c2), "genad_fast::kde_logpdf: bandwidth ", bandwidth, " is too small for ",
              host::dtype_name(queries.scalar_type()), ": 1/(2h²) overflows");
  T* o = out.mutable_data_ptr<T>();
  parallel_chunks(N, chunk_rows(N), [&](int64_t i0, int64_t i1) { kde_chunk(ctx, i0, i1, o); });
}

at::Tensor kde_logpdf_cpu(const at::Tensor& queries, const at::Tensor& refs, double bandwidth, bool exclude_self) {
  const host::KdeArgs args = host::check_kde(host::kCPU, queries, refs, bandwidth, exclude_self);
  const int64_t N = args.N;
  at::Tensor out = at::empty({N}, queries.options());
  if (N == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(queries.scalar_type(), "genad_fast_kde_logpdf_cpu", [&] {
    kde_impl<scalar_t>(queries, refs, bandwidth, args, exclude_self, out);
  });
  return out;
}

}  // namespace

GENAD_REGISTER_KERNEL(kde_logpdf_stub, &kde_logpdf_cpu);

}  // namespace CPU_CAPABILITY
}  // namespace genad::cpu
