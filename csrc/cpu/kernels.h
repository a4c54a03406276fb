// The CPU kernel stubs: one per op, filled by every compilation of the files of csrc/cpu/ (one per capability,
// genad/cpu_dispatch.h) and called by the ops registered once in csrc/cpu_dispatch.cpp. The signatures are the
// ops' (csrc/ops.cpp); each variant checks its arguments (genad/host/) and runs its own vectorised loops.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <optional>
#include <tuple>

#include <genad/cpu_dispatch.h>

namespace genad::cpu {

using Tensor = at::Tensor;
using OptTensor = std::optional<at::Tensor>;

using CouplingFn = std::tuple<Tensor, Tensor> (*)(const Tensor& inp, const Tensor& h, double clamp);
using CouplingBackwardFn = std::tuple<Tensor, Tensor> (*)(const Tensor& grad_out, const Tensor& grad_logdet,
                                                          const Tensor& inp, const Tensor& h, double clamp,
                                                          bool inverse);
using PhiloxNormalFn = void (*)(Tensor out, int64_t seed, int64_t offset);
using AddNoiseFn = Tensor (*)(const Tensor& x0, const Tensor& a, const Tensor& b, int64_t seed, int64_t offset,
                              const OptTensor& noise);
using DiffusionStepFn = Tensor (*)(const Tensor& x_t, const Tensor& eps, const Tensor& a, const Tensor& b,
                                   const Tensor& c, int64_t seed, int64_t offset, const OptTensor& noise);
using ReconErrorFn = void (*)(Tensor score, const Tensor& x, const Tensor& x_hat, const OptTensor& mask,
                              double weight);
using AnoganResidualFn = std::tuple<Tensor, Tensor, Tensor> (*)(const Tensor& x, const Tensor& gx, const Tensor& fx,
                                                                const Tensor& fgx, double lam);
using MaskedAdamFn = void (*)(const Tensor& z, const Tensor& grad, const Tensor& m, const Tensor& v,
                              const Tensor& step, const Tensor& active, double lr, double beta1, double beta2,
                              double eps);
using KdeFn = Tensor (*)(const Tensor& queries, const Tensor& refs, double bandwidth, bool exclude_self);
using KnnFn = Tensor (*)(const Tensor& queries, const Tensor& refs, int64_t k, bool exclude_self);
using LinearActFn = Tensor (*)(const Tensor& x, const Tensor& weight, const OptTensor& bias, const OptTensor& gate,
                               double gate_slope, const OptTensor& addend, std::optional<double> slope,
                               std::optional<at::ScalarType> out_dtype);

extern Stub<CouplingFn> coupling_forward_stub;
extern Stub<CouplingFn> coupling_inverse_stub;
extern Stub<CouplingBackwardFn> coupling_backward_stub;
extern Stub<PhiloxNormalFn> philox_normal_stub;
extern Stub<AddNoiseFn> add_noise_stub;
extern Stub<DiffusionStepFn> diffusion_step_stub;
extern Stub<ReconErrorFn> recon_error_accumulate_stub;
extern Stub<AnoganResidualFn> anogan_residual_stub;
extern Stub<MaskedAdamFn> masked_adam_stub;
extern Stub<KdeFn> kde_logpdf_stub;
extern Stub<KnnFn> knn_distance_stub;
extern Stub<LinearActFn> linear_act_stub;

// linear_act's bfloat16 product: MKL's cblas_gemm_bf16bf16f32 when torch exports it and it is not switched off
// (genad_fast._C._linear_act_set_mkl_bf16), else at::mm in float32. One switch for every variant.
bool linear_act_has_mkl_bf16();
void linear_act_set_mkl_bf16(bool use);
bool linear_act_use_mkl_bf16();

}  // namespace genad::cpu
