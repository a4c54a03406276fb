// Runtime CPU dispatch of the CPU kernels, the pattern of ATen's DispatchStub (aten/src/ATen/native/DispatchStub.h,
// native/cpu/README.md): every file of csrc/cpu/ is compiled once per capability (DEFAULT, AVX2, AVX512 on x86-64)
// with that capability's compiler flags and the macros CPU_CAPABILITY=<name> and CPU_CAPABILITY_<name> (which also
// set at::vec's register width), its code in namespace genad::cpu::CPU_CAPABILITY; each compilation registers its
// kernels in a stub (GENAD_REGISTER_KERNEL), and the op, registered once with the dispatcher (csrc/cpu_dispatch.cpp),
// calls the stub, which runs the variant of the capability in use.
//
// The capability in use is chosen once per process: the one ATen's kernels use (at::get_cpu_capability(), which
// honours ATEN_CPU_CAPABILITY=default|avx2|avx512), lowered to the best this CPU supports (ATen itself does not
// check an override on x86: it would run AVX-512 code on an AVX2 CPU), then to the best variant compiled.
//
// Only ISA-neutral code belongs here: this header is included by the host files (compiled for the baseline) and by
// every variant. Stub is a constant-initialised aggregate, so registration at load time needs no construction order.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace genad::cpu {

// In increasing order; the names are ATen's.
enum class Capability : int { DEFAULT = 0, AVX2 = 1, AVX512 = 2 };
constexpr int kNumCapabilities = 3;

const char* capability_name(Capability c);
// The capability whose variants run in this process (chosen at the first call, then fixed).
Capability capability_in_use();
// What asked for it: ATen's capability (ATEN_CPU_CAPABILITY or its own detection), the best this CPU runs, and
// the variants compiled into this build.
Capability capability_requested();
Capability capability_supported();
std::vector<std::string> capabilities_compiled();
// The rule: min(requested, supported), then the best compiled variant at or below it (DEFAULT is always compiled).
// `compiled_mask` has bit c set for each compiled capability c.
Capability choose_capability(Capability requested, Capability supported, uint32_t compiled_mask);
[[noreturn]] void missing_kernel();

// The kernel table of one op: table[c] is the variant compiled for capability c (null when not compiled).
template <class FnPtr>
struct Stub {
  FnPtr table[kNumCapabilities];

  // The variant of the capability in use (or the best registered one below it).
  FnPtr get() const {
    for (int c = static_cast<int>(capability_in_use()); c >= 0; --c) {
      if (table[c] != nullptr) return table[c];
    }
    missing_kernel();
    return nullptr;
  }

  template <class... Args>
  decltype(auto) operator()(Args&&... args) const {
    return get()(static_cast<Args&&>(args)...);
  }
};

}  // namespace genad::cpu

// In a file of csrc/cpu/ (namespace genad::cpu::CPU_CAPABILITY): registers `fn` as this compilation's variant of
// `stub` (a genad::cpu::Stub declared in csrc/cpu/kernels.h) while the library loads.
#define GENAD_REGISTER_KERNEL(stub, fn)                                                            \
  static const bool genad_registered_##stub = [] {                                                 \
    ::genad::cpu::stub.table[static_cast<int>(::genad::cpu::Capability::CPU_CAPABILITY)] = (fn);   \
    return true;                                                                                   \
  }()
