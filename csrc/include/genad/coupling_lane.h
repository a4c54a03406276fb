// One lane's share of a row of the fused affine coupling, for the CUDA kernel that gives each row a group of
// lanes (csrc/cuda/coupling.cu; the grouping is genad/row_groups.h). The host check (tests/cpp/row_groups_check.cpp)
// runs the same function lane by lane.
//
// Lane l of G takes the row's V-element vectors l, l + G, l + 2G, ...: for each element, s = soft_clamp(s_raw),
// out = x·e^s + t (forward) or (y − t)·e^{−s} (inverse), per genad/coupling.h, and it returns its Σ s, which the
// group then sums into the row's logdet (+Σ s forward, −Σ s inverse).
#pragma once

#include <stdint.h>

#include "genad/coupling.h"
#include "genad/macros.h"
#include "genad/row_groups.h"

namespace genad {
namespace coupling {

// a: the row of x (forward) or y (inverse); s_raw, t: the row's two halves of h; out: the row of the result.
// `vectors` = D / V; every pointer is aligned for V-element loads (row_groups::rows_aligned).
template <bool kInverse, int V, class T>
GENAD_HD T coupling_lane(const T* a, const T* s_raw, const T* t, T* out, int64_t vectors, int lane, int lanes,
                         T clamp) {
  namespace rg = genad::row_groups;
  T acc = T(0);
  for (int64_t j = lane; j < vectors; j += lanes) {
    const rg::Pack<T, V> av = rg::load<V>(a + j * V), sv = rg::load<V>(s_raw + j * V), tv = rg::load<V>(t + j * V);
    rg::Pack<T, V> o;
#ifdef __CUDA_ARCH__
#pragma unroll
#endif
    for (int e = 0; e < V; ++e) {
      const T s = soft_clamp<ScalarMath>(sv.v[e], clamp);
      o.v[e] = kInverse ? inverse_elem<ScalarMath>(av.v[e], s, tv.v[e]) : forward_elem<ScalarMath>(av.v[e], s, tv.v[e]);
      acc += s;
    }
    rg::store<V>(out + j * V, o);
  }
  return acc;
}

}  // namespace coupling
}  // namespace genad
