// Distances to the k nearest references on the CPU (genad_fast::knn_distance), fused and tiled: memory O(N·k + M),
// no N×M matrix.
//
// Each thread takes chunks of queries and streams the packed references past them (distance_tiles.h). For a
// query the ranking only needs t = |r|² − 2 q·r = d² − |q|² (|q|² is the same for all its candidates), one
// fused multiply-add on the register tile; a vector compare against the query's current k-th best t rejects a
// whole strip at once, and only lanes that beat it (about k·ln(M/k) over a whole pass, for random order) go
// through the sorted buffer of k (value, index) pairs (genad/distance.h). At the end the k winners' distances
// are recomputed exactly, by direct differences in double, and sorted: the expansion only ranks, so its
// cancellation error cannot reach the returned values (it can only swap near-ties, whose distances agree to
// that error). exclude_self drops j == i. NaN/inf rows take the exact path, ranked as torch.topk ranks:
// NaN after +inf.
#include <torch/library.h>

#include "distance_tiles.h"

namespace genad::cpu {
namespace {

using namespace genad::cpu::dist;
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

// The k-nearest buffers of one chunk's packed queries: [n][k] values (t = d² − |q|²) and reference rows.
template <typename T>
struct KnnState {
  std::vector<T> vals;
  std::vector<int64_t> idx;
  std::vector<int64_t> count;
};

template <typename T>
C10_ALWAYS_INLINE T knn_threshold(const T* vals, int64_t count, int64_t k) {
  // +inf until k candidates are in, or while the k-th is NaN (anything numeric beats it).
  return (count == k && !std::isnan(vals[k - 1])) ? vals[k - 1] : std::numeric_limits<T>::infinity();
}

template <typename T, int R>
struct KnnEpilogue {
  static constexpr int64_t L = Vec<T>::size();
  T thr[R];
  T* vals[R];
  int64_t* idx[R];
  int64_t* count[R];
  int64_t self[R];   // the query's own row (exclude_self), or −1
  const T* rnorm;
  const int64_t* orig;
  int64_t k;

  template <int V, bool MASKED>
  C10_ALWAYS_INLINE void apply(Vec<T> (&acc)[R][V], int64_t s) {
    const Vec<T> m2(T(-2));
    Vec<T> rn[V];
#pragma GCC unroll 4
    for (int v = 0; v < V; ++v) rn[v] = Vec<T>::loadu(rnorm + (s + v) * L);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Vec<T> th(thr[r]);
      Vec<T> t[V];
      uint32_t any = 0;
#pragma GCC unroll 4
      for (int v = 0; v < V; ++v) {
        t[v] = at::vec::fmadd(m2, acc[r][v], rn[v]);  // padding lanes: |r|² = +inf, never below a threshold
        any |= lt_bits<T>(t[v], th);
      }
      if (C10_UNLIKELY(any != 0)) {
#pragma GCC unroll 4
        for (int v = 0; v < V; ++v) collect(r, t[v], s + v);
      }
    }
  }

  C10_NOINLINE void collect(int r, Vec<T> t, int64_t strip) {
    uint32_t bits = lt_bits<T>(t, Vec<T>(thr[r]));
    if (bits == 0) return;
    T tv[L];
    t.store(tv);
    while (bits != 0) {
      const int l = __builtin_ctz(bits);
      bits &= bits - 1;
      if (!(tv[l] < thr[r])) continue;  // the threshold fell since the compare
      const int64_t j = orig[strip * L + l];
      if (j == self[r]) continue;
      *count[r] = gd::sorted_insert(vals[r], idx[r], *count[r], k, tv[l], j);
      thr[r] = knn_threshold(vals[r], *count[r], k);
    }
  }

