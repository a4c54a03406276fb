// CUDA kernels of the fused affine coupling (genad_fast::coupling_forward / _inverse / _backward).
//
// Forward and inverse: each row gets a group of G lanes (the smallest power of two covering its D / V vectors, at
// most a warp) and each lane loads V elements at once, 16 bytes, where every row start is aligned (else V = 1);
// the row's logdet is a butterfly of shuffles within the group (genad/row_groups.h says why: bytes in flight).
// Rows may have any stride, so column slices are read in place. The backward keeps one warp per row.
// Per-element math is genad/coupling.h, the same code the CPU kernel's scalar tail runs.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <tuple>

#include "genad/coupling.h"
#include "genad/coupling_lane.h"
#include "genad/cuda_helpers.cuh"
#include "genad/host/coupling.h"
#include "genad/row_groups.h"

namespace genad {
namespace cuda {
namespace {

namespace gc = genad::coupling;
namespace rg = genad::row_groups;

constexpr int kWarpsPerBlock = 8;

template <typename scalar_t, bool kInverse, int V>
__global__ void coupling_kernel(const scalar_t* __restrict__ a, int64_t stride_a,  // [N, D] x or y
                                const scalar_t* __restrict__ h, int64_t stride_h,  // [N, 2D] (s_raw | t)
                                scalar_t* __restrict__ out,                        // [N, D] contiguous
                                scalar_t* __restrict__ logdet,                     // [N]
                                int64_t N, int64_t D, scalar_t clamp, int log2_lanes) {
  const rg::RowLane at = rg::row_lane(blockIdx.x, threadIdx.x, log2_lanes);
  scalar_t acc = 0;
  if (at.row < N) {
    const scalar_t* sr = h + at.row * stride_h;
    acc = gc::coupling_lane<kInverse, V>(a + at.row * stride_a, sr, sr + D, out + at.row * D, D / V, at.lane,
                                         1 << log2_lanes, clamp);
  }
  // every lane of the warp takes part (rows past N add 0): a group never straddles a warp
  acc = group_sum(acc, log2_lanes);
  if (at.row < N && at.lane == 0) logdet[at.row] = kInverse ? -acc : acc;
}

template <typename scalar_t, bool kInverse>
__global__ void coupling_backward_kernel(const scalar_t* __restrict__ g, int64_t stride_g,    // [N, D]
                                         int64_t col_stride_g,  // 1, or 0 for a gradient broadcast along rows
                                         const scalar_t* __restrict__ gl, int64_t stride_gl,  // [N], any stride
                                         const scalar_t* __restrict__ a, int64_t stride_a,    // [N, D]
                                         const scalar_t* __restrict__ h, int64_t stride_h,    // [N, 2D]
                                         scalar_t* __restrict__ grad_a,                       // [N, D]
                                         scalar_t* __restrict__ grad_h,                       // [N, 2D]
                                         int64_t N, int64_t D, scalar_t clamp) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  const int lane = threadIdx.x % kWarp;
  if (row >= N) return;
  const scalar_t glr = gl[row * stride_gl];
  const scalar_t* gr = g + row * stride_g;
  const scalar_t* ar = a + row * stride_a;
  const scalar_t* sr = h + row * stride_h;
  for (int64_t j = lane; j < D; j += kWarp) {
    scalar_t gi, gs, gt;
    if (kInverse) {
      gc::inverse_backward_elem<gc::ScalarMath>(gr[j * col_stride_g], glr, ar[j], sr[j], sr[D + j], clamp, gi, gs, gt);
    } else {
      gc::forward_backward_elem<gc::ScalarMath>(gr[j * col_stride_g], glr, ar[j], sr[j], clamp, gi, gs, gt);
    }
    grad_a[row * D + j] = gi;
    grad_h[row * 2 * D + j] = gs;
    grad_h[row * 2 * D + D + j] = gt;
  }
}

unsigned blocks_for(int64_t N) { return warp_row_blocks(N, kWarpsPerBlock); }

std::tuple<at::Tensor, at::Tensor> coupling_cuda(const at::Tensor& a, const at::Tensor& h, double clamp,
                                                 bool inverse) {
  const host::CouplingArgs args = host::check_coupling(host::kCUDA, inverse, a, h, clamp);
  const int64_t N = args.N, D = args.D;
  at::Tensor out = at::empty({N, D}, a.options());
  at::Tensor logdet = at::empty({N}, a.options());
  if (N == 0) return {out, logdet};
  const c10::cuda::CUDAGuard guard(a.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "genad_fast_coupling_cuda", [&] {
    constexpr int kV = rg::kVectorBytes / sizeof(scalar_t);
    const scalar_t* ap = a.const_data_ptr<scalar_t>();
    const scalar_t* hp = h.const_data_ptr<scalar_t>();
    scalar_t* op = out.mutable_data_ptr<scalar_t>();
    const bool wide = rg::vector_width<scalar_t>(kV, {D}, {{ap, a.stride(0)}, {hp, h.stride(0)}, {op, D}}) > 1;
    const int log2 = rg::log2_lanes(wide ? D / kV : D);
    auto launch = [&](auto kernel) {
      kernel<<<static_cast<unsigned>(rg::blocks_for(N, log2)), rg::kThreads, 0, stream>>>(
          ap, a.stride(0), hp, h.stride(0), op, logdet.mutable_data_ptr<scalar_t>(), N, D,
          static_cast<scalar_t>(clamp), log2);
    };
    if (wide) {
      inverse ? launch(coupling_kernel<scalar_t, true, kV>) : launch(coupling_kernel<scalar_t, false, kV>);
    } else {
      inverse ? launch(coupling_kernel<scalar_t, true, 1>) : launch(coupling_kernel<scalar_t, false, 1>);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {out, logdet};
}

std::tuple<at::Tensor, at::Tensor> coupling_forward_cuda(const at::Tensor& x, const at::Tensor& h, double clamp) {
  return coupling_cuda(x, h, clamp, false);
}

std::tuple<at::Tensor, at::Tensor> coupling_inverse_cuda(const at::Tensor& y, const at::Tensor& h, double clamp) {
  return coupling_cuda(y, h, clamp, true);
}

std::tuple<at::Tensor, at::Tensor> coupling_backward_cuda(const at::Tensor& grad_out, const at::Tensor& grad_logdet,
                                                          const at::Tensor& inp, const at::Tensor& h, double clamp,
                                                          bool inverse) {
  const host::CouplingArgs args = host::check_coupling_backward(host::kCUDA, grad_out, grad_logdet, inp, h, clamp);
  const int64_t N = args.N, D = args.D;
  at::Tensor grad_inp = at::empty({N, D}, inp.options());
  at::Tensor grad_h = at::empty({N, 2 * D}, inp.options());
  if (N == 0) return {grad_inp, grad_h};
  const int64_t col_stride_g = D > 1 ? grad_out.stride(1) : 1;
  const c10::cuda::CUDAGuard guard(inp.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(inp.scalar_type(), "genad_fast_coupling_backward_cuda", [&] {
    auto launch = [&](auto kernel) {
      kernel<<<blocks_for(N), kWarp * kWarpsPerBlock, 0, stream>>>(
          grad_out.const_data_ptr<scalar_t>(), grad_out.stride(0), col_stride_g, grad_logdet.const_data_ptr<scalar_t>(),
          grad_logdet.stride(0),
          inp.const_data_ptr<scalar_t>(), inp.stride(0), h.const_data_ptr<scalar_t>(), h.stride(0),
          grad_inp.mutable_data_ptr<scalar_t>(), grad_h.mutable_data_ptr<scalar_t>(), N, D,
          static_cast<scalar_t>(clamp));
    };
    inverse ? launch(coupling_backward_kernel<scalar_t, true>) : launch(coupling_backward_kernel<scalar_t, false>);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_inp, grad_h};
}

}  // namespace
}  // namespace cuda
}  // namespace genad

TORCH_LIBRARY_IMPL(genad_fast, CUDA, m) {
  m.impl("coupling_forward", &genad::cuda::coupling_forward_cuda);
  m.impl("coupling_inverse", &genad::cuda::coupling_inverse_cuda);
  m.impl("coupling_backward", &genad::cuda::coupling_backward_cuda);
}
