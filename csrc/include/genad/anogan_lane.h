// One lane's share of a row of AnoGAN's latent search ops, for the CUDA kernels that give each row a group of
// lanes (csrc/cuda/anogan.cu; the grouping is genad/row_groups.h). The host check (tests/cpp/row_groups_check.cpp)
// runs the same functions lane by lane.
//
// Lane l of G takes the row's V-element vectors l, l + G, l + 2G, ...; the per-element math is genad/anogan.h.
#pragma once

#include <stdint.h>

#include "genad/anogan.h"
#include "genad/macros.h"
#include "genad/row_groups.h"

namespace genad {
namespace anogan {

// This lane's Σ|a − b| over one row of `vectors` V-element vectors, writing neg_w·sign(a − b) to grad.
template <int V, class T>
GENAD_HD T residual_lane(const T* a, const T* b, T* grad, int64_t vectors, T neg_w, int lane, int lanes) {
  namespace rg = genad::row_groups;
  T acc = T(0);
  for (int64_t j = lane; j < vectors; j += lanes) {
    const rg::Pack<T, V> av = rg::load<V>(a + j * V), bv = rg::load<V>(b + j * V);
    rg::Pack<T, V> g;
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (int e = 0; e < V; ++e) acc += residual_elem<ScalarMath>(av.v[e], bv.v[e], neg_w, g.v[e]);
    rg::store<V>(grad + j * V, g);
  }
  return acc;
}

// This lane's share of one row's Adam update in place (z, m, v; g read), with the row's scalars of step t
// (adam_row_scalars) already rounded to T.
template <int V, class T>
GENAD_HD void adam_lane(T* z, const T* g, T* m, T* v, int64_t vectors, const AdamConsts<T>& c, T neg_step_size,
                        T bc2_sqrt, int lane, int lanes) {
  namespace rg = genad::row_groups;
  for (int64_t j = lane; j < vectors; j += lanes) {
    rg::Pack<T, V> zv = rg::load<V>(z + j * V), mv = rg::load<V>(m + j * V), vv = rg::load<V>(v + j * V);
    const rg::Pack<T, V> gv = rg::load<V>(g + j * V);
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (int e = 0; e < V; ++e) {
      adam_elem<ScalarMath>(zv.v[e], gv.v[e], mv.v[e], vv.v[e], c.lerp_coef, c.lerp_small, c.beta2,
                            c.one_minus_beta2, c.eps, neg_step_size, bc2_sqrt);
    }
    rg::store<V>(z + j * V, zv);
    rg::store<V>(m + j * V, mv);
    rg::store<V>(v + j * V, vv);
  }
}

}  // namespace anogan
}  // namespace genad
