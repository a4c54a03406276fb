// The k-nearest search's candidate lists (knn.cpp): per query, the references whose filter value passed the
// query's threshold, cut back now and then to those that can still be among its k nearest.
//
// The filter's values t̃ approximate t = d² − |q|² (the float expansion's, or the int16 filter's: knn.cpp and
// knn_quantized.h) within a bound `margin` per query, and a list keeps every candidate below the k-th smallest
// kept value + slack, slack = 2·margin. None of the k nearest is ever dropped: such a reference has t at most the
// k-th true t of the references seen, which is at most the k-th kept value + margin, so its t̃ is below that
// + 2·margin. The lists' survivors are ranked by their exact distances at the end, so the op returns the float64
// k nearest whatever the filter's error (ties of equal distance aside, which give the same values).
#pragma once

#include <ATen/cpu/vec/vec.h>
#include <c10/macros/Macros.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace genad::cpu::CPU_CAPABILITY::dist {

// One chunk's candidate lists: per packed query an unsorted list of (t̃, packed position) pairs that the tile
// appends to, cut when it reaches `flush_at` entries; `thr` is the k-th smallest kept value + slack after the
// last cut (+inf before k are in). Appending is a vector compress (no branch per lane, no call) and a cut a pass
// over ~2k entries, so the rare path stays cheap: the threshold only lags behind by the few candidates since the
// last cut.
template <typename T>
struct KnnState {
  static constexpr int64_t kInsertionMaxK = 32;
  int64_t k = 0, flush_at = 0, reduce_at = 0, cap = 0;
  std::vector<T> vals;         // [n][cap]
  std::vector<int32_t> pos;    // [n][cap]
  std::vector<int64_t> count;  // [n]
  std::vector<T> thr;          // [n]
  std::vector<double> slack;   // [n] 2·margin of the query's filter values
  std::vector<T> sel;                              // scratch of cut_by_selection()
  std::vector<std::pair<double, int32_t>> ranked;  // scratch of rank_exactly()

  // `lanes`: the most one tile appends to a list between two checks of its length.
  void reset(int64_t n, int64_t k_, int64_t lanes) {
    k = k_;
    flush_at = k + std::max<int64_t>(k, 32);
    reduce_at = k + (flush_at - k) / 2;
    cap = flush_at + lanes;  // a tile's appends (a full vector store each) always fit
    vals.resize(n * cap);
    pos.resize(n * cap);
    count.assign(n, 0);
    thr.assign(n, std::numeric_limits<T>::infinity());
    slack.assign(n, 0.0);
    sel.reserve(cap);
  }

  // Keeps every candidate of `row` not above the k-th smallest value + slack[row], dropping the query's own
  // packed position `self` (−1: none). Up to kInsertionMaxK by insertion into the list's sorted head, above it by
  // selection (insertion shifts O(k) entries per kept candidate). When more than reduce_at stay (references
  // within the slack of one another: duplicates, exact ties, a coarse filter), exact(position) — t by direct
  // differences in double — ranks them and the best k stay, so such references cannot fill the list. The
  // threshold becomes the bound, rounded up to a T.
  template <class Exact>
  C10_NOINLINE void cut(int64_t row, int64_t self, const Exact& exact) {
    double kth = k <= kInsertionMaxK ? cut_by_insertion(row, self) : cut_by_selection(row, self);
    if (count[row] > reduce_at) kth = rank_exactly(row, exact);
    thr[row] = round_up(kth + slack[row]);
  }

 private:
  // cut() for small k: one pass of insertion into the sorted head of the list itself (a candidate above the bound
  // costs one compare). Returns the k-th smallest kept value (+inf while fewer than k are in).
  double cut_by_insertion(int64_t row, int64_t self) {
    T* v = vals.data() + row * cap;
    int32_t* p = pos.data() + row * cap;
    const int64_t n = count[row];
    const double s = slack[row];
    T bound = std::numeric_limits<T>::infinity();  // the k-th + s rounded up, once k are in
    int64_t m = 0;  // v[0 .. m) the kept ones, ascending; m <= t, so the head never overwrites an unread entry
    for (int64_t t = 0; t < n; ++t) {
      const T x = v[t];
      const int32_t at = p[t];
      if (at == self || x > bound) continue;  // positions are >= 0: self = -1 drops none
      int64_t j = m;
      for (; j > 0 && x < v[j - 1]; --j) {
        v[j] = v[j - 1];
        p[j] = p[j - 1];
      }
      v[j] = x;
      p[j] = at;
      ++m;
      if (m >= k && j < k) {  // a new k-th: the tail above its bound goes
        bound = round_up(static_cast<double>(v[k - 1]) + s);
        while (m > k && v[m - 1] > bound) --m;
      }
    }
    count[row] = m;
    return m >= k ? static_cast<double>(v[k - 1]) : std::numeric_limits<double>::infinity();
  }

  // x as a T, rounded up (a bound rounded down could drop a candidate it must keep).
  static T round_up(double x) {
    T up = static_cast<T>(x);
    if (static_cast<double>(up) < x) up = std::nextafter(up, std::numeric_limits<T>::infinity());
    return up;
  }

  // cut() for larger k: a selection (nth_element) of the k-th, then the values not above the bound, in list
  // order.
  double cut_by_selection(int64_t row, int64_t self) {
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
    count[row] = n;
    if (n < k) return std::numeric_limits<double>::infinity();
    sel.assign(v, v + n);
    std::nth_element(sel.begin(), sel.begin() + (k - 1), sel.end());
    const double kth = sel[k - 1];
    const double bound = kth + slack[row];
    int64_t w = 0;
    for (int64_t t = 0; t < n; ++t) {
      if (!(static_cast<double>(v[t]) > bound)) {
        v[w] = v[t];
        p[w] = p[t];
        ++w;
      }
    }
    count[row] = w;
    return kth;
  }

  // The kept candidates' exact t replace their filter values and the best k stay (ties of equal t in any order:
  // their distances are the same). Returns the k-th exact t.
  template <class Exact>
  double rank_exactly(int64_t row, const Exact& exact) {
    T* v = vals.data() + row * cap;
    int32_t* p = pos.data() + row * cap;
    const int64_t m = count[row];
    ranked.resize(m);
    for (int64_t t = 0; t < m; ++t) ranked[t] = {exact(p[t]), p[t]};
    const auto by_value = [](const auto& a, const auto& b) { return a.first < b.first; };
    std::nth_element(ranked.begin(), ranked.begin() + (k - 1), ranked.begin() + m, by_value);
    std::sort(ranked.begin(), ranked.begin() + k, by_value);
    for (int64_t t = 0; t < k; ++t) {
      v[t] = static_cast<T>(ranked[t].first);
      p[t] = ranked[t].second;
    }
    count[row] = k;
    return ranked[k - 1].first;
  }
};

// Appends the lanes of t selected by `bits` (packed positions base + lane) to the candidates of `row`.
// Out of line: rare, and it keeps the tile's registers.
template <typename T>
C10_NOINLINE void append(KnnState<T>& st, int64_t row, at::vec::Vectorized<T> t, uint32_t bits, int64_t base) {
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
  T tv[at::vec::Vectorized<T>::size()];
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

}  // namespace genad::cpu::CPU_CAPABILITY::dist
