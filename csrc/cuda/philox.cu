// CUDA kernel of genad_fast::philox_normal_: Philox4x32-10 normals in the tl.randn4x stream (genad/philox.h).
//
// One thread per counter j (grid-stride): randn4(seed, offset + j) feeds elements j, q + j, 2q + j, 3q + j,
// so each of the four stores is coalesced across a warp.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "genad/host/philox.h"
#include "genad/philox.h"

namespace genad {
namespace cuda {
namespace {

namespace px = genad::philox;

constexpr int kThreads = 256;

template <typename scalar_t>
__global__ void philox_normal_kernel(scalar_t* __restrict__ out,  // [n]
                                     uint64_t n, uint64_t q, uint64_t seed, uint64_t offset) {
  const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
  for (uint64_t j = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < q; j += stride) {
    const px::Normals z = px::randn4(seed, offset + j);
    out[j] = static_cast<scalar_t>(z.n0);
    if (q + j < n) out[q + j] = static_cast<scalar_t>(z.n1);
    if (2 * q + j < n) out[2 * q + j] = static_cast<scalar_t>(z.n2);
    if (3 * q + j < n) out[3 * q + j] = static_cast<scalar_t>(z.n3);
  }
}

void philox_normal_(at::Tensor out, int64_t seed, int64_t offset) {
  const uint64_t n = static_cast<uint64_t>(host::check_philox_normal(host::kCUDA, out, seed, offset));
  if (n == 0) return;
  const uint64_t q = px::counters(n);

  const c10::cuda::CUDAGuard guard(out.device());
  // (ATen/cuda/CUDAContext.h would pull in cuBLAS/cuSPARSE headers, which a bare toolkit may lack.)
  int sms = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, out.get_device()));
  // Enough blocks to fill the GPU several times over; the grid-stride loop covers the rest.
  const uint64_t wanted = (q + kThreads - 1) / kThreads;
  const unsigned blocks = static_cast<unsigned>(std::min<uint64_t>(wanted, static_cast<uint64_t>(sms) * 32));
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(out.scalar_type(), "philox_normal_cuda", [&] {
    philox_normal_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        out.data_ptr<scalar_t>(), n, q, static_cast<uint64_t>(seed), static_cast<uint64_t>(offset));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

}  // namespace
}  // namespace cuda
}  // namespace genad

TORCH_LIBRARY_IMPL(genad_fast, CUDA, m) { m.impl("philox_normal_", &genad::cuda::philox_normal_); }
