// The CPU ops, registered once with the dispatcher: each calls its stub (csrc/cpu/kernels.h), which runs the variant
// of the capability in use (genad/cpu_dispatch.h). Compiled for the baseline ISA, like every file outside csrc/cpu/.
#include <ATen/Context.h>
#include <ATen/Version.h>
#include <c10/util/Exception.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "bf16_gemm.h"
#include "cpu/kernels.h"

namespace genad::cpu {

// ---- capabilities ------------------------------------------------------------------------------------------------

namespace {

constexpr uint32_t kCompiledMask = (1u << static_cast<int>(Capability::DEFAULT))
#ifdef GENAD_HAVE_AVX2
                                   | (1u << static_cast<int>(Capability::AVX2))
#endif
#ifdef GENAD_HAVE_AVX512
                                   | (1u << static_cast<int>(Capability::AVX512))
#endif
    ;

// What the CPU (and the OS: the AVX and AVX-512 register state) runs, for the flags each variant is compiled with
// (CMakeLists.txt: AVX2 = -mavx2 -mfma -mbmi -mbmi2 -mf16c; AVX512 = that and -mavx512f/bw/vl/dq, ATen's set).
Capability detect_supported() {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("bmi") && __builtin_cpu_supports("bmi2");
  const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
  return avx512 ? Capability::AVX512 : avx2 ? Capability::AVX2 : Capability::DEFAULT;
#else
  return Capability::DEFAULT;  // aarch64 and others: DEFAULT is the only variant (NEON is its baseline there)
#endif
}

// ATen's choice, which honours ATEN_CPU_CAPABILITY (default, avx2, avx512; other values are ignored with a warning
// by ATen). Names ATen has and this build does not (SVE256, VSX, ZVECTOR) mean DEFAULT here.
Capability detect_requested() {
  const std::string name = at::get_cpu_capability();
  if (name == "AVX512") return Capability::AVX512;
  if (name == "AVX2") return Capability::AVX2;
  return Capability::DEFAULT;
}

Capability choose_once() {
  const Capability requested = capability_requested(), supported = capability_supported();
  const Capability chosen = choose_capability(requested, supported, kCompiledMask);
  if (static_cast<int>(requested) > static_cast<int>(supported)) {
    TORCH_WARN("genad_fast: ATen's CPU capability is ", capability_name(requested),
               " (ATEN_CPU_CAPABILITY) but this CPU only supports ", capability_name(supported),
               "; genad_fast's kernels run ", capability_name(chosen),
               " (torch's own kernels may fail with an illegal instruction)");
  }
  return chosen;
}

}  // namespace

const char* capability_name(Capability c) {
  switch (c) {
    case Capability::AVX512: return "AVX512";
    case Capability::AVX2: return "AVX2";
    default: return "DEFAULT";
  }
}

Capability choose_capability(Capability requested, Capability supported, uint32_t compiled_mask) {
  int c = std::min(static_cast<int>(requested), static_cast<int>(supported));
  while (c > 0 && (compiled_mask & (1u << c)) == 0) --c;
  return static_cast<Capability>(c);
}

Capability capability_requested() {
  static const Capability c = detect_requested();
  return c;
}

Capability capability_supported() {
  static const Capability c = detect_supported();
  return c;
}

Capability capability_in_use() {
  static const Capability c = choose_once();
  return c;
}

std::vector<std::string> capabilities_compiled() {
  std::vector<std::string> out;
  for (int c = 0; c < kNumCapabilities; ++c) {
    if (kCompiledMask & (1u << c)) out.emplace_back(capability_name(static_cast<Capability>(c)));
  }
  return out;
}

void missing_kernel() {
  TORCH_INTERNAL_ASSERT(false, "genad_fast: no CPU kernel variant registered at or below ",
                        capability_name(capability_in_use()));
}

// ---- linear_act's product switch ---------------------------------------------------------------------------------

namespace {
std::atomic<bool> g_linear_act_use_mkl{true};
}

bool linear_act_has_mkl_bf16() { return bf16_gemm::available(); }
void linear_act_set_mkl_bf16(bool use) { g_linear_act_use_mkl = use; }
bool linear_act_use_mkl_bf16() { return bf16_gemm::available() && g_linear_act_use_mkl.load(); }

// ---- reference sets held packed (kernels.h) ------------------------------------------------------------------------

namespace {

struct HeldRefs {
  int64_t id;
  at::Tensor refs;                     // kept alive: its storage's address stays its own
  const void* tag = nullptr;           // the layout of `pack`
  int64_t version = -1;                // refs' version counter when `pack` was made
  std::shared_ptr<const void> pack;
};

std::mutex g_held_mutex;
std::vector<HeldRefs> g_held;  // a handful at most (one per open stream of a reference-set detector)
int64_t g_next_hold = 1;

bool same_view(const at::Tensor& a, const at::Tensor& b) {
  return a.defined() && b.defined() && a.has_storage() && b.has_storage() &&
         a.storage().unsafeGetStorageImpl() == b.storage().unsafeGetStorageImpl() &&
         a.storage_offset() == b.storage_offset() && a.scalar_type() == b.scalar_type() && a.sizes() == b.sizes() &&
         a.strides() == b.strides() && a.device() == b.device();
}

}  // namespace

int64_t refs_version(const at::Tensor& refs) {
  if (!refs.defined() || refs.is_inference()) return -1;
  return static_cast<int64_t>(refs.unsafeGetTensorImpl()->version_counter().current_version());
}

int64_t hold_refs(const at::Tensor& refs) {
  TORCH_CHECK_VALUE(refs.defined() && refs.dim() == 2 && refs.device().is_cpu(),
                    "genad_fast: hold_refs takes a 2-D CPU tensor [M, D]");
  TORCH_CHECK_VALUE(!refs.is_inference(), "genad_fast: hold_refs needs a tensor with a version counter (an in-place "
                    "write must be seen); an inference tensor has none: hold a clone made outside inference_mode");
  std::lock_guard<std::mutex> lock(g_held_mutex);
  const int64_t id = g_next_hold++;
  g_held.push_back(HeldRefs{id, refs});
  return id;
}

void release_refs(int64_t id) {
  std::shared_ptr<const void> dropped;  // freed after the lock is released
  std::lock_guard<std::mutex> lock(g_held_mutex);
  for (auto it = g_held.begin(); it != g_held.end(); ++it) {
    if (it->id == id) {
      dropped = std::move(it->pack);
      g_held.erase(it);
      return;
    }
  }
}

int64_t held_refs_count(bool packed_only) {
  std::lock_guard<std::mutex> lock(g_held_mutex);
  int64_t n = 0;
  for (const auto& h : g_held) n += !packed_only || h.pack != nullptr;
  return n;
}

std::shared_ptr<const void> find_held_pack(const at::Tensor& refs, const void* tag) {
  const int64_t version = refs_version(refs);
  if (version < 0) return nullptr;
  std::lock_guard<std::mutex> lock(g_held_mutex);
  for (const auto& h : g_held) {
    if (h.pack && h.tag == tag && h.version == version && same_view(h.refs, refs)) return h.pack;
  }
  return nullptr;
}

void store_held_pack(const at::Tensor& refs, const void* tag, int64_t version, std::shared_ptr<const void> pack) {
  if (version < 0) return;
  std::lock_guard<std::mutex> lock(g_held_mutex);
  for (auto& h : g_held) {
    if (same_view(h.refs, refs) && (h.pack == nullptr || version >= h.version)) {  // never an older pack back
      h.tag = tag;
      h.version = version;
      h.pack = pack;
    }
  }
}

// ---- the stubs and the ops ---------------------------------------------------------------------------------------

Stub<CouplingFn> coupling_forward_stub;
Stub<CouplingFn> coupling_inverse_stub;
Stub<CouplingBackwardFn> coupling_backward_stub;
Stub<PhiloxNormalFn> philox_normal_stub;
Stub<AddNoiseFn> add_noise_stub;
Stub<DiffusionStepFn> diffusion_step_stub;
Stub<ReconErrorFn> recon_error_accumulate_stub;
Stub<AnoganResidualFn> anogan_residual_stub;
Stub<MaskedAdamFn> masked_adam_stub;
Stub<KdeFn> kde_logpdf_stub;
Stub<KnnFn> knn_distance_stub;
Stub<LinearActFn> linear_act_stub;
Stub<Conv1dActFn> conv1d_act_stub;
Stub<GatedTanhFn> gated_tanh_stub;
Stub<GatedTanhBackwardFn> gated_tanh_backward_stub;
Stub<BiasGeluFn> bias_gelu_stub;
Stub<BiasGeluBackwardFn> bias_gelu_backward_stub;
Stub<BiasGeluKeepFn> bias_gelu_keep_stub;
Stub<BiasGeluBackwardKeptFn> bias_gelu_backward_kept_stub;
Stub<PermuteAffineFn> permute_affine_stub;
Stub<PermuteAffineBackwardFn> permute_affine_backward_stub;

namespace {

// The op registered with the dispatcher for a stub: a plain function with the kernel's signature.
template <auto& stub, class Fn>
struct Op;

template <auto& stub, class R, class... A>
struct Op<stub, R (*)(A...)> {
  static R call(A... args) { return stub(std::forward<A>(args)...); }
};

template <auto& stub>
constexpr auto op = &Op<stub, std::remove_cvref_t<decltype(stub.table[0])>>::call;

}  // namespace
}  // namespace genad::cpu

