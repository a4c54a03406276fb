// The CUDA row-group kernels (csrc/cuda/coupling.cu forward and inverse, csrc/cuda/anogan.cu residual and Adam)
// run on the host: every block and thread of the launch grid, with the kernels' own index math, vector loads and
// lane functions (genad/row_groups.h, genad/coupling_lane.h, genad/anogan_lane.h), and each warp's butterfly of
// shuffles replayed in the order __shfl_xor_sync adds. Checked against plain per-element loops over the same math:
// every output element bit for bit (so each one is written, and by the right lane), the row sums (logdet, loss)
// within a few ulps of the sum in long double, nothing written past the last row, Adam's step counts advanced on
// active rows only. Prints "ok <cases>" on success; any mismatch prints it and exits 1.
#include <genad/anogan_lane.h>
#include <genad/coupling_lane.h>
#include <genad/row_groups.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <vector>

namespace rg = genad::row_groups;
namespace gc = genad::coupling;
namespace ga = genad::anogan;

namespace {

int failures = 0;
long cases = 0;

void fail(const char* what, const char* op, int64_t n, int64_t rows, int v, int64_t row, int64_t col) {
  if (failures++ < 20) {
    std::printf("MISMATCH %s: op %s, row length %lld, rows %lld, V %d, at row %lld column %lld\n", what, op,
                static_cast<long long>(n), static_cast<long long>(rows), v, static_cast<long long>(row),
                static_cast<long long>(col));
  }
}

uint64_t lcg_state = 88172645463325252ull;
double uniform() {  // in [-1, 1)
  lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
  return static_cast<double>(lcg_state >> 11) * 0x1.0p-52 - 1.0;
}

template <class T>
std::vector<T> random_matrix(int64_t rows, int64_t stride, double scale) {
  std::vector<T> m(static_cast<size_t>(rows * stride + 1));
  for (T& e : m) e = static_cast<T>(scale * uniform());
  // a few exact ties (d = 0: the residual's zero sub-gradient) and zeros
  if (m.size() > 3) m[1] = m[0], m[2] = T(0);
  return m;
}

// One launch: for each block and warp, `lane_partial(row, lane, lanes, k)` is thread k's value of partial sum k
// (K of them, reduced together as the kernels do), then the warp's butterflies, then `row_total(row, sums)` for
// lane 0 of each group whose row exists.
template <class T, int K, class Partial, class Total>
void run_grid(int64_t rows, int log2, Partial lane_partial, Total row_total) {
  const int64_t blocks = rg::blocks_for(rows, log2);
  const int lanes = 1 << log2;
  for (int64_t b = 0; b < blocks; ++b) {
    for (int w = 0; w < rg::kThreads / 32; ++w) {
      T vals[K][32];
      rg::RowLane at[32];
      for (int l = 0; l < 32; ++l) {
        at[l] = rg::row_lane(b, w * 32 + l, log2);
        T p[K] = {};
        if (at[l].row < rows) lane_partial(at[l].row, at[l].lane, lanes, p);
        for (int k = 0; k < K; ++k) vals[k][l] = p[k];
      }
      for (int k = 0; k < K; ++k) {
        for (int o = lanes >> 1; o > 0; o >>= 1) {  // v += __shfl_xor_sync(full, v, o), all lanes at once
          T next[32];
          for (int l = 0; l < 32; ++l) next[l] = vals[k][l] + vals[k][l ^ o];
          for (int l = 0; l < 32; ++l) vals[k][l] = next[l];
        }
      }
      for (int l = 0; l < 32; ++l) {
        if (at[l].row < rows && at[l].lane == 0) {
          T s[K];
          for (int k = 0; k < K; ++k) s[k] = vals[k][l];
          row_total(at[l].row, s);
        }
      }
    }
  }
}

template <class T>
bool close(T got, long double want, int64_t terms, long double magnitude) {
  const long double tol = 4.0L * (terms + 1) * std::numeric_limits<T>::epsilon() * (magnitude + 1e-30L);
  return std::fabs(static_cast<long double>(got) - want) <= tol;
}

template <class T>
bool same_bits(T a, T b) {
  return (std::isnan(a) && std::isnan(b)) || a == b;
}

template <class T, int V, bool kInverse>
void check_coupling(int64_t N, int64_t D, int64_t pad, T clamp) {
  ++cases;
  const char* op = kInverse ? "coupling_inverse" : "coupling_forward";
  const int64_t sa = D + pad, sh = 2 * D + pad;
  const std::vector<T> a = random_matrix<T>(N, sa, 2.0), h = random_matrix<T>(N, sh, 3.0);
  const T sentinel = std::numeric_limits<T>::quiet_NaN();
  std::vector<T> out(static_cast<size_t>(N * D + 8), sentinel), logdet(static_cast<size_t>(N + 1), sentinel);
  const int log2 = rg::log2_lanes(D / V);
  run_grid<T, 1>(
      N, log2,
      [&](int64_t r, int lane, int lanes, T* p) {
        const T* sr = h.data() + r * sh;
        p[0] = gc::coupling_lane<kInverse, V>(a.data() + r * sa, sr, sr + D, out.data() + r * D, D / V, lane, lanes,
                                              clamp);
      },
      [&](int64_t r, const T* s) { logdet[r] = kInverse ? -s[0] : s[0]; });
  for (int64_t r = 0; r < N; ++r) {
    long double sum = 0, mag = 0;
    for (int64_t j = 0; j < D; ++j) {
      const T s = gc::soft_clamp<gc::ScalarMath>(h[r * sh + j], clamp), t = h[r * sh + D + j], x = a[r * sa + j];
      const T want = kInverse ? gc::inverse_elem<gc::ScalarMath>(x, s, t) : gc::forward_elem<gc::ScalarMath>(x, s, t);
      if (!same_bits(out[r * D + j], want)) fail("element", op, D, N, V, r, j);
      sum += s;
      mag += std::fabs(static_cast<long double>(s));
    }
    if (!close(logdet[r], kInverse ? -sum : sum, D, mag)) fail("logdet", op, D, N, V, r, -1);
  }
  for (size_t i = static_cast<size_t>(N * D); i < out.size(); ++i) {
    if (!std::isnan(out[i])) fail("write past the end", op, D, N, V, N, static_cast<int64_t>(i));
  }
  if (!std::isnan(logdet[N])) fail("logdet past the end", op, D, N, V, N, -1);
}

template <class T, int V>
void check_residual(int64_t B, int64_t P, int64_t F, int64_t pad) {
  ++cases;
  const int64_t sp = P + pad, sf = F + pad;
  const std::vector<T> x = random_matrix<T>(B, sp, 1.0), gx = random_matrix<T>(B, sp, 1.0);
  const std::vector<T> fx = random_matrix<T>(B, sf, 4.0), fgx = random_matrix<T>(B, sf, 4.0);
  const T w_p = T(0.9), w_f = T(0.1), sentinel = std::numeric_limits<T>::quiet_NaN();
  std::vector<T> ggx(static_cast<size_t>(B * P + 8), sentinel), gfgx(static_cast<size_t>(B * F + 8), sentinel);
  std::vector<T> loss(static_cast<size_t>(B + 1), sentinel);
  const int64_t longer = P > F ? P : F;
  run_grid<T, 2>(
      B, rg::log2_lanes(longer / V),
      [&](int64_t r, int lane, int lanes, T* p) {
        p[0] = ga::residual_lane<V>(x.data() + r * sp, gx.data() + r * sp, ggx.data() + r * P, P / V, -w_p, lane,
                                    lanes);
        p[1] = ga::residual_lane<V>(fx.data() + r * sf, fgx.data() + r * sf, gfgx.data() + r * F, F / V, -w_f, lane,
                                    lanes);
      },
      [&](int64_t r, const T* s) { loss[r] = ga::residual_loss(s[0], s[1], w_p, w_f); });
  for (int64_t r = 0; r < B; ++r) {
    long double sum_p = 0, sum_f = 0;
    for (int64_t j = 0; j < P; ++j) {
      T g;
      sum_p += ga::residual_elem<ga::ScalarMath>(x[r * sp + j], gx[r * sp + j], T(-w_p), g);
      if (!same_bits(ggx[r * P + j], g)) fail("grad_gx", "anogan_residual", P, B, V, r, j);
    }
    for (int64_t j = 0; j < F; ++j) {
      T g;
      sum_f += ga::residual_elem<ga::ScalarMath>(fx[r * sf + j], fgx[r * sf + j], T(-w_f), g);
      if (!same_bits(gfgx[r * F + j], g)) fail("grad_fgx", "anogan_residual", F, B, V, r, j);
    }
    const long double want = w_p * sum_p + w_f * sum_f;
    if (!close(loss[r], want, P + F, want)) fail("loss", "anogan_residual", P + F, B, V, r, -1);
  }
  if (!std::isnan(ggx[B * P]) || !std::isnan(gfgx[B * F]) || !std::isnan(loss[B])) {
    fail("write past the end", "anogan_residual", P + F, B, V, B, -1);
  }
}

// The kernel's thread body after its active / step reads, as csrc/cuda/anogan.cu runs it.
template <class T, int V>
void check_adam(int64_t B, int64_t L, int64_t pad) {
  ++cases;
  const int64_t s = L + pad;
  std::vector<T> z = random_matrix<T>(B, s, 1.0), m = random_matrix<T>(B, s, 0.1), v = random_matrix<T>(B, s, 0.01);
  for (T& e : v) e = e * e;  // second moments are >= 0
  const std::vector<T> g = random_matrix<T>(B, s, 1.0);
  std::vector<int64_t> step(static_cast<size_t>(B));
  std::vector<char> active(static_cast<size_t>(B));
  for (int64_t r = 0; r < B; ++r) step[r] = r % 5, active[r] = (r % 3) != 1;
  const std::vector<T> z0 = z, m0 = m, v0 = v;
  const std::vector<int64_t> step0 = step;
  const double lr = 0.05, beta1 = 0.9, beta2 = 0.999;
  const ga::AdamConsts<T> c = ga::adam_consts<T>(beta1, beta2, 1e-8);
  const int log2 = rg::log2_lanes(L / V);
  // the kernel reads every lane's count before lane 0 writes (__syncwarp): replay the reads first
  std::vector<int64_t> read = step;
  run_grid<T, 1>(
      B, log2,
      [&](int64_t r, int lane, int lanes, T*) {
        if (!active[r]) return;
        const int64_t t = read[r] + 1;
        if (lane == 0) step[r] = t;
        double nss, bc2s;
        ga::adam_row_scalars(t, lr, beta1, beta2, nss, bc2s);
        ga::adam_lane<V>(z.data() + r * s, g.data() + r * s, m.data() + r * s, v.data() + r * s, L / V, c,
                         static_cast<T>(nss), static_cast<T>(bc2s), lane, lanes);
      },
      [](int64_t, const T*) {});
  for (int64_t r = 0; r < B; ++r) {
    if (step[r] != step0[r] + (active[r] ? 1 : 0)) fail("step count", "masked_adam_", L, B, V, r, -1);
    double nss, bc2s;
    ga::adam_row_scalars(step0[r] + 1, lr, beta1, beta2, nss, bc2s);
    for (int64_t j = 0; j < s; ++j) {  // the padding between rows must stay as it was too
      const size_t i = static_cast<size_t>(r * s + j);
      T zw = z0[i], mw = m0[i], vw = v0[i];
      if (active[r] && j < L) {
        ga::adam_elem<ga::ScalarMath>(zw, g[i], mw, vw, c.lerp_coef, c.lerp_small, c.beta2, c.one_minus_beta2, c.eps,
                                      static_cast<T>(nss), static_cast<T>(bc2s));
      }
      if (!same_bits(z[i], zw) || !same_bits(m[i], mw) || !same_bits(v[i], vw)) {
        fail("z, m or v", "masked_adam_", L, B, V, r, j);
      }
    }
  }
}

template <class T, int V>
void check_width(int64_t rows, int64_t n, int64_t pad) {
  for (const T clamp : {T(0), T(2.5)}) {
    check_coupling<T, V, false>(rows, n, pad, clamp);
    check_coupling<T, V, true>(rows, n, pad, clamp);
  }
  check_residual<T, V>(rows, n, n * 2 + (V > 1 ? V : 3), pad);
  check_residual<T, V>(rows, n * 2 + (V > 1 ? V : 1), n, pad);
  check_adam<T, V>(rows, n, pad);
}

template <class T>
void check_type() {
  constexpr int kV = rg::kVectorBytes / sizeof(T);
  const int64_t lengths[] = {0, 1, 2, 3, 4, 5, 7, 8, 12, 16, 31, 32, 33, 64, 65, 100, 128, 129, 256, 1000};
  const int64_t row_counts[] = {1, 7, 8, 9, 31, 33, 100, 257};
  for (const int64_t n : lengths) {
    for (const int64_t rows : row_counts) {
      for (const int64_t pad : {0, 1, 5}) check_width<T, 1>(rows, n, pad);
      if (n % kV == 0) {
        for (const int64_t pad : {int64_t{0}, int64_t{kV}}) check_width<T, kV>(rows, n, pad);
      }
    }
  }
}

void check_alignment_rule() {
  ++cases;
  alignas(16) float buf[16] = {};
  const bool ok = rg::rows_aligned(buf, 8, 4) && !rg::rows_aligned(buf + 1, 8, 4) && !rg::rows_aligned(buf, 6, 4) &&
                  rg::rows_aligned(buf + 1, 7, 1) && rg::rows_aligned(buf, 0, 4);
  if (!ok) fail("rows_aligned", "row_groups", 0, 0, 4, 0, 0);
  // lanes: the smallest power of two covering the vectors, at most a warp; 8 to 256 rows a block
  const int want[] = {0, 0, 1, 2, 2, 3, 3, 3, 3, 4};
  for (int n = 0; n < 10; ++n) {
    if (rg::log2_lanes(n) != want[n]) fail("log2_lanes", "row_groups", n, 0, 1, 0, 0);
  }
  if (rg::log2_lanes(33) != 5 || rg::log2_lanes(int64_t{1} << 40) != 5) {
    fail("log2_lanes", "row_groups", 33, 0, 1, 0, 0);
  }
  // the launch's width rule: every length a multiple of V and every matrix's rows aligned, else 1
  const bool widths = rg::vector_width<float>(4, {8, 12}, {{buf, 8}, {buf + 4, 0}}) == 4 &&
                      rg::vector_width<float>(4, {8, 6}, {{buf, 8}}) == 1 &&
                      rg::vector_width<float>(4, {8}, {{buf, 8}, {buf + 2, 8}}) == 1 &&
                      rg::vector_width<float>(4, {8}, {{buf, 8}, {buf, 10}}) == 1;
  if (!widths) fail("vector_width", "row_groups", 8, 0, 4, 0, 0);
  if (rg::blocks_for(0, 0) != 0 || rg::blocks_for(9, 5) != 2 || rg::blocks_for(257, 0) != 2) {
    fail("blocks_for", "row_groups", 0, 0, 1, 0, 0);
  }
}

}  // namespace

int main() {
  check_alignment_rule();
  check_type<float>();
  check_type<double>();
  if (failures != 0) {
    std::printf("FAILED %d of %ld cases\n", failures, cases);
    return 1;
  }
  std::printf("ok %ld\n", cases);
  return 0;
}
