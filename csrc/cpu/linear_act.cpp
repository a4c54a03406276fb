// linear_act on the CPU: out = act(gate'(x)·Wᵀ + bias + addend), one call per layer of a small MLP.
//
// Why a kernel of our own around a BLAS call: in AnoGAN's latent search every product is small
// ([1024, 32..128] x [128, 128]) and runs a hundred times, so what surrounds the product decides the
// time. oneDNN's linear (what torch runs for bfloat16) costs ~30 us per call before any arithmetic
// (a primitive-cache lookup per call); MKL's cblas_gemm_bf16bf16f32 (AMX on Sapphire Rapids, exported
// by libtorch_cpu) ~5 us; float32 products go through at::mm (MKL's sgemm). And the dtype casts, the
// LeakyReLU backward on the input and the bias/activation/residual on the output are separate ATen
// passes over the activations; here they are done on each thread's rows while they are in cache: the
// input prologue converts (and gates) one row block into the product dtype, the BLAS call writes a
// float32 tile, the epilogue adds, activates and stores in out_dtype.
//
// Rows are split into one block per thread (at::parallel_for); each block calls a single-threaded
// BLAS product (MKL does not nest inside a parallel region; at::mm inside one runs on its thread).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <optional>
#include <vector>

#include <genad/host/linear_act.h>

#include "../bf16_gemm.h"  // cblas_gemm_bf16bf16f32, weak (linear_act_use_mkl_bf16() says whether to call it)
#include "kernels.h"