TORCH_LIBRARY_IMPL(genad_fast, CPU, m) {
  using namespace genad::cpu;
  m.impl("coupling_forward", op<coupling_forward_stub>);
  m.impl("coupling_inverse", op<coupling_inverse_stub>);
  m.impl("coupling_backward", op<coupling_backward_stub>);
  m.impl("philox_normal_", op<philox_normal_stub>);
  m.impl("add_noise", op<add_noise_stub>);
  m.impl("diffusion_step", op<diffusion_step_stub>);
  m.impl("recon_error_accumulate_", op<recon_error_accumulate_stub>);
  m.impl("anogan_residual", op<anogan_residual_stub>);
  m.impl("masked_adam_", op<masked_adam_stub>);
  m.impl("kde_logpdf", op<kde_logpdf_stub>);
  m.impl("knn_distance", op<knn_distance_stub>);
  m.impl("linear_act", op<linear_act_stub>);
  m.impl("conv1d_act", op<conv1d_act_stub>);
  m.impl("gated_tanh", op<gated_tanh_stub>);
  m.impl("gated_tanh_backward", op<gated_tanh_backward_stub>);
  m.impl("bias_gelu", op<bias_gelu_stub>);
  m.impl("bias_gelu_backward", op<bias_gelu_backward_stub>);
  m.impl("bias_gelu_keep", op<bias_gelu_keep_stub>);
  m.impl("bias_gelu_backward_kept", op<bias_gelu_backward_kept_stub>);
  m.impl("permute_affine", op<permute_affine_stub>);
  m.impl("permute_affine_backward", op<permute_affine_backward_stub>);
}
