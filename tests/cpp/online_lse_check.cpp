// Host check of genad/distance.h's OnlineLse with the exponentials in float (OnlineLse<double, float>, what the
// CUDA KDE kernel folds float32 terms with) against the all-double one: log Σ exp(x) over random sequences of
// terms (a spread of 0.01 to 400 nats, pushed in random order, split in parts merged as the kernel's threads
// merge), then the special cases (NaN, −inf, no term, a first −inf). Prints "ok <sequences> <max error>".
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include <genad/distance.h>

namespace gd = genad::distance;

int main() {
  std::mt19937_64 rng(7);
  double worst = 0.0;
  int sequences = 0;
  for (double spread : {0.01, 1.0, 30.0, 400.0}) {
    for (int n : {1, 2, 17, 1000, 20000}) {
      for (int rep = 0; rep < 5; ++rep) {
        std::uniform_real_distribution<double> u(-spread, 0.0);
        const double shift = -std::uniform_real_distribution<double>(0.0, 1e4)(rng);
        const int parts = 1 + static_cast<int>(rng() % 16);
        std::vector<gd::OnlineLse<double, float>> f(parts);
        std::vector<gd::OnlineLse<double, double>> d(parts);
        for (int i = 0; i < n; ++i) {
          const double x = shift + u(rng);
          f[i % parts].push(x);
          d[i % parts].push(x);
        }
        for (int p = 1; p < parts; ++p) {
          f[0].merge(f[p].m, f[p].s, f[p].nan);
          d[0].merge(d[p].m, d[p].s, d[p].nan);
        }
        const double err = std::fabs(f[0].result() - d[0].result());
        worst = std::max(worst, err);
        if (!(err <= 1e-6)) {
          std::printf("FAIL spread %g n %d: %.17g vs %.17g\n", spread, n, f[0].result(), d[0].result());
          return 1;
        }
        ++sequences;
      }
    }
  }
  const double inf = INFINITY;
  auto lse = [](std::vector<double> xs) {
    gd::OnlineLse<double, float> s;
    for (double x : xs) s.push(x);
    return s.result();
  };
  const bool special = std::isnan(lse({-1.0, NAN, -2.0})) && lse({}) == -inf && lse({-inf, -inf}) == -inf &&
                       std::fabs(lse({-inf, -3.0}) + 3.0) < 1e-12 && std::fabs(lse({-5.0, -inf}) + 5.0) < 1e-12 &&
                       std::fabs(lse({0.0, 0.0}) - std::log(2.0)) < 1e-7;
  if (!special) {
    std::printf("FAIL special cases\n");
    return 1;
  }
  std::printf("ok %d %.3g\n", sequences, worst);
  return 0;
}