  void prepare_mask(int64_t) {}
};

template <typename T, int R>
void knn_block(const KnnContext<T>& ctx, const QueryChunk<T>& ch, int64_t b0, int64_t p0, int64_t p1,
               KnnState<T>& st) {
  const PackedRefs<T>& P = *ctx.P;
  const int64_t k = ctx.k;
  KnnEpilogue<T, R> epi;
  epi.rnorm = P.norm.data();
  epi.orig = P.orig.data();
  epi.k = k;
  for (int r = 0; r < R; ++r) {
    const int64_t row = b0 + r;
    epi.vals[r] = st.vals.data() + row * k;
    epi.idx[r] = st.idx.data() + row * k;
    epi.count[r] = st.count.data() + row;
    epi.thr[r] = knn_threshold(epi.vals[r], *epi.count[r], k);
    epi.self[r] = ctx.exclude_self ? ch.orig[row] : -1;
  }
  run_strips<T, R>(ch.rows.data() + b0 * P.D, P, p0, p1, nullptr, 0, epi);
}

template <typename T>
void knn_rows(const KnnContext<T>& ctx, const QueryChunk<T>& ch, int64_t b0, int rows, int64_t p0, int64_t p1,
              KnnState<T>& st) {
  switch (rows) {
    case 1: return knn_block<T, 1>(ctx, ch, b0, p0, p1, st);
    case 2: return knn_block<T, 2>(ctx, ch, b0, p0, p1, st);
    case 3: return knn_block<T, 3>(ctx, ch, b0, p0, p1, st);
    case 4: return knn_block<T, 4>(ctx, ch, b0, p0, p1, st);
    case 5: return knn_block<T, 5>(ctx, ch, b0, p0, p1, st);
    case 6: return knn_block<T, 6>(ctx, ch, b0, p0, p1, st);
    case 7: return knn_block<T, 7>(ctx, ch, b0, p0, p1, st);
    default: return knn_block<T, kRows>(ctx, ch, b0, p0, p1, st);
  }
}

// The k distances of query row i to the reference rows idx[0..k), exactly (direct differences in double),
// ascending with NaN last, written to out[0..k).
template <typename T>
void write_exact(const KnnContext<T>& ctx, int64_t i, const int64_t* idx, T* out) {
  const int64_t D = ctx.P->D, k = ctx.k;
  const T* qi = ctx.q + i * ctx.sq;
  std::vector<double> d2(k);
  for (int64_t t = 0; t < k; ++t) d2[t] = gd::sq_dist_direct<double>(qi, ctx.r + idx[t] * ctx.sr, D);
  std::sort(d2.begin(), d2.end(), [](double a, double b) { return gd::nan_last_less(a, b); });
  for (int64_t t = 0; t < k; ++t) out[t] = static_cast<T>(std::sqrt(d2[t]));
}

template <typename T>
void knn_chunk(const KnnContext<T>& ctx, int64_t i0, int64_t i1, T* out) {
  const PackedRefs<T>& P = *ctx.P;
  const int64_t k = ctx.k, D = P.D;
  QueryChunk<T> ch;
  ch.pack(ctx.q, ctx.sq, i0, i1, D, P.shift.data());
  KnnState<T> st;
  st.vals.assign(ch.n * k, std::numeric_limits<T>::infinity());
  st.idx.assign(ch.n * k, -1);
  st.count.assign(ch.n, 0);
  const int64_t panel = panel_strips<T>(D);
  for (int64_t p0 = 0; p0 < P.n_strips; p0 += panel) {
    const int64_t p1 = std::min(P.n_strips, p0 + panel);
    for (int64_t b0 = 0; b0 < ch.n; b0 += kRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kRows, ch.n - b0));
      knn_rows(ctx, ch, b0, rows, p0, p1, st);
    }
  }
  for (int64_t row = 0; row < ch.n; ++row) {
    const int64_t i = ch.orig[row];
    T* vals = st.vals.data() + row * k;
    int64_t* idx = st.idx.data() + row * k;
    int64_t count = st.count[row];
    const T* qi = ctx.q + i * ctx.sq;
    for (const int64_t j : P.exact) {  // references on the exact path, ranked in the same t units
      if (ctx.exclude_self && j == i) continue;
      const double d2 = gd::sq_dist_direct<double>(qi, ctx.r + j * ctx.sr, D);
      count = gd::sorted_insert(vals, idx, count, k, static_cast<T>(d2 - static_cast<double>(ch.norm[row])), j);
    }
    TORCH_INTERNAL_ASSERT(count == k, "knn_distance: found ", count, " of ", k, " neighbours");
    write_exact(ctx, i, idx, out + i * k);
  }
  if (!ch.exact.empty()) {  // queries on the exact path: every reference by direct differences
    std::vector<double> vals(k);
    std::vector<int64_t> idx(k);
    for (const int64_t i : ch.exact) {
      const T* qi = ctx.q + i * ctx.sq;
      int64_t count = 0;
      for (int64_t j = 0; j < P.M; ++j) {
        if (ctx.exclude_self && j == i) continue;
        count = gd::sorted_insert(vals.data(), idx.data(), count, k,
                                  gd::sq_dist_direct<double>(qi, ctx.r + j * ctx.sr, D), j);
      }
      TORCH_INTERNAL_ASSERT(count == k, "knn_distance: found ", count, " of ", k, " neighbours");
      for (int64_t t = 0; t < k; ++t) out[i * k + t] = static_cast<T>(std::sqrt(vals[t]));
    }
  }
}

template <typename T>
void knn_impl(const at::Tensor& queries, const at::Tensor& refs, int64_t k, bool exclude_self, at::Tensor& out) {
  const int64_t N = queries.size(0), M = refs.size(0), D = queries.size(1);
  const PackedRefs<T> P = pack_refs<T>(refs.const_data_ptr<T>(), refs.stride(0), M, D);
  const KnnContext<T> ctx{&P, queries.const_data_ptr<T>(), queries.stride(0), refs.const_data_ptr<T>(),
                          refs.stride(0), k, exclude_self};
  T* o = out.mutable_data_ptr<T>();
  const int64_t rows = chunk_rows(N);
  for_each_chunk((N + rows - 1) / rows, [&](int64_t c) {
    knn_chunk(ctx, c * rows, std::min(N, (c + 1) * rows), o);
  });
}

at::Tensor knn_distance_cpu(const at::Tensor& queries, const at::Tensor& refs, int64_t k, bool exclude_self) {
  const char* op = "genad_fast::knn_distance";
  check_pair(queries, refs, op);
  const int64_t N = queries.size(0), M = refs.size(0);
  if (exclude_self) {
    TORCH_CHECK(N == M, op, ": exclude_self needs the queries to be the refs (N == M), got N = ", N, ", M = ", M);
  }
  const int64_t available = exclude_self ? M - 1 : M;
  TORCH_CHECK(k >= 1, op, ": k must be >= 1, got ", k);
  TORCH_CHECK(k <= available, op, ": k = ", k, " is larger than the ", available, " reference",
              available == 1 ? "" : "s", exclude_self ? " left once each point's own row is excluded" : "",
              " (M = ", M, ")");
  at::Tensor out = at::empty({N, k}, queries.options());
  if (N == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(queries.scalar_type(), "genad_fast_knn_distance_cpu", [&] {
    knn_impl<scalar_t>(queries, refs, k, exclude_self, out);
  });
  return out;
}

}  // namespace
}  // namespace genad::cpu

TORCH_LIBRARY_IMPL(genad_fast, CPU, m) {
  m.impl("knn_distance", &genad::cpu::knn_distance_cpu);
}
