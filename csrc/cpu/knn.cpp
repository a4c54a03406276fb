// Distances to the k nearest references on the CPU (genad_fast::knn_distance), fused and tiled: memory O(N·k + M),
// no N×M matrix.
//
// Each thread takes chunks of queries and streams the packed references past them (distance_tiles.h). For a
// query the ranking only needs t = |r|² − 2 q·r = d² − |q|² (|q|² is the same for all its candidates), one
// fused multiply-add on the register tile; a vector compare against the query's current k-th best t rejects a
// whole strip at once, and only lanes that beat it (about k·ln(M/k) over a whole pass, for random order) are
// appended to the query's candidate list, cut back to the best k now and then (KnnState). At the end the k
// winners' distances are recomputed exactly, by direct differences in double, and sorted: the expansion only
// ranks, so its cancellation error cannot reach the returned values (it can only swap near-ties, whose
// distances agree to that error). exclude_self drops j == i. NaN/inf rows take the exact path, ranked as torch.topk ranks:
// NaN after +inf.

#include <genad/host/distance.h>

#include "distance_tiles.h"
#include "kernels.h"

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
};

// The candidates of one chunk's packed queries: per query an unsorted list of (t, packed position) pairs that the
// tile appends to, cut back to the best k whenever it reaches `flush_at` entries; `thr` is the k-th best t after
// the last cut (+inf before k are in). Appending is a vector compress (no branch per lane, no call) and a cut
// a pass over ~2k entries (an insertion for small k, a selection for larger), so the rare path stays cheap: the
// threshold only lags behind by the few candidates since the last cut.
template <typename T>
struct KnnState {
  static constexpr int64_t kInsertionMaxK = 32;
  int64_t k = 0, flush_at = 0, cap = 0;
  std::vector<T> vals;        // [n][cap]
  std::vector<int32_t> pos;   // [n][cap]
  std::vector<int64_t> count; // [n]
  std::vector<T> thr;         // [n]
  std::vector<T> sel;         // scratch of cut_by_selection()

  void reset(int64_t n, int64_t k_) {
    constexpr int64_t L = Vec<T>::size();
    k = k_;
    flush_at = k + std::max<int64_t>(k, 32);
    cap = flush_at + kStrips * L;  // one more tile of appends (a full vector store each) always fits
    vals.resize(n * cap);
    pos.resize(n * cap);
    count.assign(n, 0);
    thr.assign(n, std::numeric_limits<T>::infinity());
    sel.reserve(cap);
  }

  // Keeps the k smallest candidates of `row` (dropping the query's own position `self`), ties to the first
  // appended, and their k-th as the new threshold. The candidates of the vector path are finite t values: plain <
  // orders them. Up to kInsertionMaxK by insertion (at k = 10 the cuts fell from 7.9 % to 4.8 % of a forced-AVX2
  // search, perf on a Sapphire Rapids), above it by selection (insertion shifts O(k) entries per kept candidate).
  C10_NOINLINE void cut(int64_t row, int64_t self) {
    if (k <= kInsertionMaxK) {
      cut_by_insertion(row, self);
    } else {
      cut_by_selection(row, self);
    }
  }

  // cut() for small k: one pass of insertion into the sorted head of the list itself (a candidate not below the
  // k-th so far costs one compare; the head kept by the last cut is already sorted). Ties keep the earlier entry.
  void cut_by_insertion(int64_t row, int64_t self) {
    T* v = vals.data() + row * cap;
    int32_t* p = pos.data() + row * cap;
    const int64_t n = count[row];
    int64_t m = 0;  // v[0 .. m) the kept ones, ascending; m <= t, so the head never overwrites an unread entry
    for (int64_t t = 0; t < n; ++t) {
      const T x = v[t];
      const int32_t at = p[t];
      if (at == self) continue;  // positions are >= 0: self = -1 drops none
      if (m == k) {
        if (!(x < v[k - 1])) continue;
        --m;  // the largest goes (of equal ones, the last appended)
      }
      int64_t j = m;
      for (; j > 0 && x < v[j - 1]; --j) {
        v[j] = v[j - 1];
        p[j] = p[j - 1];
      }
      v[j] = x;
      p[j] = at;
      ++m;
    }
    count[row] = m;
    thr[row] = m == k ? v[k - 1] : std::numeric_limits<T>::infinity();
  }

