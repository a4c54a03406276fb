// The Python module genad_fast._C: loading it registers every op kernel with the
// dispatcher; its one function reports how this binary was built.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#ifdef GENAD_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

#ifndef GENAD_VERSION
#define GENAD_VERSION "unknown"
#endif

namespace genad::cpu {
bool linear_act_has_mkl_bf16();
void linear_act_set_mkl_bf16(bool use);
}  // namespace genad::cpu

namespace {

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
  info["cpu_capability"] = GENAD_CPU_CAPABILITY_NAME;
  info["torch_version"] = std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
                          std::to_string(TORCH_VERSION_PATCH);
  info["openmp_threads"] = at::get_num_threads();
  info["compiler"] = __VERSION__;
  return info;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "genad_fast compiled ops (CPU, and CUDA when built with it)";
  m.def("build_info", &build_info, "How this extension was built: version, backends, CUDA archs, CPU ISA, threads");
  m.def("_linear_act_has_mkl_bf16", &genad::cpu::linear_act_has_mkl_bf16,
        "Whether torch exports MKL's cblas_gemm_bf16bf16f32 (linear_act's bfloat16 product on the CPU)");
  m.def("_linear_act_set_mkl_bf16", &genad::cpu::linear_act_set_mkl_bf16,
        "Use MKL's bfloat16 GEMM in linear_act when present (True, default) or at::mm in float32 (False)");
}
