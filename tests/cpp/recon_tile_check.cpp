// Runs the CUDA tile kernel's three phases (csrc/include/genad/recon_tile.h) in host loops, block by block and
// thread by thread as csrc/cuda/diffusion.cu's recon_tile_kernel does, and checks them against the one-row-per-
// thread loop (the other CUDA kernel's code) bit for bit: every tile size, C from 1 to the largest that fits,
// masks, sliced and transposed layouts, float and double. Also checks that each term slot of a tile is written
// exactly once and that a block's shared memory stays within the budget. Prints "ok <cases> cases; largest C:
// float <c>, double <c>" or fails with a message. Built and run by tests/test_recon_tile.py.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "genad/recon_tile.h"

namespace rt = genad::recon_tile;

template <class T>
struct Params {  // the fields of host::ReconParams
  T* score;
  int64_t s0, s1;
  const T* x;
  int64_t x0, x1, x2;
  const T* h;
  int64_t h0, h1, h2;
  const T* m;
  int64_t m0, m1, m2;
  int64_t Tn, C;
  T weight;
};

static void fail(const char* what, int64_t a, int64_t b) {
  std::printf("FAIL %s (%lld, %lld)\n", what, static_cast<long long>(a), static_cast<long long>(b));
  std::exit(1);
}

template <class T>
void tiled(const Params<T>& p, int64_t BT) {
  std::vector<unsigned char> shared(static_cast<size_t>(rt::shared_bytes<T>(p.C)));
  if (rt::shared_bytes<T>(p.C) > 48 * 1024) fail("shared bytes over 48 KiB", p.C, rt::shared_bytes<T>(p.C));
  auto* offsets = reinterpret_cast<rt::RowOffsets*>(shared.data());
  T* terms = reinterpret_cast<T*>(shared.data() + rt::kRows * sizeof(rt::RowOffsets));
  const int64_t stride = rt::row_stride(p.C);
  for (int64_t r0 = 0; r0 < BT; r0 += rt::kRows) {  // a block
    const int rows = static_cast<int>(BT - r0 < rt::kRows ? BT - r0 : rt::kRows);
    for (int i = 0; i < rows; ++i) offsets[i] = rt::row_offsets(p, r0 + i);
    for (int64_t k = 0; k < rt::kRows * stride; ++k) terms[k] = std::nan("");  // unwritten slots stay NaN
    const int n = rows * static_cast<int>(p.C);
    std::vector<int> writes(static_cast<size_t>(rt::kRows * stride), 0);
    for (int i = 0; i < rt::kRows; ++i) {  // each thread's grid of f
      for (int f = i; f < n; f += rt::kRows) {
        const int row = f / static_cast<int>(p.C), c = f - row * static_cast<int>(p.C);
        ++writes[static_cast<size_t>(row * stride + c)];
        rt::store_term<T>(p, offsets, f, terms);
      }
    }
    for (int row = 0; row < rows; ++row) {
      for (int64_t c = 0; c < p.C; ++c) {
        if (writes[static_cast<size_t>(row * stride + c)] != 1) fail("term slot not written once", row, c);
      }
    }
    for (int i = 0; i < rows; ++i) rt::add_row<T>(p, offsets, terms, i);
  }
}

template <class T>
void per_row(const Params<T>& p, int64_t BT) {  // csrc/cuda/diffusion.cu's recon_error_kernel, one row at a time
  for (int64_t r = 0; r < BT; ++r) rt::add_row_strided<T>(p, r);
}

template <class T>
int64_t largest_fitting_c() {
  int64_t max_c = 1;
  while (rt::fits<T>(max_c + 1)) ++max_c;
  for (int64_t c = max_c + 1; c < 4 * max_c; ++c) {
    if (rt::fits<T>(c)) fail("fits is not a prefix of C", max_c, c);
  }
  return max_c;
}

template <class T>
int run(std::mt19937_64& rng) {
  std::normal_distribution<double> normal;
  int cases = 0;
  const int64_t max_c = largest_fitting_c<T>();
  const int64_t cs[] = {1, 2, 3, 24, 25, max_c - 1, max_c};
  const int64_t shapes[][2] = {{1, 1}, {1, 127}, {2, 64}, {3, 129}, {5, 203}, {40, 17}};
  for (int64_t C : cs) {
    for (const auto& shape : shapes) {
      const int64_t B = shape[0], Tn = shape[1];
      for (int layout = 0; layout < 3; ++layout) {
        // 0: [B, T, C] contiguous; 1: x's rows apart (sliced from [B, T, C + 3]) and x̂'s samples apart (the first
        // T rows of [B, T + 2, C]); 2: the other way round, so tiles cross sample boundaries with gaps
        const int64_t x_row = layout == 1 ? C + 3 : C, x_sample = (layout == 2 ? Tn + 1 : Tn) * x_row;
        const int64_t h_row = layout == 2 ? C + 3 : C, h_sample = (layout == 1 ? Tn + 2 : Tn) * h_row;
        std::vector<T> x(static_cast<size_t>(B * x_sample)), h(static_cast<size_t>(B * h_sample));
        std::vector<T> m(static_cast<size_t>(B * Tn * C));
        for (auto& v : x) v = static_cast<T>(normal(rng));
        for (auto& v : h) v = static_cast<T>(normal(rng));
        for (auto& v : m) v = static_cast<T>(normal(rng) > 0 ? 1 : 0);
        for (int masked = 0; masked < 2; ++masked) {
          for (int transposed = 0; transposed < 2; ++transposed) {
            std::vector<T> s1(static_cast<size_t>(B * Tn)), s2;
            for (auto& v : s1) v = static_cast<T>(normal(rng));
            s2 = s1;
            Params<T> p{};
            p.s0 = transposed ? 1 : Tn;
            p.s1 = transposed ? B : 1;
            p.x = x.data();
            p.x0 = x_sample; p.x1 = x_row; p.x2 = 1;
            p.h = h.data();
            p.h0 = h_sample; p.h1 = h_row; p.h2 = 1;
            p.m = masked ? m.data() : nullptr;
            p.m0 = masked ? Tn * C : 0; p.m1 = masked ? C : 0; p.m2 = masked ? 1 : 0;
            p.Tn = Tn; p.C = C; p.weight = static_cast<T>(0.37);
            p.score = s1.data();
            tiled(p, B * Tn);
            p.score = s2.data();
            per_row(p, B * Tn);
            for (size_t k = 0; k < s1.size(); ++k) {
              if (!(s1[k] == s2[k])) fail("tiled score differs from the per-row one", C, static_cast<int64_t>(k));
            }
            ++cases;
          }
        }
      }
    }
  }
  return cases;
}

int main() {
  std::mt19937_64 rng(20261206);
  const int cases = run<float>(rng) + run<double>(rng);
  std::printf("ok %d cases; largest C: float %lld, double %lld\n", cases,
              static_cast<long long>(largest_fitting_c<float>()), static_cast<long long>(largest_fitting_c<double>()));
  return 0;
}
