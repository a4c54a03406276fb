// Distances to the k nearest references on the CPU (genad_fast::knn_distance), fused and tiled: memory O(N·k + M),
// no N×M matrix.
//
// Each thread takes chunks of queries and streams the packed references past them (distance_tiles.h). For a
// query the ranking only needs t = |r|² − 2 q·r = d² − |q|² (|q|² is the same for all its candidates), one
// fused multiply-add on the register tile: a filter. A vector compare against the query's threshold rejects a
// whole strip at once, and only lanes below it (about k·ln(M/k) over a whole pass, for random order) are appended
// to the query's candidate list, cut back now and then (knn_candidates.h). The filter's value is off t by at most
// a bound per query (the expansion's rounding, below; the int16 filter's quantization on AVX2, knn_quantized.h),
// and the lists keep every candidate within twice that bound of the k-th, so none of the k nearest is lost. At the
// end the survivors' distances are computed exactly, by direct differences in double, and the k smallest
// returned: the op's distances are the float64 k nearest, whatever the filter's cancellation error (columns of
// very different scales, clusters far from the centre). exclude_self drops j == i. NaN/inf rows take the exact
// path, ranked as torch.topk ranks: NaN after +inf.

#include <genad/host/distance.h>

#include "distance_tiles.h"
#include "kernels.h"
#include "knn_candidates.h"
#include "knn_quantized.h"

namespace genad::cpu {
namespace CPU_CAPABILITY {
namespace {

using namespace dist;
namespace gd = genad::distance;

template <typename T>
struct KnnContext {
  const PackedRefs<T>* P;
  const T* q;
  int64_t sq;
  const T* r;
  int64_t sr;
  int64_t k;
  bool exclude_self;
  double ref_norm;  // >= |r − shift| of every packed reference
};

// Σ (a − b)² in double with four independent partial sums (the latency of one chain would dominate).
template <typename T>
double sq_dist_double(const T* a, const T* b, int64_t D) {
  double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
  int64_t d = 0;
  for (; d + 4 <= D; d += 4) {
    const double e0 = static_cast<double>(a[d]) - b[d], e1 = static_cast<double>(a[d + 1]) - b[d + 1];
    const double e2 = static_cast<double>(a[d + 2]) - b[d + 2], e3 = static_cast<double>(a[d + 3]) - b[d + 3];
    s0 += e0 * e0;
    s1 += e1 * e1;
    s2 += e2 * e2;
    s3 += e3 * e3;
  }
  for (; d < D; ++d) {
    const double e = static_cast<double>(a[d]) - b[d];
    s0 += e * e;
  }
  return (s0 + s1) + (s2 + s3);
}

// The exact t = d² − |q|² of a chunk's packed query `row` and the packed reference `pos`: direct differences of
// the input rows in double, less the query's centred squared norm (the units of the filter's values).
template <typename T>
struct ExactT {
  const KnnContext<T>* ctx;
  const QueryChunk<T>* ch;
  int64_t row;

  double operator()(int32_t pos) const {
    const T* qi = ctx->q + ch->orig[row] * ctx->sq;
    const T* rj = ctx->r + ctx->P->orig[pos] * ctx->sr;
    return sq_dist_double(qi, rj, ctx->P->D) - static_cast<double>(ch->norm[row]);
  }
};

// The expansion's slack per packed query: twice a bound on |t̃ − t| with t̃ = fl(|r|² − 2·fl(q·r)) in T (unit
// roundoff u). The sum of D products by a chain of FMAs is within γ_D·|q||r| of q·r, γ_D = D·u / (1 − D·u)
// (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., §3.1); |r|² stored in T, the final FMA,
// the centring of both rows and |q|² in T add a few u·(|q| + |r|)² more; 10u covers them.
template <typename T>
void expansion_slack(const KnnContext<T>& ctx, const QueryChunk<T>& ch, std::vector<double>& slack) {
  const double u = std::numeric_limits<T>::epsilon() / 2.0;
  const double du = static_cast<double>(ctx.P->D) * u;
  const double rel = (2.0 * du / (1.0 - du) + 10.0 * u) * (1.0 + 0x1p-10);
  for (int64_t row = 0; row < ch.n; ++row) {
    const double reach = std::sqrt(static_cast<double>(ch.norm[row])) * (1.0 + 0x1p-20) + ctx.ref_norm;
    slack[row] = 2.0 * rel * reach * reach;
  }
}

template <typename T, int R>
struct KnnEpilogue {
  static constexpr int64_t L = Vec<T>::size();
  KnnState<T>* st;
  const KnnContext<T>* ctx;
  const QueryChunk<T>* ch;
  int64_t row0;
  int64_t self[R];   // packed position of the query's own point (exclude_self), or −1
  const T* rnorm;

