// Host-only helpers of the CPU kernels (csrc/cpu): work splitting and output allocation.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace genad::cpu {

// Rows per at::parallel_for chunk: about at::internal::GRAIN_SIZE elements of `width` each, at least one row.
inline int64_t row_grain(int64_t width) {
  return std::max<int64_t>(1, at::internal::GRAIN_SIZE / std::max<int64_t>(width, 1));
}

// Runs fn(chunk) for chunk = 0 … n_chunks − 1 on every thread, handing chunks out one at a time from an atomic
// counter. A static split (what at::parallel_for does) makes the op wait for a thread the OS has descheduled,
// which on a shared machine is most of the time; here the running threads take over its chunks. A chunk's
// result must not depend on which thread computes it, so the output is the same for any thread count.
template <class Fn>
void for_each_chunk(int64_t n_chunks, const Fn& fn) {
  if (n_chunks <= 0) return;
  std::atomic<int64_t> next{0};
  const int64_t workers = std::min<int64_t>(at::get_num_threads(), n_chunks);
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    for (int64_t c = next.fetch_add(1, std::memory_order_relaxed); c < n_chunks;
         c = next.fetch_add(1, std::memory_order_relaxed)) {
      fn(c);
    }
  });
}

// f(begin, end) over [0, n) in chunks of `grain` (for_each_chunk's scheduling).
template <class F>
void parallel_chunks(int64_t n, int64_t grain, const F& f) {
  if (n <= 0) return;
  for_each_chunk((n + grain - 1) / grain, [&](int64_t c) { f(c * grain, std::min(n, (c + 1) * grain)); });
}

// Asks for transparent huge pages on a freshly allocated output buffer. A large output from at::empty is fresh
// anonymous memory that takes one page fault per 4 KiB page on its first write; for the memory-bound ops here
// (a 1,000,000×32 float32 output is 128 MB) the faults cost more than the arithmetic. madvise(MADV_HUGEPAGE) on
// the 2 MiB-aligned interior makes that 512× fewer faults. Only a hint: memory already mapped keeps its pages,
// and nothing changes where THP is off ("never") or on a non-Linux host.
inline void advise_huge_pages(void* data, std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t kHuge = std::uintptr_t{2} << 20;
  if (data == nullptr || bytes < 2 * kHuge) return;
  const std::uintptr_t begin = (reinterpret_cast<std::uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const std::uintptr_t end = (reinterpret_cast<std::uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);  // failure is harmless
#else
  (void)data;
  (void)bytes;
#endif
}

// A fresh output that the kernel writes in full: huge pages spare it most first-touch page faults.
inline at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options) {
  at::Tensor t = at::empty(sizes, options);
  advise_huge_pages(t.data_ptr(), t.nbytes());
  return t;
}

}  // namespace genad::cpu
