// Argument checks of genad_fast::bias_gelu and its backward (and the output allocation), shared by
// csrc/cpu/bias_gelu.cpp and csrc/cuda/bias_gelu.cu. Contract (csrc/ops.cpp): z [M, N] float32 or float64, any
// strides; bias [N] of z's dtype on z's device; grad (backward) [M, N] of z's dtype and device.
#pragma once

#include <genad/host/checks.h>

namespace genad::host {

struct BiasGeluArgs {
  int64_t M, N;
};

// A contiguous [M, N] tensor with like's dtype and device: every output of the kernels.
inline at::Tensor empty_rows(const at::Tensor& like, const BiasGeluArgs& a) {
  return at::empty({a.M, a.N}, like.options().memory_format(at::MemoryFormat::Contiguous));
}

inline BiasGeluArgs check_bias_gelu(const char* op, Backend backend, const at::Tensor& z, const at::Tensor& bias) {
  const Checks c(op, backend);
  c.device(z, "z");
  c.rank(z, "z", 2);
  c.floating(z, "z");
  c.same_device(bias, "bias", z, "z");
  c.same_dtype(bias, "bias", z, "z");
  c.shape(bias, "bias", {z.size(1)});
  return {z.size(0), z.size(1)};
}

inline BiasGeluArgs check_bias_gelu_backward(Backend backend, const at::Tensor& grad, const at::Tensor& z,
                                             const at::Tensor& bias) {
  constexpr const char* op = "genad_fast::bias_gelu_backward";
  const BiasGeluArgs a = check_bias_gelu(op, backend, z, bias);
  const Checks c(op, backend);
  c.same_device(grad, "grad", z, "z");
  c.same_dtype(grad, "grad", z, "z");
  c.shape(grad, "grad", z.sizes());
  return a;
}

// bias_gelu_backward_kept: grad and derivative [M, N] of one floating dtype, on one device, any strides.
inline BiasGeluArgs check_bias_gelu_backward_kept(Backend backend, const at::Tensor& grad,
                                                  const at::Tensor& derivative) {
  const Checks c("genad_fast::bias_gelu_backward_kept", backend);
  c.device(derivative, "derivative");
  c.rank(derivative, "derivative", 2);
  c.floating(derivative, "derivative");
  c.same_device(grad, "grad", derivative, "derivative");
  c.same_dtype(grad, "grad", derivative, "derivative");
  c.shape(grad, "grad", derivative.sizes());
  return {derivative.size(0), derivative.size(1)};
}

}  // namespace genad::host