  template <int V, bool MASKED>
  C10_ALWAYS_INLINE void apply(Vec<T> (&acc)[R][V], int64_t s) {
    const Vec<T> m2(T(-2));
    Vec<T> rn[V];
    unroll<V>([&](auto v) GENAD_INLINE { rn[v] = Vec<T>::loadu(rnorm + (s + v) * L); });
    unroll<R>([&](auto r) GENAD_INLINE {
      const int64_t row = row0 + r;
      const Vec<T> th(st->thr[row]);
      Vec<T> t[V];
      uint32_t bits[V];
      uint32_t any = 0;
      unroll<V>([&](auto v) GENAD_INLINE {
        t[v] = at::vec::fmadd(m2, acc[r][v], rn[v]);  // padding lanes: |r|² = +inf, never below a threshold
        bits[v] = lt_bits<T>(t[v], th);
        any |= bits[v];
      });
      if (C10_UNLIKELY(any != 0)) {
        unroll<V>([&](auto v) GENAD_INLINE {
          if (bits[v] != 0) append<T>(*st, row, t[v], bits[v], (s + v) * L);
        });
        if (st->count[row] >= st->flush_at) st->cut(row, self[r], ExactT<T>{ctx, ch, row});
      }
    });
  }
};

template <typename T, int R>
C10_NOINLINE void knn_block(const KnnContext<T>& ctx, const QueryChunk<T>& ch, int64_t b0, int64_t p0,
                            int64_t p1, KnnState<T>& st) {
  const PackedRefs<T>& P = *ctx.P;
  KnnEpilogue<T, R> epi{&st, &ctx, &ch, b0, {}, P.norm.data()};
  for (int r = 0; r < R; ++r) epi.self[r] = ctx.exclude_self ? P.pos[ch.orig[b0 + r]] : -1;
  run_strips<T, R>(ch.rows.data() + b0 * P.D, P, p0, p1, nullptr, 0, epi);
}

// The block of `rows` (1 … kRows) queries, through the tile instantiated for that many rows.
template <typename T, int R = kRows>
void knn_rows(const KnnContext<T>& ctx, const QueryChunk<T>& ch, int64_t b0, int rows, int64_t p0, int64_t p1,
              KnnState<T>& st) {
  if constexpr (R > 1) {
    if (rows < R) return knn_rows<T, R - 1>(ctx, ch, b0, rows, p0, p1, st);
  }
  knn_block<T, R>(ctx, ch, b0, p0, p1, st);
}

// The pass of the float filter over every packed reference, for the chunk's packed queries.
template <typename T>
void search_expansion(const KnnContext<T>& ctx, const QueryChunk<T>& ch, KnnState<T>& st) {
  const PackedRefs<T>& P = *ctx.P;
  expansion_slack(ctx, ch, st.slack);
  over_panels(P.n_strips, panel_strips<T>(P.D), ch.n, kRows, [&](int64_t b0, int rows, int64_t p0, int64_t p1) {
    knn_rows(ctx, ch, b0, rows, p0, p1, st);
  });
}

#if defined(CPU_CAPABILITY_AVX2)
// ---- the int16 filter (knn_quantized.h): float32 on AVX2 --------------------------------------------------------

template <int R>
struct QuantizedEpilogue {
  static constexpr int64_t L = Vec<float>::size();
  KnnState<float>* st;
  const QuantizedQueries* qq;
  const KnnContext<float>* ctx;
  const QueryChunk<float>* ch;
  int64_t row0;
  int64_t self[R];
  const float* rnorm;

