// MKL's bfloat16 GEMM with a float32 result, found in torch's own library at load time (csrc/bf16_gemm.h).
//
// Why MKL's and not ATen's: a bfloat16 at::mm returns bfloat16, so its result must be cast back, and each product
// output rounded to 8 bits; ATen's float32 products with bfloat16 operands (torch.backends.mkldnn's "bf16"
// precision) are a process-wide switch. cblas_gemm_bf16bf16f32 takes bfloat16 operands and writes float32, per
// call; torch's x86-64 builds link MKL statically and export it (docs/training_speed.md, ninth pass).
#include "bf16_gemm.h"

#include <ATen/ops/empty.h>
#include <c10/util/Exception.h>

#include <limits>

namespace genad::bf16_gemm {
namespace {

constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;  // CBLAS_LAYOUT / CBLAS_TRANSPOSE

// (transpose flag, leading dimension) of a row-major view of a matrix with a unit stride in one dimension.
std::pair<int, int> layout_of(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 2, "bf16_gemm: ", name, " must be 2-D, got ", t.sizes());
  const int64_t limit = std::numeric_limits<int>::max();
  TORCH_CHECK(t.size(0) <= limit && t.size(1) <= limit, "bf16_gemm: ", name, " is too large for MKL's 32-bit sizes");
  if (t.stride(1) == 1 && t.stride(0) >= std::max<int64_t>(1, t.size(1))) {
    return {kNoTrans, static_cast<int>(t.stride(0))};
  }
  if (t.stride(0) == 1 && t.stride(1) >= std::max<int64_t>(1, t.size(0))) {
    return {kTrans, static_cast<int>(t.stride(1))};
  }
  TORCH_CHECK(false, "bf16_gemm: ", name, " needs a unit stride in one dimension, got strides ", t.strides());
}

}  // namespace

bool available() { return cblas_gemm_bf16bf16f32 != nullptr; }

at::Tensor mm(const at::Tensor& a, const at::Tensor& b, const at::Tensor& c) {
  TORCH_CHECK(available(), "bfloat16 products with float32 results need MKL's cblas_gemm_bf16bf16f32, which this "
              "torch build does not export (x86-64 wheels do): train with train_dtype='float32'");
  TORCH_CHECK(a.device().is_cpu() && b.device().is_cpu(), "bf16_gemm: CPU tensors only, got ", a.device(), " and ",
              b.device());
  TORCH_CHECK(a.scalar_type() == at::kBFloat16 && b.scalar_type() == at::kBFloat16,
              "bf16_gemm: bfloat16 operands, got ", a.scalar_type(), " and ", b.scalar_type());
  TORCH_CHECK(a.dim() == 2 && b.dim() == 2 && a.size(1) == b.size(0), "bf16_gemm: shapes ", a.sizes(), " and ",
              b.sizes(), " do not multiply");
  const auto [trans_a, ld_a] = layout_of(a, "a");
  const auto [trans_b, ld_b] = layout_of(b, "b");
  const int64_t m = a.size(0), n = b.size(1), k = a.size(1);
  at::Tensor out;
  float beta = 0.0f;
  if (c.defined()) {
    TORCH_CHECK(c.scalar_type() == at::kFloat && (c.dim() == 1 ? c.size(0) == n : c.sizes() == at::IntArrayRef{m, n}),
                "bf16_gemm: c must be float32 [", n, "] or [", m, ", ", n, "], got ", c.scalar_type(), " ", c.sizes());
    out = c.expand({m, n}).contiguous();
    if (out.data_ptr() == c.data_ptr()) out = out.clone();  // c itself was [m, n] contiguous: never write into it
    beta = 1.0f;
  } else {
    out = at::empty({m, n}, a.options().dtype(at::kFloat));
  }
  if (m == 0 || n == 0) return out;
  if (k == 0) return c.defined() ? out : out.zero_();
  cblas_gemm_bf16bf16f32(kRowMajor, trans_a, trans_b, static_cast<int>(m), static_cast<int>(n), static_cast<int>(k),
                         1.0f, a.const_data_ptr(), ld_a, b.const_data_ptr(), ld_b, beta,
                         out.mutable_data_ptr<float>(), static_cast<int>(n));
  return out;
}

}  // namespace genad::bf16_gemm
