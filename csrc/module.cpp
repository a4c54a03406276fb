// The Python module genad_fast._C: loading it registers every op kernel with the
// dispatcher; its one function reports how this binary was built.
#include <ATen/Parallel.h>
#include <torch/csrc/utils/pybind.h>  // pybind11 with at::Tensor's casters: not torch/extension.h's whole C++ API
#include <torch/version.h>

#ifdef GENAD_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#include "cpu/kernels.h"
#include "residual_mlp.h"

#ifndef GENAD_VERSION
#define GENAD_VERSION "unknown"
#endif

namespace {

namespace gc = genad::cpu;

gc::Capability capability_from_name(const std::string& name) {
  for (int c = 0; c < gc::kNumCapabilities; ++c) {
    if (name == gc::capability_name(static_cast<gc::Capability>(c))) return static_cast<gc::Capability>(c);
  }
  throw py::value_error("unknown CPU capability '" + name + "' (DEFAULT, AVX2 or AVX512)");
}

// genad::cpu::choose_capability on names, for the tests of the rule.
std::string choose_cpu_capability(const std::string& requested, const std::string& supported,
                                  const std::vector<std::string>& compiled) {
  uint32_t mask = 0;
  for (const auto& name : compiled) mask |= 1u << static_cast<int>(capability_from_name(name));
  return gc::capability_name(
      gc::choose_capability(capability_from_name(requested), capability_from_name(supported), mask));
}

py::dict build_info() {
  py::dict info;
  info["version"] = GENAD_VERSION;
  py::list backends;
  backends.append("cpu");
#ifdef GENAD_WITH_CUDA
  backends.append("cuda");
  info["cuda_version"] = std::to_string(CUDART_VERSION / 1000) + "." + std::to_string((CUDART_VERSION % 1000) / 10);
#else
  info["cuda_version"] = py::none();
#endif
  info["backends"] = backends;
  info["cuda_archs"] = GENAD_CUDA_ARCHS;
  // The CPU kernels' variants compiled into this binary and the one this process runs (genad/cpu_dispatch.h),
  // with what chose it: ATen's capability (ATEN_CPU_CAPABILITY or its detection) and what the CPU supports.
  info["cpu_capability"] = gc::capability_name(gc::capability_in_use());
  info["cpu_capabilities"] = gc::capabilities_compiled();
  info["cpu_capability_requested"] = gc::capability_name(gc::capability_requested());
  info["cpu_capability_supported"] = gc::capability_name(gc::capability_supported());
  info["torch_version"] = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                          std::to_string(TORCH_VERSION_PATCH);
  info["openmp_threads"] = at::get_num_threads();
  info["compiler"] = __VERSION__;
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "genad_fast compiled ops (CPU, and CUDA when built with it)";
  // The CPU kernels' variant is chosen once, as the library loads (a warning here if ATEN_CPU_CAPABILITY asks
  // for more than the CPU has).
  gc::capability_in_use();
  m.def("build_info", &build_info, "How this extension was built: version, backends, CUDA archs, CPU ISA, threads");
  m.def("_choose_cpu_capability", &choose_cpu_capability, py::arg("requested"), py::arg("supported"),
        py::arg("compiled"), "The CPU capability whose kernels run, given ATen's, the CPU's and the compiled ones");
  m.def("_linear_act_has_mkl_bf16", &gc::linear_act_has_mkl_bf16,
        "Whether torch exports MKL's cblas_gemm_bf16bf16f32 (linear_act's bfloat16 product on the CPU)");
  m.def("_linear_act_set_mkl_bf16", &gc::linear_act_set_mkl_bf16,
        "Use MKL's bfloat16 GEMM in linear_act when present (True, default) or at::mm in float32 (False)");
  // genad_fast.ops.hold_refs: a reference set whose packed form the CPU distance kernels keep between calls.
  m.def("_hold_refs", &gc::hold_refs, py::arg("refs"),
        "Hold a reference set [M, D] packed between kde_logpdf/knn_distance calls on the CPU; returns the hold's id");
  m.def("_release_refs", &gc::release_refs, py::arg("id"), "Release a hold made by _hold_refs (unknown ids: nothing)");
  // The GIL released while they compute (torch's own bindings release it too), so threads that share a model run
  // their conditioners at once.
  m.def("_residual_mlp_train", &genad::autograd::residual_mlp_train, py::arg("x"), py::arg("n_blocks"),
        py::arg("params"), py::call_guard<py::gil_scoped_release>(),
        "The flow conditioner's fused forward as one C++ autograd node (csrc/residual_mlp.cpp)");
  m.def("_residual_mlp_forward", &genad::autograd::residual_mlp_forward, py::arg("x"), py::arg("n_blocks"),
        py::arg("params"), py::call_guard<py::gil_scoped_release>(),
        "The flow conditioner's fused forward without gradients (csrc/residual_mlp.cpp)");
  m.def("_residual_mlp_train_bf16", &genad::autograd::residual_mlp_train_bf16, py::arg("x"), py::arg("n_blocks"),
        py::arg("params"), py::call_guard<py::gil_scoped_release>(),
        "The flow conditioner with bfloat16 operands in its products, float32 results, as one C++ autograd node "
        "(csrc/residual_mlp.cpp)");
  m.def("_residual_mlp_forward_bf16", &genad::autograd::residual_mlp_forward_bf16, py::arg("x"), py::arg("n_blocks"),
        py::arg("params"), py::call_guard<py::gil_scoped_release>(),
        "The same without gradients (csrc/residual_mlp.cpp)");
  m.def("_held_refs_count", &gc::held_refs_count, py::arg("packed_only") = false,
        "Reference sets held now (packed_only: those whose packed form is stored)");
}