  // cut() for larger k: a selection (nth_element) over the list, then the values below the k-th and the first of
  // its copies, in list order.
  void cut_by_selection(int64_t row, int64_t self) {
    T* v = vals.data() + row * cap;
    int32_t* p = pos.data() + row * cap;
    int64_t n = count[row];
    if (self >= 0) {  // appended at most once: swap it out
      for (int64_t t = 0; t < n; ++t) {
        if (p[t] == self) {
          v[t] = v[n - 1];
          p[t] = p[n - 1];
          --n;
          break;
        }
      }
    }
    T kth = std::numeric_limits<T>::infinity();
    if (n > k) {
      sel.assign(v, v + n);
      std::nth_element(sel.begin(), sel.begin() + (k - 1), sel.end());
      kth = sel[k - 1];
      int64_t below = 0;  // sel[0 .. k−1) are <= kth; those < kth are all of the values < kth
      for (int64_t t = 0; t + 1 < k; ++t) below += sel[t] < kth;
      int64_t ties = k - below;  // copies of kth to keep
      int64_t w = 0;
      for (int64_t t = 0; t < n; ++t) {
        if (v[t] < kth || (v[t] == kth && ties-- > 0)) {
          v[w] = v[t];
          p[w] = p[t];
          ++w;
        }
      }
      n = w;
    } else if (n == k) {
      kth = *std::max_element(v, v + n);
    }
    count[row] = n;
    thr[row] = kth;
  }
};

// Appends the lanes of t selected by `bits` (packed positions base + lane) to the candidates of `row`.
// Out of line: rare, and it keeps the tile's registers.
template <typename T>
C10_NOINLINE void append(KnnState<T>& st, int64_t row, Vec<T> t, uint32_t bits, int64_t base) {
  const int64_t n = st.count[row];
  T* dst = st.vals.data() + row * st.cap + n;
  int32_t* pdst = st.pos.data() + row * st.cap + n;
  const int32_t b = static_cast<int32_t>(base);
#if defined(CPU_CAPABILITY_AVX512)
  // Compress into a register, then one full store (the list has room): a compress straight to memory is
  // microcoded and slow on some AVX-512 CPUs (AMD Zen 4).
  if constexpr (std::is_same_v<T, float>) {
    const __m512i lanes = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    _mm512_storeu_ps(dst, _mm512_maskz_compress_ps(static_cast<__mmask16>(bits), t));
    _mm512_storeu_si512(pdst, _mm512_maskz_compress_epi32(static_cast<__mmask16>(bits),
                                                          _mm512_add_epi32(lanes, _mm512_set1_epi32(b))));
  } else {
    const __m256i lanes = _mm256_set_epi32(7, 6, 5, 4, 3, 2, 1, 0);
    _mm512_storeu_pd(dst, _mm512_maskz_compress_pd(static_cast<__mmask8>(bits), t));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(pdst),
                        _mm256_maskz_compress_epi32(static_cast<__mmask8>(bits),
                                                    _mm256_add_epi32(lanes, _mm256_set1_epi32(b))));
  }
  st.count[row] = n + __builtin_popcount(bits);
#else
  T tv[Vec<T>::size()];
  t.store(tv);
  int64_t m = 0;
  while (bits != 0) {
    const int l = __builtin_ctz(bits);
    bits &= bits - 1;
    dst[m] = tv[l];
    pdst[m] = b + l;
    ++m;
  }
  st.count[row] = n + m;
#endif
}

template <typename T, int R>
struct KnnEpilogue {
  static constexpr int64_t L = Vec<T>::size();
  KnnState<T>* st;
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
        if (st->count[row] >= st->flush_at) st->cut(row, self[r]);
      }
    });
  }
};

