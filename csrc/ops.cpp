// Every genad_fast op schema, defined once. Kernels register per device in
// csrc/cpu/<op>.cpp and csrc/cuda/<op>.cu; fake (meta) kernels and autograd
// formulas are registered from Python (genad_fast/ops/).
#include <torch/library.h>

TORCH_LIBRARY(genad_fast, m) {
  // Affine coupling (RealNVP, Dinh et al. 2017; Glow, Kingma & Dhariwal 2018).
  // x, y: [N, D] (unit column stride, any row stride); h: [N, 2D] = (raw log-scale | shift).
  m.def("coupling_forward(Tensor x, Tensor h, float clamp) -> (Tensor y, Tensor logdet)");
  m.def("coupling_inverse(Tensor y, Tensor h, float clamp) -> (Tensor x, Tensor logdet)");
  // Backward of either direction: `inp` is the op's input (x for forward, y for inverse);
  // returns the gradients with respect to `inp` and `h`.
  m.def(
      "coupling_backward(Tensor grad_out, Tensor grad_logdet, Tensor inp, Tensor h, float clamp, "
      "bool inverse) -> (Tensor grad_inp, Tensor grad_h)");

  // Philox4x32-10 standard normals, the stream of Triton's tl.randn4x (see DESIGN.md, "Noise").
  // Fills `out` (contiguous, float32 or float64) in place.
  m.def("philox_normal_(Tensor(a!) out, int seed, int offset) -> ()");
}
