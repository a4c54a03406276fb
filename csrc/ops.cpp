// Every genad_fast op schema, defined once. Kernels register per device in
// csrc/cpu/<op>.cpp and csrc/cuda/<op>.cu; fake (meta) kernels and autograd
// formulas are registered from Python (genad_fast/ops/).
//
// Below the schemas:
//   include/genad/<op>.h         per-element math (GENAD_HD inline functions), run by CPU and CUDA kernels
//   include/genad/host/<op>.h    the op's argument checks (one text per contract, host/checks.h) and kernel
//                                parameter structs; the device files call them and keep only kernels and launches
//   include/genad/cpu_helpers.h  work splitting and output allocation of the CPU kernels
//   include/genad/cuda_helpers.cuh  warp reductions and grid sizes of the CUDA kernels
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

  // Diffusion (DDPM, Ho et al. 2020; DDIM, Song et al. 2021). Per-sample coefficients a, b, c: [B] carry any
  // schedule. x0, x_t, eps: [B, M] (a sample's elements contiguous, any stride between samples).
  // z is standard normal noise: the Philox stream at (seed, offset) for the whole [B, M] tensor, or `noise`.
  m.def("add_noise(Tensor x0, Tensor a, Tensor b, int seed, int offset, Tensor? noise) -> Tensor");   // a*x0 + b*z
  m.def(
      "diffusion_step(Tensor x_t, Tensor eps, Tensor a, Tensor b, Tensor c, int seed, int offset, "
      "Tensor? noise) -> Tensor");                                                             // a*x_t + b*eps + c*z
  // score[B, T] += weight * mean_c(mask * (x - x_hat)^2) for x, x_hat, mask: [B, T, C] (mask None = all ones).
  m.def("recon_error_accumulate_(Tensor(a!) score, Tensor x, Tensor x_hat, Tensor? mask, float weight) -> ()");

  // AnoGAN latent search (Schlegl et al., IPMI 2017). x, gx: [B, P] (data and G(z)); fx, fgx: [B, F] (discriminator
  // features of both). loss = (1-lam)*sum|x-gx| + lam*sum|fx-fgx| per sample, with the sub-gradients
  // d loss / d gx and d loss / d fgx (sign, 0 at 0) in the same pass.
  m.def("anogan_residual(Tensor x, Tensor gx, Tensor fx, Tensor fgx, float lam) -> (Tensor loss, Tensor grad_gx, "
        "Tensor grad_fgx)");
  // Adam (Kingma & Ba 2015, bias-corrected) on the rows of z[B, L] whose active[B] flag is set, in place; step[B]
  // counts each row's updates and is incremented before its bias correction, as torch.optim.Adam does.
  m.def("masked_adam_(Tensor(a!) z, Tensor grad, Tensor(b!) m, Tensor(c!) v, Tensor(d!) step, Tensor active, "
        "float lr, float beta1, float beta2, float eps) -> ()");

  // Classic density and distance scores over a reference set, tiled so memory stays O(N + M), never N x M.
  // queries: [N, D], refs: [M, D]. Gaussian KDE log-density as scikit-learn's KernelDensity(kernel="gaussian"):
  // log p(q) = logsumexp_j(-|q - r_j|^2 / (2 h^2)) - log M - D/2 log(2 pi h^2); exclude_self (queries are the refs,
  // N == M) leaves j == i out and normalises by M - 1: the leave-one-out density of the training points.
  m.def("kde_logpdf(Tensor queries, Tensor refs, float bandwidth, bool exclude_self=False) -> Tensor");
  // Euclidean distances to the k nearest refs, ascending: [N, k]; exclude_self skips j == i (queries are refs).
  m.def("knn_distance(Tensor queries, Tensor refs, int k, bool exclude_self) -> Tensor");

  // One layer of a small MLP, forward or backward, with its element-wise work fused around the product:
  // out[M, N] = act(a·weight^T + bias + addend), a = x[M, K] (times (gate > 0 ? 1 : gate_slope) when gate is given:
  // the LeakyReLU backward at that layer's output) rounded to weight's dtype; float32 accumulation; act =
  // LeakyReLU(slope) when slope is given; out in out_dtype (default x's). float32 or bfloat16 throughout.
  m.def("linear_act(Tensor x, Tensor weight, Tensor? bias, Tensor? gate, float gate_slope, Tensor? addend, "
        "float? slope, ScalarType? out_dtype) -> Tensor");

  // One stage of a small 1-D convolutional encoder or decoder: out = pool(act(conv1d(upsample(x, length), weight,
  // bias, padding = k / 2))), x [N, C_in, L_in] float32 or float64 (any strides), weight [C_out, C_in, k]; upsample:
  // nearest, to `length` timestamps (L_in: none); act = LeakyReLU(slope) when slope is given; pool: MaxPool1d(2,
  // ceil_mode=True). Sums in x's dtype.
  m.def("conv1d_act(Tensor x, Tensor weight, Tensor? bias, int length, float? slope, bool pool) -> Tensor");

  // The gated activation unit of WaveNet / DiffWave (van den Oord et al. 2016; Kong et al., ICLR 2021): x split in
  // halves (a, b) along `dim`, out = sigmoid(a) * tanh(b), tanh(b) evaluated as 2 sigmoid(2b) - 1. x float32,
  // float64 or bfloat16 (bfloat16 computed in float32), any layout; out has x's shape with `dim` halved. The
  // backward returns d/dx = [g tanh(b) s (1 - s), g s (1 - tanh(b)^2)] (s = sigmoid(a)) in x's layout.
  m.def("gated_tanh(Tensor x, int dim) -> Tensor");
  m.def("gated_tanh_backward(Tensor grad, Tensor x, int dim) -> Tensor");

  // The exact (erf) GELU of a matrix product plus its bias (Hendrycks & Gimpel 2016): out = GELU(z + bias), z [M, N]
  // float32 or float64 (any strides), bias [N]. The backward returns grad_z = grad * GELU'(z + bias) and grad_bias =
  // the column sums of grad_z (summed in double, the same bits for any number of threads).
  m.def("bias_gelu(Tensor z, Tensor bias) -> Tensor");
  m.def("bias_gelu_backward(Tensor grad, Tensor z, Tensor bias) -> (Tensor grad_z, Tensor grad_bias)");
  // The same GELU with its derivative kept for the backward (a training step's forward): (out, derivative) =
  // (GELU(z + bias), GELU'(z + bias)); and that backward from the kept derivative, no erf or exp computed again:
  // grad_z = grad * derivative, grad_bias = the column sums of grad_z (in double, as bias_gelu_backward's). The same
  // bits as bias_gelu and bias_gelu_backward.
  m.def("bias_gelu_keep(Tensor z, Tensor bias) -> (Tensor out, Tensor derivative)");
  m.def("bias_gelu_backward_kept(Tensor grad, Tensor derivative) -> (Tensor grad_z, Tensor grad_bias)");

  // The input of a normalizing-flow step with a fixed permutation (Glow's ActNorm, then the permutation, then the
  // coupling's split; Kingma & Dhariwal 2018), read from the previous step's halves: x = [x_a, x_b] (columns; x_a
  // [N, Da], x_b [N, Db] float32 or float64, unit stride on the last dimension), D = Da + Db,
  // v[:, j] = (x[:, perm[j]] + bias[perm[j]]) * exp(log_scale[perm[j]]) (bias, log_scale [D]; perm [D] int64, a
  // permutation of 0 .. D-1), returned as (v[:, :split], v[:, split:]), each contiguous. The backward takes the
  // gradients of the two outputs, the outputs, log_scale, perm and source_split = Da, and returns the gradients of
  // x_a, x_b, bias and log_scale (column sums in double, the same bits for any number of threads).
  m.def("permute_affine(Tensor x_a, Tensor x_b, Tensor bias, Tensor log_scale, Tensor perm, int split) "
        "-> (Tensor, Tensor)");
  m.def("permute_affine_backward(Tensor grad_a, Tensor grad_b, Tensor v_a, Tensor v_b, Tensor log_scale, "
        "Tensor perm, int source_split) -> (Tensor grad_x_a, Tensor grad_x_b, Tensor grad_bias, "
        "Tensor grad_log_scale)");
}
