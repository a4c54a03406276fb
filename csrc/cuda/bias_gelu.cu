// bias_gelu on CUDA: the exact GELU of a product plus its bias and its backward, element-wise (and the pair that keeps
// GELU' from the forward for the backward: bias_gelu_keep, bias_gelu_backward_kept), with the CPU kernel's
// formulas (genad/gelu.h). The bias gradient is ATen's column sum of grad_z, in double (a reduction, which ATen
// does well; the element-wise pass is what the fusion saves). float32 uses genad/gelu.h's erf, float64 erfc.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "genad/cuda_helpers.cuh"
#include "genad/gelu.h"
#include "genad/host/bias_gelu.h"

namespace genad::cuda {
namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 65535;

__device__ __forceinline__ void parts(float u, float& cdf, float& pdf) {
  const GeluParts q = gelu_parts(u);
  cdf = q.cdf;
  pdf = q.pdf;
}

__device__ __forceinline__ void parts(double u, double& cdf, double& pdf) { gelu_exact(u, cdf, pdf); }

// out = GELU(z + b), and where deriv is not null (bias_gelu_keep) GELU'(z + b) by the backward kernel's formula, so
// that a backward from it gives that kernel's bits.
template <class T>
__global__ void bias_gelu_kernel(const T* __restrict__ z, const T* __restrict__ b, T* __restrict__ out,
                                 T* __restrict__ deriv, int64_t M, int64_t N) {
  const int64_t n = M * N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x) {
    const T u = z[i] + b[i % N];
    T cdf, pdf;
    parts(u, cdf, pdf);
    out[i] = u * cdf;
    if (deriv != nullptr) deriv[i] = fma(u, pdf, cdf);
  }
}

template <class T>
__global__ void bias_gelu_backward_kernel(const T* __restrict__ g, const T* __restrict__ z, const T* __restrict__ b,
                                          T* __restrict__ gz, int64_t M, int64_t N) {
  const int64_t n = M * N;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x) {
    const T u = z[i] + b[i % N];
    T cdf, pdf;
    parts(u, cdf, pdf);
    gz[i] = g[i] * fma(u, pdf, cdf);
  }
}

template <class T>
__global__ void scale_kernel(const T* __restrict__ g, const T* __restrict__ deriv, T* __restrict__ gz, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(blockDim.x) * gridDim.x) {
    gz[i] = g[i] * deriv[i];
  }
}

unsigned blocks(int64_t n) { return grid_stride_blocks(static_cast<uint64_t>(n), kThreads, kMaxBlocks); }

// (grad_z, its column sums): the bias gradient summed in double by ATen (zeros where grad_z has no rows).
std::tuple<at::Tensor, at::Tensor> with_bias_grad(const at::Tensor& grad_z) {
  return {grad_z, grad_z.sum(0, /*keepdim=*/false, at::kDouble).to(grad_z.scalar_type())};
}

// bias_gelu's and bias_gelu_keep's launch: out, and deriv where it is defined.
void forward_rows(const at::Tensor& z, const at::Tensor& bias, const host::BiasGeluArgs& a, at::Tensor& out,
                  at::Tensor* deriv) {
  if (out.numel() == 0) return;
  const at::Tensor zc = z.contiguous(), bc = bias.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "bias_gelu_cuda", [&] {
    bias_gelu_kernel<scalar_t><<<blocks(out.numel()), kThreads, 0, stream>>>(
        zc.const_data_ptr<scalar_t>(), bc.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
        deriv != nullptr ? deriv->data_ptr<scalar_t>() : nullptr, a.M, a.N);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

at::Tensor bias_gelu_cuda(const at::Tensor& z, const at::Tensor& bias) {
  const host::BiasGeluArgs a = host::check_bias_gelu("genad_fast::bias_gelu", host::kCUDA, z, bias);
  const c10::cuda::CUDAGuard guard(z.device());
  at::Tensor out = host::empty_rows(z, a);
  forward_rows(z, bias, a, out, nullptr);
  return out;
}

std::tuple<at::Tensor, at::Tensor> bias_gelu_keep_cuda(const at::Tensor& z, const at::Tensor& bias) {
  const host::BiasGeluArgs a = host::check_bias_gelu("genad_fast::bias_gelu_keep", host::kCUDA, z, bias);
  const c10::cuda::CUDAGuard guard(z.device());
  at::Tensor out = host::empty_rows(z, a), deriv = host::empty_rows(z, a);
  forward_rows(z, bias, a, out, &deriv);
  return {out, deriv};
}

std::tuple<at::Tensor, at::Tensor> bias_gelu_backward_cuda(const at::Tensor& grad, const at::Tensor& z,
                                                           const at::Tensor& bias) {
  const host::BiasGeluArgs a = host::check_bias_gelu_backward(host::kCUDA, grad, z, bias);
  const c10::cuda::CUDAGuard guard(z.device());
  at::Tensor grad_z = host::empty_rows(z, a);
  if (grad_z.numel() == 0) return with_bias_grad(grad_z);
  const at::Tensor zc = z.contiguous(), bc = bias.contiguous(), gc = grad.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(z.scalar_type(), "bias_gelu_backward_cuda", [&] {
    bias_gelu_backward_kernel<scalar_t><<<blocks(grad_z.numel()), kThreads, 0, stream>>>(
        gc.const_data_ptr<scalar_t>(), zc.const_data_ptr<scalar_t>(), bc.const_data_ptr<scalar_t>(),
        grad_z.data_ptr<scalar_t>(), a.M, a.N);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return with_bias_grad(grad_z);
}

std::tuple<at::Tensor, at::Tensor> bias_gelu_backward_kept_cuda(const at::Tensor& grad, const at::Tensor& deriv) {
  const host::BiasGeluArgs a = host::check_bias_gelu_backward_kept(host::kCUDA, grad, deriv);
  const c10::cuda::CUDAGuard guard(deriv.device());
  at::Tensor grad_z = host::empty_rows(deriv, a);
  if (grad_z.numel() == 0) return with_bias_grad(grad_z);
  const at::Tensor dc = deriv.contiguous(), gc = grad.contiguous();
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(deriv.scalar_type(), "bias_gelu_backward_kept_cuda", [&] {
    scale_kernel<scalar_t><<<blocks(grad_z.numel()), kThreads, 0, stream>>>(
        gc.const_data_ptr<scalar_t>(), dc.const_data_ptr<scalar_t>(), grad_z.data_ptr<scalar_t>(), grad_z.numel());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return with_bias_grad(grad_z);
}

}  // namespace genad::cuda

TORCH_LIBRARY_IMPL(genad_fast, CUDA, m) {
  m.impl("bias_gelu", &genad::cuda::bias_gelu_cuda);
  m.impl("bias_gelu_backward", &genad::cuda::bias_gelu_backward_cuda);
  m.impl("bias_gelu_keep", &genad::cuda::bias_gelu_keep_cuda);
  m.impl("bias_gelu_backward_kept", &genad::cuda::bias_gelu_backward_kept_cuda);
}