namespace genad::cpu {
namespace CPU_CAPABILITY {
namespace {

using Vec = at::vec::Vectorized<float>;
constexpr int64_t kMaxTileRows = 512;   // a block's float32 product tile: 512 x N, in L2 for N <= 256
constexpr int64_t kMinBlockRows = 64;   // fewer rows per thread than this: not worth a thread

// Row i of a [*, n] float32 or bfloat16 array as float32 in `dst` (a copy only for bfloat16).
const float* row_as_float(const at::Tensor& t, int64_t i, int64_t n, float* dst) {
  if (t.scalar_type() == at::kFloat) return t.data_ptr<float>() + i * t.stride(0);
  at::vec::convert(t.data_ptr<at::BFloat16>() + i * t.stride(0), dst, n);
  return dst;
}

// Whether MKL's LP64 cblas_gemm_bf16bf16f32 takes these arguments (row major, A not transposed, B = W
// transposed): int sizes, and leading dimensions no smaller than a row, lda >= max(1, k), ldb = k >= max(1, k),
// ldc = n >= max(1, n). MKL rejects anything else with a printed message and returns without writing C, so
// a call it rejects must never be made: the tile would keep whatever it held before.
bool mkl_gemm_args_ok(int64_t rows, int64_t n, int64_t k, int64_t lda) {
  constexpr int64_t kIntMax = std::numeric_limits<int>::max();
  return rows >= 0 && rows <= kIntMax && n >= 1 && n <= kIntMax && k >= 1 && k <= kIntMax && lda >= k &&
         lda <= kIntMax;
}

// C[rows, n] (float32, ld n) = A[rows, k] · W[n, k]ᵀ, A of the product dtype (W's) with rows at lda >= k
// (they never overlap: the caller converts overlapping rows into a buffer of its own). `weight_f32` is W as
// float32 (W itself when it is float32): the product through ATen when MKL's bfloat16 GEMM is not used
// (bfloat16 values are exact in float32, so float32 sums of their products are the same formula), and for
// sizes beyond MKL's int interface.
void product(at::ScalarType dtype, int64_t rows, int64_t n, int64_t k, const void* a, int64_t lda,
             const at::Tensor& weight, const at::Tensor& weight_f32, float* c) {
  TORCH_INTERNAL_ASSERT(k >= 1 && lda >= k, "linear_act: product rows must not overlap, got lda ", lda, " < k ", k);
  if (dtype == at::kBFloat16 && linear_act_use_mkl_bf16() && mkl_gemm_args_ok(rows, n, k, lda)) {
    // row major (101), A not transposed (111), W transposed (112)
    cblas_gemm_bf16bf16f32(101, 111, 112, static_cast<int>(rows), static_cast<int>(n), static_cast<int>(k), 1.0f,
                           a, static_cast<int>(lda), weight.data_ptr(), static_cast<int>(k), 0.0f, c,
                           static_cast<int>(n));
    return;
  }
  at::Tensor a_t = at::from_blob(const_cast<void*>(a), {rows, k}, {lda, 1}, weight.options());
  at::Tensor c_t = at::from_blob(c, {rows, n}, weight_f32.options());
  at::mm_out(c_t, dtype == at::kFloat ? a_t : a_t.to(at::kFloat), weight_f32.t());
}

template <class T>
void grow(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
}

at::Tensor linear_act_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                          const std::optional<at::Tensor>& gate, double gate_slope,
                          const std::optional<at::Tensor>& addend, std::optional<double> slope,
                          std::optional<at::ScalarType> out_dtype) {
  const host::LinearActArgs args = host::check_linear_act(host::kCPU, x, weight, bias, gate, addend, out_dtype);
  const int64_t M = args.M, K = args.K, N = args.N;
  const at::ScalarType pdtype = weight.scalar_type();
  const at::ScalarType odtype = args.out_dtype;
  at::Tensor out = at::empty({M, N}, x.options().dtype(odtype));
  if (M == 0 || N == 0) return out;

  std::vector<float> bias_f(N, 0.0f);
  if (bias) {
    at::Tensor b = bias->contiguous();
    if (b.scalar_type() == at::kFloat) std::copy(b.data_ptr<float>(), b.data_ptr<float>() + N, bias_f.begin());
    else at::vec::convert(b.data_ptr<at::BFloat16>(), bias_f.data(), N);
  }
  // x is the product's A operand as it is when it already has the product dtype, no gate, and rows that do not
  // overlap (a row stride of at least K; one row has no stride that matters). A broadcast or overlapping x
  // (row stride < K) goes through the prologue's buffer like a converted one: BLAS takes no lda < K.
  const bool rows_apart = M <= 1 || x.stride(0) >= K;
  const bool direct = !gate && x.scalar_type() == pdtype && rows_apart;
  const bool has_act = slope.has_value();
  const float act_slope = static_cast<float>(slope.value_or(0.0));
  const float gslope = static_cast<float>(gate_slope);
  const size_t psize = pdtype == at::kFloat ? 4 : 2;
  const at::Tensor weight_f32 = pdtype == at::kFloat || linear_act_use_mkl_bf16() ? weight : weight.to(at::kFloat);
  const int64_t threads = at::get_num_threads();
  const int64_t blocks = std::max<int64_t>(1, std::min<int64_t>(threads, M / kMinBlockRows));

  float* const out_f32 = odtype == at::kFloat ? out.data_ptr<float>() : nullptr;
  at::BFloat16* const out_bf16 = odtype == at::kBFloat16 ? out.data_ptr<at::BFloat16>() : nullptr;
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    // per-thread scratch kept between calls: fresh vectors of this size would be mmap'ed and page-faulted
    // on every call (glibc serves allocations over 128 KiB that way), which cost more than the product
    thread_local std::vector<float> c, row_k, row_g, row_n;
    thread_local std::vector<char> a_buf;
    if (odtype == at::kBFloat16) grow(c, kMaxTileRows * N);
    grow(row_k, std::max<int64_t>(K, 1));
    grow(row_g, std::max<int64_t>(K, 1));
    grow(row_n, N);
    if (!direct) grow(a_buf, kMaxTileRows * K * static_cast<int64_t>(psize));
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t r_begin = M * blk / blocks, r_end = M * (blk + 1) / blocks;
      for (int64_t r0 = r_begin; r0 < r_end; r0 += kMaxTileRows) {
        const int64_t rows = std::min(kMaxTileRows, r_end - r0);
        // ---- prologue: A = x (rows r0..), gated and cast to the product dtype if needed
        const void* a;
        int64_t lda;
        if (direct) {
          a = static_cast<const char*>(x.data_ptr()) + r0 * x.stride(0) * psize;
          lda = M <= 1 ? K : x.stride(0);
        } else {
          for (int64_t i = 0; i < rows; ++i) {
            const float* xr = row_as_float(x, r0 + i, K, row_k.data());
            float* ar = row_k.data();
            if (gate) {  // LeakyReLU backward: x · (gate > 0 ? 1 : slope), gate = the layer's output
              const float* gr = row_as_float(*gate, r0 + i, K, row_g.data());
              const Vec one(1.0f), gs(gslope), zero(0.0f);
              int64_t j = 0;
              for (; j + Vec::size() <= K; j += Vec::size()) {
                const Vec g = Vec::loadu(gr + j);
                (Vec::loadu(xr + j) * Vec::blendv(gs, one, g > zero)).store(ar + j);
              }
              for (; j < K; ++j) ar[j] = xr[j] * (gr[j] > 0.0f ? 1.0f : gslope);
              xr = ar;
            }
            if (pdtype == at::kFloat) {
              std::copy(xr, xr + K, reinterpret_cast<float*>(a_buf.data()) + i * K);
            } else {
              at::vec::convert(xr, reinterpret_cast<at::BFloat16*>(a_buf.data()) + i * K, K);
            }
          }
          a = a_buf.data();
          lda = K;
        }
        // ---- the product, float32 accumulation into the tile
        // float32 output: the product lands in `out` itself and the epilogue runs in place there
        float* tile = odtype == at::kFloat ? out_f32 + r0 * N : c.data();
        if (K > 0) product(pdtype, rows, N, K, a, lda, weight, weight_f32, tile);
        else std::fill(tile, tile + rows * N, 0.0f);
        // ---- epilogue: + bias + addend, LeakyReLU, store in out_dtype
        for (int64_t i = 0; i < rows; ++i) {
          float* cr = tile + i * N;
          const float* ad = addend ? row_as_float(*addend, r0 + i, N, row_n.data()) : nullptr;
          const Vec sl(act_slope), zero(0.0f);
          int64_t j = 0;
          for (; j + Vec::size() <= N; j += Vec::size()) {
            Vec v = Vec::loadu(cr + j) + Vec::loadu(bias_f.data() + j);
            if (ad) v = v + Vec::loadu(ad + j);
            if (has_act) v = Vec::blendv(v * sl, v, v > zero);
            v.store(cr + j);
          }
          for (; j < N; ++j) {
            float v = cr[j] + bias_f[j] + (ad ? ad[j] : 0.0f);
            cr[j] = has_act && !(v > 0.0f) ? v * act_slope : v;
          }
          if (odtype == at::kBFloat16) at::vec::convert(cr, out_bf16 + (r0 + i) * N, N);
        }
      }
    }
  });
  return out;
}

}  // namespace

GENAD_REGISTER_KERNEL(linear_act_stub, &linear_act_cpu);

}  // namespace CPU_CAPABILITY
}  // namespace genad::cpu
