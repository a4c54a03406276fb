// permute_affine on CUDA: the input of a normalizing-flow step with a fixed permutation, from the previous step's
// two halves, and its backward (the formulas in csrc/cpu/permute_affine.cpp). Element-wise kernels: one thread per
// output (forward) or per incoming gradient (backward, a scatter through the permutation: distinct targets).
// The column sums are ATen's, in double (a reduction, which ATen does well), scattered back through the
// permutation. The permutation's range is checked in the kernels (a device-side assert, as ATen's index_select);
// that it has no repeats is the caller's contract on CUDA (the CPU entry point checks it).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "genad/cuda_helpers.cuh"
#include "genad/host/permute_affine.h"

namespace genad::cuda {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 65535;

// out[r, j] (out_a for j < split, out_b after) = (x[r, p_j] + bias[p_j])·e[p_j], x = [x_a, x_b]
template <class T>
__global__ void permute_affine_kernel(const T* __restrict__ xa, int64_t sa, const T* __restrict__ xb, int64_t sb,
                                      const T* __restrict__ bias, const T* __restrict__ e,
                                      const int64_t* __restrict__ perm, T* __restrict__ oa, T* __restrict__ ob,
                                      int64_t N, int64_t Da, int64_t D, int64_t split) {
  const int64_t n = N * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t r = i / D, j = i % D, c = perm[j];
    CUDA_KERNEL_ASSERT(c >= 0 && c < D && "perm out of range");
    const T x = c < Da ? xa[r * sa + c] : xb[r * sb + (c - Da)];
    const T v = (x + bias[c]) * e[c];
    if (j < split) {
      oa[r * split + j] = v;
    } else {
      ob[r * (D - split) + (j - split)] = v;
    }
  }
}

// grad_x[r, p_j] = g[r, j]·e[p_j] (grad_x_a for p_j < Da, grad_x_b after), g = [grad_a, grad_b]
template <class T>
__global__ void permute_affine_backward_kernel(const T* __restrict__ ga, int64_t s_ga, const T* __restrict__ gb,
                                               int64_t s_gb, const T* __restrict__ e,
                                               const int64_t* __restrict__ perm, T* __restrict__ gxa,
                                               T* __restrict__ gxb, int64_t N, int64_t Da, int64_t D,
                                               int64_t split) {
  const int64_t n = N * D;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t r = i / D, j = i % D, c = perm[j];
    CUDA_KERNEL_ASSERT(c >= 0 && c < D && "perm out of range");
    const T g = j < split ? ga[r * s_ga + j] : gb[r * s_gb + (j - split)];
    const T gu = g * e[c];
    if (c < Da) {
      gxa[r * Da + c] = gu;
    } else {
      gxb[r * (D - Da) + (c - Da)] = gu;
    }
  }
}

unsigned blocks(int64_t n) { return grid_stride_blocks(static_cast<uint64_t>(n), kThreads, kMaxBlocks); }

}  // namespace

std::tuple<at::Tensor, at::Tensor> permute_affine_cuda(const at::Tensor& x_a, const at::Tensor& x_b,
                                                       const at::Tensor& bias, const at::Tensor& log_scale,
                                                       const at::Tensor& perm, int64_t split) {
  const host::PermuteAffineArgs a = host::check_permute_affine(host::kCUDA, x_a, x_b, bias, log_scale, perm, split);
  const c10::cuda::CUDAGuard guard(x_a.device());
  const auto opts = x_a.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor out_a = at::empty({a.N, a.split}, opts), out_b = at::empty({a.N, a.D - a.split}, opts);
  if (a.N == 0 || a.D == 0) return {out_a, out_b};
  // ATen's exp: the same scale, bit for bit, as the ActNorm module's torch.exp(log_scale)
  const at::Tensor e = at::exp(log_scale).contiguous(), b = bias.contiguous(), p = perm.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x_a.scalar_type(), "permute_affine_cuda", [&] {
    permute_affine_kernel<scalar_t><<<blocks(a.N * a.D), kThreads, 0, stream>>>(
        x_a.const_data_ptr<scalar_t>(), x_a.stride(0), x_b.const_data_ptr<scalar_t>(), x_b.stride(0),
        b.const_data_ptr<scalar_t>(), e.const_data_ptr<scalar_t>(), p.const_data_ptr<int64_t>(),
        out_a.data_ptr<scalar_t>(), out_b.data_ptr<scalar_t>(), a.N, a.Da, a.D, a.split);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out_a, out_b};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> permute_affine_backward_cuda(
    const at::Tensor& grad_a, const at::Tensor& grad_b, const at::Tensor& v_a, const at::Tensor& v_b,
    const at::Tensor& log_scale, const at::Tensor& perm, int64_t source_split) {
  const host::PermuteAffineArgs a =
      host::check_permute_affine_backward(host::kCUDA, grad_a, grad_b, v_a, v_b, log_scale, perm, source_split);
  const c10::cuda::CUDAGuard guard(v_a.device());
  const auto opts = v_a.options().memory_format(at::MemoryFormat::Contiguous);
  at::Tensor gx_a = at::empty({a.N, a.Da}, opts), gx_b = at::empty({a.N, a.Db}, opts);
  at::Tensor grad_bias = at::zeros({a.D}, log_scale.options()), grad_log_scale = at::zeros({a.D}, log_scale.options());
  if (a.N == 0 || a.D == 0) return {gx_a, gx_b, grad_bias, grad_log_scale};
  const at::Tensor e = at::exp(log_scale).contiguous(), p = perm.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(v_a.scalar_type(), "permute_affine_backward_cuda", [&] {
    permute_affine_backward_kernel<scalar_t><<<blocks(a.N * a.D), kThreads, 0, stream>>>(
        grad_a.const_data_ptr<scalar_t>(), grad_a.stride(0), grad_b.const_data_ptr<scalar_t>(), grad_b.stride(0),
        e.const_data_ptr<scalar_t>(), p.const_data_ptr<int64_t>(), gx_a.data_ptr<scalar_t>(),
        gx_b.data_ptr<scalar_t>(), a.N, a.Da, a.D, a.split);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  // column sums in permuted order (g = [grad_a, grad_b], v = [v_a, v_b]), in double, then to the unpermuted columns
  const at::Tensor g = at::cat({grad_a, grad_b}, 1), v = at::cat({v_a, v_b}, 1);
  const at::Tensor e_perm = e.index_select(0, p).to(at::kDouble);
  grad_bias.index_copy_(0, p, (g.sum(0, /*keepdim=*/false, at::kDouble) * e_perm).to(log_scale.scalar_type()));
  grad_log_scale.index_copy_(0, p, (g * v).sum(0, /*keepdim=*/false, at::kDouble).to(log_scale.scalar_type()));
  return {gx_a, gx_b, grad_bias, grad_log_scale};
}

}  // namespace genad::cuda

TORCH_LIBRARY_IMPL(genad_fast, CUDA, m) {
  m.impl("permute_affine", &genad::cuda::permute_affine_cuda);
  m.impl("permute_affine_backward", &genad::cuda::permute_affine_backward_cuda);
}
