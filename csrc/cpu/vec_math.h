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

// 1/x to about 1 ulp: the hardware estimate (14 bits on AVX-512, 12 on AVX2) and one Newton step r(2 - x·r), in a
// few cycles where a vector division takes ten or more (a sigmoid or an erf is bound by it otherwise). x > 0 finite
// in our uses (1 + e with e >= 0); other capabilities and double divide.
inline Vectorized<float> reciprocal(const Vectorized<float>& x) {
#if defined(CPU_CAPABILITY_AVX512)
  const __m512 r = _mm512_rcp14_ps(x);
  return _mm512_mul_ps(r, _mm512_fnmadd_ps(x, r, _mm512_set1_ps(2.0f)));
#elif defined(CPU_CAPABILITY_AVX2)
  const __m256 r = _mm256_rcp_ps(x);
  return _mm256_mul_ps(r, _mm256_fnmadd_ps(x, r, _mm256_set1_ps(2.0f)));
#else
  return Vectorized<float>(1.0f) / x;
#endif
}

inline Vectorized<double> reciprocal(const Vectorized<double>& x) { return Vectorized<double>(1.0) / x; }

}  // namespace vec_math
}  // namespace CPU_CAPABILITY
}  // namespace genad::cpu
