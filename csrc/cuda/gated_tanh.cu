// gated_tanh on CUDA: the gated activation unit and its backward, one grid-stride element-wise pass each, with the
// CPU kernel's sigmoids (csrc/cpu/gated_tanh.cpp: from e = exp(-|v|), no overflow and no cancellation in 1 - σ).
// bfloat16 is computed in float32; float64 in float64. x is read as [outer, 2, span] (made contiguous).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "genad/cuda_helpers.cuh"
#include "genad/host/gated_tanh.h"

namespace genad::cuda {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 65535;

template <class T>
struct Acc { using type = float; };
template <>
struct Acc<double> { using type = double; };

// σ(v) and σ'(v) = σ(v)(1 - σ(v)) from e = exp(-|v|).
template <class A>
__device__ __forceinline__ void sigmoid(A v, A& value, A& slope) {
  const A e = exp(-fabs(v));
  const A r = A(1) / (A(1) + e);
  value = v >= A(0) ? r : e * r;
  slope = e * r * r;
}

template <class T>
__global__ void gated_forward_kernel(const T* __restrict__ x, T* __restrict__ out, int64_t outer, int64_t span) {
  using A = typename Acc<T>::type;
  const int64_t n = outer * span;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t o = i / span, j = i - o * span;
    const A a = static_cast<A>(x[o * 2 * span + j]), b = static_cast<A>(x[o * 2 * span + span + j]);
    A s, ds, s2, ds2;
    sigmoid(a, s, ds);
    sigmoid(A(2) * b, s2, ds2);
    out[i] = static_cast<T>(s * (A(2) * s2 - A(1)));
  }
}

template <class T>
__global__ void gated_backward_kernel(const T* __restrict__ g, const T* __restrict__ x, T* __restrict__ grad_x,
                                      int64_t outer, int64_t span) {
  using A = typename Acc<T>::type;
  const int64_t n = outer * span;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x) {
    const int64_t o = i / span, j = i - o * span, ia = o * 2 * span + j;
    const A gv = static_cast<A>(g[i]), a = static_cast<A>(x[ia]), b = static_cast<A>(x[ia + span]);
    A s, ds, s2, ds2;
    sigmoid(a, s, ds);
    sigmoid(A(2) * b, s2, ds2);
    grad_x[ia] = static_cast<T>(gv * (A(2) * s2 - A(1)) * ds);
    grad_x[ia + span] = static_cast<T>(gv * s * A(4) * ds2);
  }
}

unsigned blocks(int64_t n) { return grid_stride_blocks(static_cast<uint64_t>(n), kThreads, kMaxBlocks); }

}  // namespace

at::Tensor gated_tanh_cuda(const at::Tensor& x, int64_t dim) {
  const host::GatedArgs a = host::check_gated_tanh("genad_fast::gated_tanh", host::kCUDA, x, dim);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty(a.out_sizes, x.options().memory_format(at::MemoryFormat::Contiguous));
  if (out.numel() == 0) return out;
  const at::Tensor xc = x.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x.scalar_type(), "gated_tanh_cuda", [&] {
    gated_forward_kernel<scalar_t><<<blocks(out.numel()), kThreads, 0, stream>>>(
        xc.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), a.outer, a.span);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

at::Tensor gated_tanh_backward_cuda(const at::Tensor& grad, const at::Tensor& x, int64_t dim) {
  const host::GatedArgs a = host::check_gated_tanh_backward(host::kCUDA, grad, x, dim);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor grad_x = at::empty(x.sizes(), x.options().memory_format(at::MemoryFormat::Contiguous));
  if (grad_x.numel() == 0) return grad_x;
  const at::Tensor xc = x.contiguous(), gc = grad.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND(at::kBFloat16, x.scalar_type(), "gated_tanh_backward_cuda", [&] {
    gated_backward_kernel<scalar_t><<<blocks(gc.numel()), kThreads, 0, stream>>>(
        gc.const_data_ptr<scalar_t>(), xc.const_data_ptr<scalar_t>(), grad_x.data_ptr<scalar_t>(), a.outer, a.span);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return grad_x;
}

}  // namespace genad::cuda

TORCH_LIBRARY_IMPL(genad_fast, CUDA, m) {
  m.impl("gated_tanh", &genad::cuda::gated_tanh_cuda);
  m.impl("gated_tanh_backward", &genad::cuda::gated_tanh_backward_cuda);
}
