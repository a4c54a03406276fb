// Products of bfloat16 operands accumulated and returned in float32, on the CPU (csrc/bf16_gemm.cpp): MKL's
// cblas_gemm_bf16bf16f32, which x86-64 builds of torch carry (AMX tiles on Intel Sapphire Rapids and later,
// AVX512-BF16 on AMD Zen 4; emulated elsewhere).
#pragma once

#include <ATen/core/Tensor.h>

// MKL's bfloat16 GEMM (float32 accumulate and output; LP64 ints), exported by libtorch_cpu when torch is built with
// MKL. Declared weak: resolved against the loaded libtorch_cpu when it exports it, null otherwise, so the extension
// loads everywhere. The one declaration of it (linear_act's product calls it too).
extern "C" void cblas_gemm_bf16bf16f32(int layout, int transa, int transb, int m, int n, int k, float alpha,
                                       const void* a, int lda, const void* b, int ldb, float beta, float* c,
                                       int ldc) __attribute__((weak));

namespace genad::bf16_gemm {

// Whether this process has the MKL routine (torch built with MKL: its x86-64 wheels; not aarch64 builds).
bool available();

// a·b (+ c): a [m, k] and b [k, n] bfloat16 CPU tensors with a unit stride in either dimension (a row-major
// matrix or the transpose view of one); c, if defined, float32 [n] (a bias, broadcast over the rows) or [m, n]:
// the result is a new float32 [m, n] tensor, c + a·b, each product of the exact bfloat16 values summed in float32.
at::Tensor mm(const at::Tensor& a, const at::Tensor& b, const at::Tensor& c = at::Tensor());

}  // namespace genad::bf16_gemm