template <typename T, int R>
void knn_block(const KnnContext<T>& ctx, const QueryChunk<T>& ch, int64_t b0, int64_t p0, int64_t p1,
               KnnState<T>& st) {
  const PackedRefs<T>& P = *ctx.P;
  KnnEpilogue<T, R> epi;
  epi.st = &st;
  epi.row0 = b0;
  epi.rnorm = P.norm.data();
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

// The k distances of query row i to the reference rows idx[0..k), exactly (direct differences in double),
// ascending with NaN last (finite rows here, but the order is the op's), written to out[0..k).
template <typename T>
void write_exact(const KnnContext<T>& ctx, int64_t i, const int64_t* idx, double* d2, T* out) {
  const int64_t D = ctx.P->D, k = ctx.k;
  const T* qi = ctx.q + i * ctx.sq;
  for (int64_t t = 0; t < k; ++t) d2[t] = sq_dist_double(qi, ctx.r + idx[t] * ctx.sr, D);
  std::sort(d2, d2 + k, [](double a, double b) { return gd::nan_last_less(a, b); });
  for (int64_t t = 0; t < k; ++t) out[t] = static_cast<T>(std::sqrt(d2[t]));
}

template <typename T>
void knn_chunk(const KnnContext<T>& ctx, int64_t i0, int64_t i1, T* out) {
  const PackedRefs<T>& P = *ctx.P;
  const int64_t k = ctx.k, D = P.D;
  QueryChunk<T> ch;
  ch.pack(ctx.q, ctx.sq, i0, i1, D, P.shift.data());
  KnnState<T> st;
  st.reset(ch.n, k);
  const int64_t panel = panel_strips<T>(D);
  for (int64_t p0 = 0; p0 < P.n_strips; p0 += panel) {
    const int64_t p1 = std::min(P.n_strips, p0 + panel);
    for (int64_t b0 = 0; b0 < ch.n; b0 += kRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kRows, ch.n - b0));
      knn_rows(ctx, ch, b0, rows, p0, p1, st);
    }
  }
  std::vector<T> vals(k);
  std::vector<int64_t> idx(k);
  std::vector<double> d2(k);
  for (int64_t row = 0; row < ch.n; ++row) {
    const int64_t i = ch.orig[row];
    st.cut(row, ctx.exclude_self ? P.pos[i] : -1);
    // The vector path's best (at most k), sorted, then the references on the exact path, ranked in the same
    // t = d² − |q|² units.
    int64_t count = 0;
    const T* cv = st.vals.data() + row * st.cap;
    const int32_t* cp = st.pos.data() + row * st.cap;
    for (int64_t t = 0; t < st.count[row]; ++t) {
      count = gd::sorted_insert(vals.data(), idx.data(), count, k, cv[t], P.orig[cp[t]]);
    }
    const T* qi = ctx.q + i * ctx.sq;
    for (const int64_t j : P.exact) {
      if (ctx.exclude_self && j == i) continue;
      const double d2 = gd::sq_dist_direct<double>(qi, ctx.r + j * ctx.sr, D);
      count = gd::sorted_insert(vals.data(), idx.data(), count, k,
                                static_cast<T>(d2 - static_cast<double>(ch.norm[row])), j);
    }
    TORCH_INTERNAL_ASSERT(count == k, "knn_distance: found ", count, " of ", k, " neighbours");
    write_exact(ctx, i, idx.data(), d2.data(), out + i * k);
  }
  if (!ch.exact.empty()) {  // queries on the exact path: every reference by direct differences
    std::vector<double> dv(k);
    for (const int64_t i : ch.exact) {
      const T* qi = ctx.q + i * ctx.sq;
      int64_t count = 0;
      for (int64_t j = 0; j < P.M; ++j) {
        if (ctx.exclude_self && j == i) continue;
        count = gd::sorted_insert(dv.data(), idx.data(), count, k,
                                  gd::sq_dist_direct<double>(qi, ctx.r + j * ctx.sr, D), j);
      }
      TORCH_INTERNAL_ASSERT(count == k, "knn_distance: found ", count, " of ", k, " neighbours");
      for (int64_t t = 0; t < k; ++t) out[i * k + t] = static_cast<T>(std::sqrt(dv[t]));
    }
  }
}

template <typename T>
void knn_impl(const at::Tensor& queries, const at::Tensor& refs, int64_t k, bool exclude_self, at::Tensor& out) {
  const int64_t N = queries.size(0), M = refs.size(0), D = queries.size(1);
  const std::shared_ptr<const PackedRefs<T>> P = packed_refs<T>(refs, M, D);  // held sets: packed once
  const KnnContext<T> ctx{P.get(), queries.const_data_ptr<T>(), queries.stride(0), refs.const_data_ptr<T>(),
                          refs.stride(0), k, exclude_self};
  T* o = out.mutable_data_ptr<T>();
  parallel_chunks(N, chunk_rows(N), [&](int64_t i0, int64_t i1) { knn_chunk(ctx, i0, i1, o); });
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
