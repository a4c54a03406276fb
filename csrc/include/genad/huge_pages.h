// Host-only: ask for transparent huge pages on a freshly allocated CPU output buffer.
//
// A large output from at::empty is fresh anonymous memory that takes one page fault per 4 KiB page
// on its first write; for the memory-bound ops here (a 1,000,000×32 float32 output is 128 MB) the
// faults cost more than the arithmetic. madvise(MADV_HUGEPAGE) on the 2 MiB-aligned interior makes
// that 512× fewer faults. Only a hint: memory already mapped keeps its pages, and nothing changes
// where THP is off ("never") or on a non-Linux host.
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace genad {

inline void advise_huge_pages(void* data, std::size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr std::uintptr_t kHuge = std::uintptr_t{2} << 20;
  if (data == nullptr || bytes < 2 * kHuge) return;
  const std::uintptr_t begin = (reinterpret_cast<std::uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const std::uintptr_t end = (reinterpret_cast<std::uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);  // a hint; failure is harmless
#else
  (void)data;
  (void)bytes;
#endif
}

}  // namespace genad
