// CPU kernels of the diffusion ops (math in genad/diffusion.h):
//   add_noise       out = a·x0 + b·z                  x0, out: [B, M]; a, b: [B]
//   diffusion_step  out = a·x_t + b·eps + c·z         x_t, eps, out: [B, M]; a, b, c: [B]
//   recon_error_accumulate_   score[B, T] += w · mean_c(mask·(x − x̂)²)   x, x̂, mask: [B, T, C], any strides
//
// One pass over memory, no temporaries. In-kernel noise: the counters are cut into blocks of kBlock; a block's
// 4·kBlock normals come from the vectorized Philox of philox_block.h (the noise op's code) into an L1 buffer and
// are consumed at once by the four contiguous runs they feed (one per quarter of the tensor, split where a run
// crosses a sample boundary). Every element goes through the same at::vec expression (partial registers at the
// ends of runs), so its value depends on its position only: the result is the same for any thread count.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <type_traits>

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#include <immintrin.h>
#endif

#include "genad/cpu_helpers.h"
#include "genad/diffusion.h"
#include "genad/host/diffusion.h"
#include "kernels.h"
#include "philox_block.h"

namespace genad {
namespace cpu {
namespace CPU_CAPABILITY {
namespace {

namespace gd = genad::diffusion;
using philox_vec::kBlock;

// Counter blocks per work chunk: 32 x 64 counters = 8192 elements, ~96 KiB of traffic.
constexpr int64_t kGrainBlocks = 32;
// Elements per work chunk when the noise is an explicit tensor, and for the reduction.
constexpr int64_t kGrainElems = 16384;

// ---- add_noise / diffusion_step -----------------------------------------------------------------------------

// The shared parameters (genad/host/diffusion.h) and whether the output is written with non-temporal stores
// (it is bigger than the caches).
template <typename T>
struct Combine : host::CombineParams<T> {
  bool stream;
};

// Output bytes from which the result is written with non-temporal stores: a tensor this big does not stay in cache
// for its consumer anyway, and streaming stores spare the read-for-ownership of every output line (a quarter of
// the op's memory traffic).
constexpr int64_t kStreamBytes = int64_t{8} << 20;

template <typename T>
inline void store_out(const at::vec::Vectorized<T>& v, T* p, int64_t k, bool stream) {
  using V = at::vec::Vectorized<T>;
#if defined(CPU_CAPABILITY_AVX512)
  if (stream && k == V::size() && (reinterpret_cast<uintptr_t>(p) & 63) == 0) {
    if constexpr (std::is_same_v<T, float>) {
      _mm512_stream_ps(p, v);
    } else {
      _mm512_stream_pd(p, v);
    }
    return;
  }
#elif defined(CPU_CAPABILITY_AVX2)
  if (stream && k == V::size() && (reinterpret_cast<uintptr_t>(p) & 31) == 0) {
    if constexpr (std::is_same_v<T, float>) {
      _mm256_stream_ps(p, v);
    } else {
      _mm256_stream_pd(p, v);
    }
    return;
  }
#endif
  v.store(p, k);
}

// Non-temporal stores are weakly ordered: fence them before the task ends, so the result is visible to whoever
// reads it after the parallel region.
inline void fence_stores(bool stream) {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  if (stream) _mm_sfence();
#endif
}

// a register of T from `count` (<= size) values of type Z: float normals widened for float64 data.
template <typename T, typename Z>
inline at::vec::Vectorized<T> load(const Z* p, int64_t count) {
  using V = at::vec::Vectorized<T>;
  if constexpr (std::is_same_v<T, Z>) {
    return count == V::size() ? V::loadu(p) : V::loadu(p, count);
  } else {
    alignas(64) T buf[V::size()];
    for (int64_t l = 0; l < count; ++l) buf[l] = static_cast<T>(p[l]);
    return V::loadu(buf, count);
  }
}

// out[r, col : col + len] from the noise z[0 : len] (within one sample).
template <typename T, typename Z>
inline void combine_segment(const Combine<T>& p, int64_t r, int64_t col, const Z* z, int64_t len) {
  using V = at::vec::Vectorized<T>;
  const V va(p.a[r * p.sa]), vc(p.c[r * p.sc]);
  const T* x = p.x + r * p.sx + col;
  T* out = p.out + r * p.M + col;
  if (p.e != nullptr) {
    const V vb(p.b[r * p.sb]);
    const T* e = p.e + r * p.se + col;
    for (int64_t l = 0; l < len; l += V::size()) {
      const int64_t k = std::min<int64_t>(V::size(), len - l);
      store_out(gd::step_elem<V>(load<T>(x + l, k), load<T>(e + l, k), va, vb, vc, load<T>(z + l, k)), out + l, k,
                p.stream);
    }
  } else {
    for (int64_t l = 0; l < len; l += V::size()) {
      const int64_t k = std::min<int64_t>(V::size(), len - l);
      store_out(gd::add_noise_elem<V>(load<T>(x + l, k), va, vc, load<T>(z + l, k)), out + l, k, p.stream);
    }
  }
}

// Flat elements [start, start + count) of the [B, M] tensor, cut where they cross a sample boundary;
// noise(r, col, done) points at the noise of element (r, col), the done-th of the run.
template <typename T, typename NoiseAt>
inline void combine_run(const Combine<T>& p, int64_t start, int64_t count, NoiseAt&& noise) {
  int64_t r = start / p.M, col = start % p.M, done = 0;
  while (done < count) {
    const int64_t len = std::min(count - done, p.M - col);
    combine_segment(p, r, col, noise(r, col, done), len);
    done += len;
    ++r;
    col = 0;
  }
}

// z from the Philox stream at (seed, offset) for the whole [B, M] tensor.
template <typename T>
void combine_philox(const Combine<T>& p, int64_t n, uint64_t seed, uint64_t offset) {
  const int64_t q = static_cast<int64_t>(genad::philox::counters(static_cast<uint64_t>(n)));
  const int64_t blocks = (q + kBlock - 1) / kBlock;
  parallel_chunks(blocks, kGrainBlocks, [&](int64_t b0, int64_t b1) {
    alignas(64) float z[4][kBlock];
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t j0 = blk * kBlock;  // first counter of the block, relative to offset
      philox_vec::block_normals(seed, offset + static_cast<uint64_t>(j0), z);
      const int64_t in_quarter = std::min(kBlock, q - j0);
      for (int k = 0; k < 4; ++k) {
        const int64_t start = k * q + j0;
        const int64_t count = std::min(in_quarter, n - start);  // the last quarter may be short
        if (count > 0) combine_run(p, start, count, [&](int64_t, int64_t, int64_t done) { return z[k] + done; });
      }
    }
    fence_stores(p.stream);
  });
}

// z from an explicit [B, M] tensor with row stride sn.
template <typename T>
void combine_tensor(const Combine<T>& p, int64_t n, const T* noise, int64_t sn) {
  parallel_chunks(n, kGrainElems, [&](int64_t i0, int64_t i1) {
    combine_run(p, i0, i1 - i0, [&](int64_t r, int64_t col, int64_t) { return noise + r * sn + col; });
    fence_stores(p.stream);
  });
}

// add_noise when eps (and b) are absent; the noise coefficient is `c`.
at::Tensor combine(const char* op, const at::Tensor& x, const std::optional<at::Tensor>& eps, const at::Tensor& a,
                   const std::optional<at::Tensor>& b, const at::Tensor& c, const char* c_name, int64_t seed,
                   int64_t offset, const std::optional<at::Tensor>& noise) {
  const host::CombineArgs args = host::check_combine(host::kCPU, op, x, eps, a, b, c, c_name, seed, offset, noise);
  const int64_t B = args.B, M = args.M;
  at::Tensor out = at::empty({B, M}, x.options());
  if (B == 0 || M == 0) return out;
  // No madvise(MADV_HUGEPAGE) here, unlike the noise op: on the VMs this was measured on, a fresh 2 MiB page costs
  // far more than 512 small faults (hypervisor backing), and a sampling loop's outputs are recycled by malloc.
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "genad_fast_diffusion_cpu", [&] {
    const Combine<scalar_t> p{host::combine_params<scalar_t>(x, eps, a, b, c, out), out.nbytes() >= kStreamBytes};
    if (noise) {
      combine_tensor(p, B * M, noise->const_data_ptr<scalar_t>(), noise->stride(0));
    } else {
      combine_philox(p, B * M, static_cast<uint64_t>(seed), static_cast<uint64_t>(offset));
    }
  });
  return out;
}

at::Tensor add_noise_cpu(const at::Tensor& x0, const at::Tensor& a, const at::Tensor& b, int64_t seed, int64_t offset,
                         const std::optional<at::Tensor>& noise) {
  return combine("genad_fast::add_noise", x0, std::nullopt, a, std::nullopt, b, "b", seed, offset, noise);
}

at::Tensor diffusion_step_cpu(const at::Tensor& x_t, const at::Tensor& eps, const at::Tensor& a, const at::Tensor& b,
                              const at::Tensor& c, int64_t seed, int64_t offset,
                              const std::optional<at::Tensor>& noise) {
  return combine("genad_fast::diffusion_step", x_t, eps, a, b, c, "c", seed, offset, noise);
}

// ---- recon_error_accumulate_ ----------------------------------------------------------------------------------

template <typename T>
using Recon = host::ReconParams<T>;

// Channels contiguous (the [B, T, C] layout): one register-wide sum over C per timestamp.
template <typename T>
void recon_rows(const Recon<T>& p, int64_t B, int64_t Tn) {
  using V = at::vec::Vectorized<T>;
  parallel_chunks(B * Tn, std::max<int64_t>(1, kGrainElems / std::max<int64_t>(p.C, 1)), [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t bi = r / Tn, t = r % Tn;
      const T* x = p.x + bi * p.x0 + t * p.x1;
      const T* h = p.h + bi * p.h0 + t * p.h1;
      const T* m = p.m ? p.m + bi * p.m0 + t * p.m1 : nullptr;
      V acc(T(0));
      for (int64_t l = 0; l < p.C; l += V::size()) {  // lanes past C load zeros and add nothing
        const int64_t k = std::min<int64_t>(V::size(), p.C - l);
        const V xv = load<T>(x + l, k), hv = load<T>(h + l, k);
        acc = acc + (m ? gd::masked_sq_err<V>(xv, hv, load<T>(m + l, k)) : gd::sq_err<V>(xv, hv));
      }
      alignas(64) T lanes[V::size()];
      acc.store(lanes);
      T sum = T(0);
      for (int64_t l = 0; l < V::size(); ++l) sum += lanes[l];
      p.score[bi * p.s0 + t * p.s1] += p.weight * (sum / static_cast<T>(p.C));
    }
  });
}

// Any other layout, e.g. a [B, C, T] state read through its transpose (timestamps contiguous): tiles of kTile
// timestamps, each accumulated over the channels, vectorized over time where the time stride is 1.
template <typename T>
void recon_tiles(const Recon<T>& p, int64_t B, int64_t Tn) {
  using V = at::vec::Vectorized<T>;
  constexpr int64_t kTile = 256;
  const int64_t tiles = (Tn + kTile - 1) / kTile;
  const bool unit_t = p.x1 == 1 && p.h1 == 1 && (!p.m || p.m1 == 1);
  parallel_chunks(B * tiles, std::max<int64_t>(1, kGrainElems / (kTile * std::max<int64_t>(p.C, 1))),
                  [&](int64_t w0, int64_t w1) {
    alignas(64) T acc[kTile];
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t bi = w / tiles, t0 = (w % tiles) * kTile, len = std::min(kTile, Tn - t0);
      std::fill(acc, acc + len, T(0));
      for (int64_t ch = 0; ch < p.C; ++ch) {
        const T* x = p.x + bi * p.x0 + t0 * p.x1 + ch * p.x2;
        const T* h = p.h + bi * p.h0 + t0 * p.h1 + ch * p.h2;
        const T* m = p.m ? p.m + bi * p.m0 + t0 * p.m1 + ch * p.m2 : nullptr;
        if (unit_t) {
          for (int64_t l = 0; l < len; l += V::size()) {
            const int64_t k = std::min<int64_t>(V::size(), len - l);
            const V xv = load<T>(x + l, k), hv = load<T>(h + l, k);
            const V e = m ? gd::masked_sq_err<V>(xv, hv, load<T>(m + l, k)) : gd::sq_err<V>(xv, hv);
            (V::loadu(acc + l, k) + e).store(acc + l, k);
          }
        } else {
          for (int64_t l = 0; l < len; ++l) {
            acc[l] += m ? gd::masked_sq_err<T>(x[l * p.x1], h[l * p.h1], m[l * p.m1]) : gd::sq_err<T>(x[l * p.x1], h[l * p.h1]);
          }
        }
      }
      T* s = p.score + bi * p.s0 + t0 * p.s1;
      for (int64_t l = 0; l < len; ++l) s[l * p.s1] += p.weight * (acc[l] / static_cast<T>(p.C));
    }
  });
}

void recon_error_accumulate_cpu(at::Tensor score, const at::Tensor& x, const at::Tensor& x_hat,
                                const std::optional<at::Tensor>& mask, double weight) {
  const host::ReconArgs args = host::check_recon(host::kCPU, score, x, x_hat, mask);
  const int64_t B = args.B, Tn = args.Tn, C = args.C;
  if (B == 0 || Tn == 0) return;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "genad_fast_recon_error_cpu", [&] {
    const Recon<scalar_t> p = host::recon_params<scalar_t>(score, x, x_hat, mask, weight);
    const bool unit_c = C <= 1 || (x.stride(2) == 1 && x_hat.stride(2) == 1 && (!mask || mask->stride(2) == 1));
    if (unit_c) {
      recon_rows(p, B, Tn);
    } else {
      recon_tiles(p, B, Tn);
    }
  });
}

}  // namespace

GENAD_REGISTER_KERNEL(add_noise_stub, &add_noise_cpu);
GENAD_REGISTER_KERNEL(diffusion_step_stub, &diffusion_step_cpu);
GENAD_REGISTER_KERNEL(recon_error_accumulate_stub, &recon_error_accumulate_cpu);

}  // namespace CPU_CAPABILITY
}  // namespace cpu
}  // namespace genad
