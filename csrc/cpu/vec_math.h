// Element-wise math on at::vec vectors shared by the activation kernels (gated_tanh.cpp, bias_gelu.cpp), compiled
// once per CPU capability (genad/cpu_dispatch.h) like the kernels that include it.
#pragma once

#include <ATen/cpu/vec/vec.h>

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

namespace genad::cpu {
namespace CPU_CAPABILITY {
namespace vec_math {

using at::vec::Vectorized;

// 1/x for finite x >= 1 (our uses: 1 + e with e >= 0): the hardware estimate and Newton steps in the correction form
// r + r·(1 - x·r), whose residual 1 - x·r an FMA forms exactly (the form r·(2 - x·r) rounds 2 - x·r to 1 once r is
// within an ulp, and leaves 1/1 at 1 - 2^-24). A few cycles where a vector division takes ten or more (a sigmoid or
// an erf is bound by it otherwise). AVX-512's estimate has 14 bits, so one step reaches float32's 24; AVX2's has 12
// and takes two. Infinite x would give NaN (inf·0): callers keep x finite. Other capabilities and double divide.
inline Vectorized<float> reciprocal(const Vectorized<float>& x) {
#if defined(CPU_CAPABILITY_AVX512)
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 r = _mm512_rcp14_ps(x);
  return _mm512_fmadd_ps(r, _mm512_fnmadd_ps(x, r, one), r);
#elif defined(CPU_CAPABILITY_AVX2)
  const __m256 one = _mm256_set1_ps(1.0f);
  __m256 r = _mm256_rcp_ps(x);
  r = _mm256_fmadd_ps(r, _mm256_fnmadd_ps(x, r, one), r);
  return _mm256_fmadd_ps(r, _mm256_fnmadd_ps(x, r, one), r);
#else
  return Vectorized<float>(1.0f) / x;
#endif
}

inline Vectorized<double> reciprocal(const Vectorized<double>& x) { return Vectorized<double>(1.0) / x; }

}  // namespace vec_math
}  // namespace CPU_CAPABILITY
}  // namespace genad::cpu
