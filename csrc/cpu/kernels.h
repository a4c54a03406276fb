// The CPU kernel stubs: one per op, filled by every compilation of the files of csrc/cpu/ (one per capability,
// genad/cpu_dispatch.h) and called by the ops registered once in csrc/cpu_dispatch.cpp. The signatures are the
// ops' (csrc/ops.cpp); each variant checks its arguments (genad/host/) and runs its own vectorised loops.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/core/ScalarType.h>

#include <cstdint>
#include <memory>
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
using Conv1dActFn = Tensor (*)(const Tensor& x, const Tensor& weight, const OptTensor& bias, int64_t length,
                               std::optional<double> slope, bool pool);
using GatedTanhFn = Tensor (*)(const Tensor& x, int64_t dim);
using GatedTanhBackwardFn = Tensor (*)(const Tensor& grad, const Tensor& x, int64_t dim);
using BiasGeluFn = Tensor (*)(const Tensor& z, const Tensor& bias);
using BiasGeluBackwardFn = std::tuple<Tensor, Tensor> (*)(const Tensor& grad, const Tensor& z, const Tensor& bias);
using BiasGeluKeepFn = std::tuple<Tensor, Tensor> (*)(const Tensor& z, const Tensor& bias);
using BiasGeluBackwardKeptFn = std::tuple<Tensor, Tensor> (*)(const Tensor& grad, const Tensor& derivative);
using PermuteAffineFn = std::tuple<Tensor, Tensor> (*)(const Tensor& x_a, const Tensor& x_b, const Tensor& bias,
                                                       const Tensor& log_scale, const Tensor& perm, int64_t split);
using PermuteAffineBackwardFn = std::tuple<Tensor, Tensor, Tensor, Tensor> (*)(
    const Tensor& grad_a, const Tensor& grad_b, const Tensor& v_a, const Tensor& v_b, const Tensor& log_scale,
    const Tensor& perm, int64_t source_split);

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
extern Stub<Conv1dActFn> conv1d_act_stub;
extern Stub<GatedTanhFn> gated_tanh_stub;
extern Stub<GatedTanhBackwardFn> gated_tanh_backward_stub;
extern Stub<BiasGeluFn> bias_gelu_stub;
extern Stub<BiasGeluBackwardFn> bias_gelu_backward_stub;
extern Stub<BiasGeluKeepFn> bias_gelu_keep_stub;
extern Stub<BiasGeluBackwardKeptFn> bias_gelu_backward_kept_stub;
extern Stub<PermuteAffineFn> permute_affine_stub;
extern Stub<PermuteAffineBackwardFn> permute_affine_backward_stub;

// ---- reference sets held packed between calls (genad_fast.ops.hold_refs) -------------------------------------------
// The distance kernels (kde_logpdf, knn_distance) pack the whole reference set for their register tile on every call
// (distance_tiles.h: a median per column, norms, a transposed copy: O(M·D), milliseconds for a few thousand rows
// of a few hundred columns), which is most of a call that scores a handful of queries. A caller that scores many
// small batches against one set (a stream) holds it: while held, the first call stores the packed form and the
// next calls reuse it. A held entry keeps the tensor alive (its storage cannot be freed and reused under the same
// address) and matches a refs argument with the same storage, offset, sizes, strides and dtype whose version
// counter has not moved since the pack: an in-place write through torch bumps it and the next call repacks.
// (Writes that bypass the counter, e.g. through a NumPy view, are not seen: do not write a held tensor that way.)
// Thread-safe: one mutex around the table; a packed form is immutable and shared (shared_ptr) by the calls
// that use it, so a release or a repack while another thread computes does not free it under that thread.
// `tag` tells the packed layouts apart (one per capability variant and dtype).
int64_t hold_refs(const at::Tensor& refs);  // returns the hold's id (released by release_refs)
void release_refs(int64_t id);
int64_t held_refs_count(bool packed_only);  // held entries (with a stored pack): for the tests
std::shared_ptr<const void> find_held_pack(const at::Tensor& refs, const void* tag);
void store_held_pack(const at::Tensor& refs, const void* tag, int64_t version, std::shared_ptr<const void> pack);
int64_t refs_version(const at::Tensor& refs);  // the version counter (−1 for an inference tensor: never held)

// linear_act's bfloat16 product: MKL's cblas_gemm_bf16bf16f32 when torch exports it and it is not switched off
// (genad_fast._C._linear_act_set_mkl_bf16), else at::mm in float32. One switch for every variant.
bool linear_act_has_mkl_bf16();
void linear_act_set_mkl_bf16(bool use);
bool linear_act_use_mkl_bf16();

}  // namespace genad::cpu