  template <int V>
  C10_ALWAYS_INLINE void apply(__m256i (&acc)[R][V], int64_t s) {
    __m256 rn[V];
    unroll<V>([&](auto v) GENAD_INLINE { rn[v] = _mm256_loadu_ps(rnorm + (s + v) * L); });
    unroll<R>([&](auto r) GENAD_INLINE {
      const int64_t row = row0 + r;
      const __m256 coef = _mm256_set1_ps(qq->coef[row]);
      const Vec<float> th(st->thr[row]);
      __m256 t[V];
      unroll<V>([&](auto v) GENAD_INLINE {
        // t̃ = |r|² − 2·s_q·s_r·(q̃·r̃); padding lanes: |r|² = +inf, never below a threshold
        t[v] = _mm256_fmadd_ps(coef, _mm256_cvtepi32_ps(acc[r][v]), rn[v]);
      });
      __m256 least = t[0];  // one compare a row: the lanes' minimum over the strips, then each strip when one passes
      unroll<V>([&](auto v) GENAD_INLINE {
        if constexpr (v > 0) least = _mm256_min_ps(least, t[v]);
      });
      if (C10_UNLIKELY(lt_bits<float>(Vec<float>(least), th) != 0)) {
        unroll<V>([&](auto v) GENAD_INLINE {
          const uint32_t bits = lt_bits<float>(Vec<float>(t[v]), th);
          if (bits != 0) append<float>(*st, row, Vec<float>(t[v]), bits, (s + v) * L);
        });
        if (st->count[row] >= st->flush_at) st->cut(row, self[r], ExactT<float>{ctx, ch, row});
      }
    });
  }
};

template <int R>
C10_NOINLINE void quantized_block(const KnnContext<float>& ctx, const QueryChunk<float>& ch,
                                  const QuantizedQueries& qq, const QuantizedRefs& Q, int64_t b0, int64_t p0,
                                  int64_t p1, KnnState<float>& st) {
  QuantizedEpilogue<R> epi{&st, &qq, &ctx, &ch, b0, {}, ctx.P->norm.data()};
  for (int r = 0; r < R; ++r) epi.self[r] = ctx.exclude_self ? ctx.P->pos[ch.orig[b0 + r]] : -1;
  const int16_t* q = qq.rows.data() + b0 * Q.Dp;
  int64_t s = p0;
  for (; s + kQuantizedStrips <= p1; s += kQuantizedStrips) {
    __m256i acc[R][kQuantizedStrips];
    dot_tile_int16<R, kQuantizedStrips>(q, Q.Dp, Q.strip(s), acc);
    epi.template apply<kQuantizedStrips>(acc, s);
  }
  for (; s < p1; ++s) {
    __m256i acc[R][1];
    dot_tile_int16<R, 1>(q, Q.Dp, Q.strip(s), acc);
    epi.template apply<1>(acc, s);
  }
}

template <int R = kQuantizedRows>
void quantized_rows(const KnnContext<float>& ctx, const QueryChunk<float>& ch, const QuantizedQueries& qq,
                    const QuantizedRefs& Q, int64_t b0, int rows, int64_t p0, int64_t p1, KnnState<float>& st) {
  if constexpr (R > 1) {
    if (rows < R) return quantized_rows<R - 1>(ctx, ch, qq, Q, b0, rows, p0, p1, st);
  }
  quantized_block<R>(ctx, ch, qq, Q, b0, p0, p1, st);
}

// The pass of the int16 filter over every packed reference, for the chunk's packed queries.
void search_quantized(const KnnContext<float>& ctx, const QuantizedRefs& Q, const QueryChunk<float>& ch,
                      KnnState<float>& st) {
  QuantizedQueries qq;
  qq.build(ch, Q, st.slack);
  const auto block = [&](int64_t b0, int rows, int64_t p0, int64_t p1) {
    quantized_rows(ctx, ch, qq, Q, b0, rows, p0, p1, st);
  };
  over_panels(ctx.P->n_strips, quantized_panel_strips(Q.Dp), ch.n, kQuantizedRows, block);
}
#endif

// Adds the direct distances (in double) of query row i to the reference rows `js` (j == i left out with
// exclude_self) to the k best so far, d2[0 .. count) ascending with their rows idx; returns the new count.
template <typename T, class Rows>
int64_t insert_direct(const KnnContext<T>& ctx, int64_t i, const Rows& js, double* d2, int64_t* idx, int64_t count) {
  const T* qi = ctx.q + i * ctx.sq;
  for (const int64_t j : js) {
    if (ctx.exclude_self && j == i) continue;
    count = gd::sorted_insert(d2, idx, count, ctx.k, gd::sq_dist_direct<double>(qi, ctx.r + j * ctx.sr, ctx.P->D), j);
  }
  return count;
}

// Writes query row i's k distances √d2.
template <typename T>
void write_distances(const KnnContext<T>& ctx, int64_t i, const double* d2, int64_t count, T* out) {
  TORCH_INTERNAL_ASSERT(count == ctx.k, "knn_distance: found ", count, " of ", ctx.k, " neighbours");
  for (int64_t t = 0; t < ctx.k; ++t) out[i * ctx.k + t] = static_cast<T>(std::sqrt(d2[t]));
}

// The rows 0 .. M − 1, for insert_direct.
struct AllRows {
  int64_t M;
  struct It {
    int64_t j;
    int64_t operator*() const { return j; }
    It& operator++() { ++j; return *this; }
    bool operator!=(const It& o) const { return j != o.j; }
  };
  It begin() const { return {0}; }
  It end() const { return {M}; }
};

// The chunk's queries on the exact path: every reference by direct differences.
template <typename T>
void knn_exact_queries(const KnnContext<T>& ctx, const QueryChunk<T>& ch, T* out) {
  std::vector<double> d2(ctx.k);
  std::vector<int64_t> idx(ctx.k);
  for (const int64_t i : ch.exact) {
    write_distances(ctx, i, d2.data(), insert_direct(ctx, i, AllRows{ctx.P->M}, d2.data(), idx.data(), 0), out);
  }
}

// Queries [i0, i1): the filter's pass (the int16 one where `Q` is given), then per query its surviving
// candidates and the references on the exact path ranked by direct distances in double.
template <typename T>
void knn_chunk(const KnnContext<T>& ctx, const void* Q, int64_t i0, int64_t i1, T* out) {
  const PackedRefs<T>& P = *ctx.P;
  const int64_t k = ctx.k, D = P.D;
  QueryChunk<T> ch;
  ch.pack(ctx.q, ctx.sq, i0, i1, D, P.shift.data());
  KnnState<T> st;
  st.reset(ch.n, k, kStrips * Vec<T>::size());
#if defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    if (Q != nullptr) search_quantized(ctx, *static_cast<const QuantizedRefs*>(Q), ch, st);
  }
#endif
  if (Q == nullptr) search_expansion(ctx, ch, st);
  std::vector<double> d2(k);
  std::vector<int64_t> idx(k);
  for (int64_t row = 0; row < ch.n; ++row) {
    const int64_t i = ch.orig[row];
    st.cut(row, ctx.exclude_self ? P.pos[i] : -1, ExactT<T>{&ctx, &ch, row});
    const T* qi = ctx.q + i * ctx.sq;
    const int32_t* cand = st.pos.data() + row * st.cap;
    for (int64_t t = 0; t < st.count[row]; ++t) {  // the rows first, so that their cache misses overlap
      __builtin_prefetch(ctx.r + P.orig[cand[t]] * ctx.sr);
    }
    int64_t count = 0;
    for (int64_t t = 0; t < st.count[row]; ++t) {
      const int64_t j = P.orig[cand[t]];
      count = gd::sorted_insert(d2.data(), idx.data(), count, k, sq_dist_double(qi, ctx.r + j * ctx.sr, D), j);
    }
    write_distances(ctx, i, d2.data(), insert_direct(ctx, i, P.exact, d2.data(), idx.data(), count), out);
  }
  knn_exact_queries(ctx, ch, out);
}

template <typename T>
void knn_impl(const at::Tensor& queries, const at::Tensor& refs, int64_t k, bool exclude_self, at::Tensor& out) {
  const int64_t N = queries.size(0), M = refs.size(0), D = queries.size(1);
  const std::shared_ptr<const PackedRefs<T>> P = packed_refs<T>(refs, M, D);  // held sets: packed once
  const KnnContext<T> ctx{P.get(), queries.const_data_ptr<T>(), queries.stride(0), refs.const_data_ptr<T>(),
                          refs.stride(0), k, exclude_self, std::sqrt(P->norm_max) * (1.0 + 0x1p-20)};
  std::shared_ptr<const void> quantized;  // the int16 filter's references, where it runs
#if defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    if (D <= kQuantizedMaxD) {
      auto Q = quantized_refs(*P);  // held sets: built once
      if (Q->usable) quantized = std::move(Q);
    }
  }
#endif
  T* o = out.mutable_data_ptr<T>();
  parallel_chunks(N, chunk_rows(N), [&](int64_t i0, int64_t i1) { knn_chunk(ctx, quantized.get(), i0, i1, o); });
}

at::Tensor knn_distance_cpu(const at::Tensor& queries, const at::Tensor& refs, int64_t k, bool exclude_self) {
  const host::KnnArgs args = host::check_knn(host::kCPU, queries, refs, k, exclude_self);
  const int64_t N = args.N;
  // the candidate lists hold packed positions as int32 (half the bytes of the hot append path)
  TORCH_CHECK_VALUE(args.M < (int64_t{1} << 31), "genad_fast::knn_distance: the CPU kernel takes at most 2^31 - 1 "
                    "refs (int32 positions), got M = ", args.M);
  at::Tensor out = at::empty({N, k}, queries.options());
  if (N == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(queries.scalar_type(), "genad_fast_knn_distance_cpu", [&] {
    knn_impl<scalar_t>(queries, refs, k, exclude_self, out);
  });
  return out;
}

}  // namespace

GENAD_REGISTER_KERNEL(knn_distance_stub, &knn_distance_cpu);

}  // namespace CPU_CAPABILITY
}  // namespace genad::cpu
