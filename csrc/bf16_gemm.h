// Products of bfloat16 operands accumulated and returned in float32, on the CPU (csrc/bf16_gemm.cpp): MKL's
// cblas_gemm_bf16bf16f32, which x86-64 builds of torch carry (AMX tiles on Intel Sapphire Rapids and later,
// AVX512-BF16 on AMD Zen 4; emulated elsewhere).
#pragma once

#include <ATen/core/Tensor.h>

namespace genad::bf16_gemm {

// Whether this process has the MKL routine (torch built with MKL: its x86-64 wheels; not aarch64 builds).
bool available();

// a·b (+ c): a [m, k] and b [k, n] bfloat16 CPU tensors with a unit stride in either dimension (a row-major
// matrix or the transpose view of one); c, if defined, float32 [n] (a bias, broadcast over the rows) or [m, n]:
// the result is a new float32 [m, n] tensor, c + a·b, each product of the exact bfloat16 values summed in float32.
at::Tensor mm(const at::Tensor& a, const at::Tensor& b, const at::Tensor& c = at::Tensor());

}  // namespace genad::bf16_gemm
