// conv1d_act on the CPU: one stage of a small 1-D convolutional encoder or decoder in one pass per sample,
//   out[n, o, :] = pool(act(bias[o] + Σ_c Σ_j weight[o, c, j] · u[n, c, t + j - k/2])),  u = upsample(x, length)
//
// Why a kernel of our own: a stream scores one window per timestamp, and at that size (8-64 channels, 4-64
// timestamps) ATen's convolution (the thnn im2col path below 16 samples, oneDNN above) plus the separate
// upsampling, activation and pooling passes are ~25 µs per stage of dispatch and allocation around ~1 µs of
// arithmetic. Here one sample's upsampled, zero-padded input is gathered once into a per-thread buffer (any
// strides of x), and blocks of 4 output channels × 2 vectors of timestamps are accumulated in registers with
// vector FMAs (a broadcast tap times a shifted input row), then activated, pooled and stored.
//
// Sums run in x's dtype, bias first, then input channel by channel, tap by tap: another order than ATen's
// convolutions (the eager twin), so results agree to rounding (tests/op_specs/conv1d_act.py states the bound).
// Samples are split over threads (at::parallel_for) once a call holds enough work.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include <genad/host/conv1d_act.h>

#include "kernels.h"

namespace genad::cpu {
namespace CPU_CAPABILITY {
namespace {

constexpr int64_t kMinWorkPerThread = 1 << 16;  // multiply-adds below which a thread is not worth starting

template <class T>
void grow(std::vector<T>& v, int64_t n) {
  if (static_cast<int64_t>(v.size()) < n) v.resize(n);
}


// One output channel's activated sums acc[0 .. Lc) into out[0 .. L_out): copied, or max-pooled by pairs
// (MaxPool1d(2, ceil_mode=True): the last window may hold one value; NaN wins, as in ATen's max_pool1d and
// at::vec::maximum), a vector of outputs at a time from the deinterleaved even and odd sums.
template <class T>
void finish_channel(const T* acc, int64_t Lc, bool pool, T* out) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t VL = Vec::size();
  if (!pool) {
    std::copy(acc, acc + Lc, out);
    return;
  }
  int64_t i = 0;
  for (; 2 * (i + VL) <= Lc; i += VL) {
    const auto [even, odd] = at::vec::deinterleave2(Vec::loadu(acc + 2 * i), Vec::loadu(acc + 2 * i + VL));
    at::vec::maximum(even, odd).store(out + i);
  }
  for (; 2 * i < Lc; ++i) {
    T m = acc[2 * i];
    if (2 * i + 1 < Lc) {
      const T v = acc[2 * i + 1];
      if (v > m || std::isnan(v)) m = v;
    }
    out[i] = m;
  }
}

// The register block: kBlockOut output channels × 2 groups, 8 accumulators (of at::vec's registers), independent
// chains, so the FMAs' latency overlaps instead of serialising. A group is a vector of timestamps: two vectors of one
// sample (kPairSamples false; an output of one vector uses kBlockOut 8 and one group), or the same vector of two
// samples (kPairSamples true, for outputs of one vector: each input load serves 4 channels, where an 8 × 1 block
// would load 8 broadcast weights per input vector and be bound by the loads).
template <class T, int64_t kBlockOut, int64_t kGroups, bool kPairSamples>
void conv1d_act_samples(const at::Tensor& x, const T* w, const T* b, const host::Conv1dActArgs& a, bool has_act,
                        T slope, bool pool, T* out, int64_t n0, int64_t n1) {
  static_assert(kBlockOut * kGroups == 8, "the micro-kernel below has 8 accumulators");
  static_assert(!kPairSamples || kGroups == 2, "a pair of samples is two groups");
  using Vec = at::vec::Vectorized<T>;
  constexpr int64_t VL = Vec::size();
  constexpr int64_t V = kGroups;
  constexpr int64_t TB = (kPairSamples ? 1 : kGroups) * VL;  // timestamps per block
  constexpr int64_t SB = kPairSamples ? 2 : 1;               // samples per block
  const int64_t C_in = a.C_in, L_in = a.L_in, k = a.k, Lc = a.L_conv, Lp = a.length + 2 * a.pad;
  const int64_t n_tb = (Lc + TB - 1) / TB;  // timestamp blocks
  const int64_t sx0 = x.stride(0), sx1 = x.stride(1), sx2 = x.stride(2);
  const T* xp = x.data_ptr<T>();
  // per-thread scratch kept between calls (a stream calls this per timestamp): per sample of a block its padded
  // input with TB values of slack past its end (a block's last loads may run past Lc: those sums are never
  // stored), and the sums of a block of channels
  thread_local std::vector<T> u_buf, acc_buf;
  const int64_t u_stride = C_in * Lp + TB + k;
  const int64_t acc_stride = kBlockOut * n_tb * TB;
  grow(u_buf, SB * u_stride);
  grow(acc_buf, SB * acc_stride);
  T* const u = u_buf.data();
  T* const acc = acc_buf.data();
  std::vector<int64_t> src(a.length);
  for (int64_t i = 0; i < a.length; ++i) src[i] = host::nearest_source(i, L_in, a.length);
  for (int64_t n = n0; n < n1; n += SB) {
    const int64_t ns = std::min<int64_t>(SB, n1 - n);  // a last odd sample fills both halves of the pair
    for (int64_t sm = 0; sm < SB; ++sm) {
      // u[c, :] = [0]*pad, x[n, c, src(0..length-1)], [0]*(Lp - pad - length)
      T* us = u + sm * u_stride;
      const T* xs = xp + (n + std::min(sm, ns - 1)) * sx0;
      for (int64_t c = 0; c < C_in; ++c) {
        T* uc = us + c * Lp;
        const T* xc = xs + c * sx1;
        std::fill(uc, uc + a.pad, T(0));
        for (int64_t i = 0; i < a.length; ++i) uc[a.pad + i] = xc[src[i] * sx2];
        std::fill(uc + a.pad + a.length, uc + Lp, T(0));
      }
    }
    for (int64_t o0 = 0; o0 < a.C_out; o0 += kBlockOut) {
      const int64_t ob = std::min(kBlockOut, a.C_out - o0);
      // the block's weight rows; a short last block repeats its last channel (computed, not stored)
      const T* wo[kBlockOut];
      for (int64_t r = 0; r < kBlockOut; ++r) wo[r] = w + (o0 + std::min(r, ob - 1)) * C_in * k;
      for (int64_t tb = 0; tb < n_tb; ++tb) {
        const int64_t t0 = tb * TB;
        // the 8 accumulators as named locals (an array of them is kept on the stack by GCC, one load and store
        // per FMA): accumulator i holds output channel i / V, group i % V
        auto bias_of = [&](int64_t i) { return Vec(b ? b[o0 + std::min(i / V, ob - 1)] : T(0)); };
        Vec s0 = bias_of(0), s1 = bias_of(1), s2 = bias_of(2), s3 = bias_of(3), s4 = bias_of(4), s5 = bias_of(5),
            s6 = bias_of(6), s7 = bias_of(7);
        const T *w0 = wo[0 / V], *w1 = wo[1 / V], *w2 = wo[2 / V], *w3 = wo[3 / V], *w4 = wo[4 / V],
                *w5 = wo[5 / V], *w6 = wo[6 / V], *w7 = wo[7 / V];
        // group 1's input: the next vector of timestamps, or the same one of the pair's second sample
        const int64_t in1_offset = kPairSamples ? u_stride : VL;
        for (int64_t c = 0; c < C_in; ++c) {
          const T* uc = u + c * Lp + t0;
          for (int64_t j = 0; j < k; ++j) {
            const int64_t q = c * k + j;
            const Vec in0 = Vec::loadu(uc + j);
            const Vec in1 = V == 2 ? Vec::loadu(uc + j + in1_offset) : in0;
            s0 = at::vec::fmadd(Vec(w0[q]), in0, s0);
            s1 = at::vec::fmadd(Vec(w1[q]), V == 2 ? in1 : in0, s1);
            s2 = at::vec::fmadd(Vec(w2[q]), in0, s2);
            s3 = at::vec::fmadd(Vec(w3[q]), V == 2 ? in1 : in0, s3);
            s4 = at::vec::fmadd(Vec(w4[q]), in0, s4);
            s5 = at::vec::fmadd(Vec(w5[q]), V == 2 ? in1 : in0, s5);
            s6 = at::vec::fmadd(Vec(w6[q]), in0, s6);
            s7 = at::vec::fmadd(Vec(w7[q]), V == 2 ? in1 : in0, s7);
          }
        }
        // the activation on the registers (NaN > 0 is false: NaN·slope stays NaN), then into the channel's sums
        const Vec slope_v(slope), zero(T(0));
        auto store = [&](int64_t i, const Vec& sum) {
          const Vec v = has_act ? Vec::blendv(sum * slope_v, sum, sum > zero) : sum;
          const int64_t r = i / V, g = i % V;
          T* dst = kPairSamples ? acc + g * acc_stride + (r * n_tb + tb) * TB
                                : acc + (r * n_tb + tb) * TB + g * VL;
          v.store(dst);
        };
        store(0, s0), store(1, s1), store(2, s2), store(3, s3), store(4, s4), store(5, s5), store(6, s6), store(7, s7);
      }
      for (int64_t sm = 0; sm < ns; ++sm) {
        T* on = out + (n + sm) * a.C_out * a.L_out;
        for (int64_t r = 0; r < ob; ++r) {
          finish_channel(acc + sm * acc_stride + r * n_tb * TB, Lc, pool, on + (o0 + r) * a.L_out);
        }
      }
    }
  }
}

at::Tensor conv1d_act_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                          int64_t length, std::optional<double> slope, bool pool) {
  const host::Conv1dActArgs a = host::check_conv1d_act(host::kCPU, x, weight, bias, length, pool);
  at::Tensor out = at::empty({a.N, a.C_out, a.L_out}, x.options().memory_format(at::MemoryFormat::Contiguous));
  if (a.N == 0) return out;
  const at::Tensor w = weight.contiguous();
  const std::optional<at::Tensor> b = bias ? std::optional<at::Tensor>(bias->contiguous()) : std::nullopt;
  const int64_t work = a.C_out * a.C_in * a.k * a.L_conv;  // multiply-adds per sample
  const int64_t grain = std::max<int64_t>(1, kMinWorkPerThread / std::max<int64_t>(work, 1));
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "conv1d_act", [&] {
    const scalar_t* bp = b ? b->data_ptr<scalar_t>() : nullptr;
    const scalar_t s = static_cast<scalar_t>(slope.value_or(0.0));
    scalar_t* op = out.data_ptr<scalar_t>();
    const bool one_vector = a.L_conv <= at::vec::Vectorized<scalar_t>::size();
    const scalar_t* wp = w.data_ptr<scalar_t>();
    const bool has_act = slope.has_value();
    at::parallel_for(0, a.N, grain, [&](int64_t n0, int64_t n1) {
      if (one_vector && n1 - n0 >= 2) {  // pairs of samples
        conv1d_act_samples<scalar_t, 4, 2, true>(x, wp, bp, a, has_act, s, pool, op, n0, n1);
      } else if (one_vector) {
        conv1d_act_samples<scalar_t, 8, 1, false>(x, wp, bp, a, has_act, s, pool, op, n0, n1);
      } else {
        conv1d_act_samples<scalar_t, 4, 2, false>(x, wp, bp, a, has_act, s, pool, op, n0, n1);
      }
    });
  });
  return out;
}

}  // namespace

GENAD_REGISTER_KERNEL(conv1d_act_stub, &conv1d_act_cpu);

}  // namespace CPU_CAPABILITY
}  // namespace genad::cpu
