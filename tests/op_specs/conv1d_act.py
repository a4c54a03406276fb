"""Spec of ``conv1d_act``: one stage of a small 1-D convolutional encoder or decoder in one call:

    u = upsample_nearest(x, length),  y = bias + conv1d(u, weight, padding=k // 2),
    out = MaxPool1d(2, ceil_mode=True)(LeakyReLU(y, slope))   (no activation when slope is None; pool optional)

x ``[N, C_in, L_in]`` float32 or float64 in any layout, weight ``[C_out, C_in, k]``, bias ``[C_out]``; out
``[N, C_out, L_out]``, ``L_c = length + 2·(k // 2) - k + 1`` (``length + 1`` for an even k), ``L_out = ceil(L_c / 2)``
when pooling. No autograd, no Triton kernel. Oracle: :func:`genad_fast.reference.conv.conv1d_act`.
"""
from __future__ import annotations

import math

import pytest
import torch

from genad_fast import BackendUnavailableError, ops
from genad_fast.nn.blocks import NEGATIVE_SLOPE, ConvDecoder, ConvEncoder
from genad_fast.ops.conv import conv1d_act_length
from genad_fast.reference import conv as ref
from op_specs.compare import EXACT, F32, F64, Tolerances, close, tol
from op_specs.targets import LARGE, MEDIUM, Target, on_gpu, sized

OPS = ("conv1d_act",)
IMPLEMENTED = ("eager", "cpu", "cuda")
# The input's length after upsampling, as a function of L_in: none, ATen's exact factor 2 (i >> 1), and ratios
# whose source index comes from floor(i · L_in / length) in float32 (5 -> 11, 7 -> 16 at those lengths).
UPSAMPLE = {
    "none": lambda n: n,
    "x2": lambda n: 2 * n,
    "2L+1": lambda n: 2 * n + 1,         # 5 -> 11
    "16/7": lambda n: -(-16 * n // 7),   # 7 -> 16
}
OPTIONS = {
    "plain": dict(),
    "bias": dict(use_bias=True),
    "relu": dict(use_bias=True, slope=0.0),
    "encoder": dict(use_bias=True, slope=0.1, pool=True),             # Conv1d -> LeakyReLU -> MaxPool1d
    "decoder": dict(use_bias=True, slope=0.1, up="x2"),               # Upsample -> Conv1d -> LeakyReLU
    "decoder-odd": dict(use_bias=True, slope=0.1, up="2L+1"),
    "up-16/7+pool": dict(pool=True, up="16/7"),
    "all": dict(use_bias=True, slope=0.1, pool=True, up="2L+1"),
}
DTYPES = (F32, F64)
KERNEL_SIZES = (1, 3, 4, 5)      # 4: an even kernel, L_c = length + 1
# (N, C_in, C_out, L_in): one of everything (L_c 1, pooled to 1); the vector tail (lengths 2, 5, 33 are no multiple
# of 8 or 16 lanes); output channels no multiple of 4 or 8 (the register block's tail: 7, 9, 13, 70); an empty batch;
# the benchmark's stream stages (64 -> 70 channels, 64 timestamps) on the compiled runners; thousands of samples on
# a GPU.
SHAPES = [(1, 1, 1, 1), (3, 2, 7, 2), (17, 3, 9, 5), (3, 8, 13, 16), (1, 5, 4, 33), (0, 3, 5, 5),
          sized((3, 64, 70, 64), MEDIUM), sized((17, 16, 33, 64), MEDIUM),
          sized(on_gpu((4096, 32, 64, 64), (64, 32, 64, 64)), LARGE)]
LAYOUTS = ("contiguous", "transposed", "every-other-timestep", "broadcast-batch")

# float32: the CPU kernel sums bias first, then channel by channel and tap by tap with FMAs; ATen's convolution
# (im2col + sgemm, or oneDNN) sums in another order. The weights are scaled by 1/sqrt(C_in·k) so an output is O(1),
# but the sum of the |terms| it cancels grows like sqrt(C_in·k), and a reordered sum differs by a few ulps of that:
# atol is the table's value times sqrt(C_in·k) (1.8e-5 at C_in = 64, k = 5), rtol 1e-5; over the runners' shapes the
# worst error seen (5e-6) used 11% of that budget. float64: the same reasoning in 2^-52 (0.2% used). cuda: cuDNN
# (TF32 off) may pick another algorithm than the eager call on the same device.
SUM_TOL = Tolerances({F32: tol(1e-5, 1e-6), F64: tol(1e-12, 1e-13)}, cuda={F32: tol(2e-5, 2e-6)})
# The stages against torch.nn's Conv1d / LeakyReLU / MaxPool1d / Upsample (and blocks.py's networks) in float64.
MODULE_TOL = tol(1e-12)
# CPU runner only: samples are split over threads; each sample's sums are the same whatever the thread.
THREADS_TOL = EXACT


def tolerance(target: Target | str, dtype, c_in: int, k: int) -> dict:
    t = SUM_TOL(target, dtype)
    t["atol"] *= math.sqrt(c_in * k)
    return t


def inputs(n, c_in, c_out, length, k, dtype, device="cpu", seed=0):
    """x [n, c_in, length], weight [c_out, c_in, k] (scaled by 1/sqrt(c_in·k)), bias [c_out]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, c_in, length, generator=g, dtype=F64).to(dtype)
    w = (torch.randn(c_out, c_in, k, generator=g, dtype=F64) / math.sqrt(c_in * k)).to(dtype)
    bias = torch.randn(c_out, generator=g, dtype=F64).to(dtype)
    return [t.to(device) for t in (x, w, bias)]


def stage(target: Target, x, w, bias=None, **kwargs):
    return ops.conv1d_act(x, w, bias, backend=target.backend, **kwargs)


def _oracle(x, w, bias=None, length=None, slope=None, pool=False):
    return ref.conv1d_act(x, w, bias, length, slope, pool)


def _kwargs(option: str, l_in: int, bias) -> tuple[dict, dict]:
    """(the op's keyword arguments, the oracle's) for an option of OPTIONS at input length l_in."""
    o = OPTIONS[option]
    length = UPSAMPLE[o.get("up", "none")](l_in)
    op_kwargs = dict(length=None if o.get("up") is None else length, slope=o.get("slope"), pool=o.get("pool", False))
    oracle = dict(bias=bias if o.get("use_bias") else None, length=length, slope=o.get("slope"),
                  pool=o.get("pool", False))
    return op_kwargs, oracle


def check_not_implemented_says_so(target: Target):
    """A backend without a conv1d_act kernel says so (it is not hidden behind another)."""
    with pytest.raises(BackendUnavailableError, match=f"conv1d_act has no '{target.backend}' implementation"):
        stage(target, *inputs(2, 3, 4, 8, 3, F32, target.dev)[:2])


def check_matches_reference(target: Target, option, dtype, k, n, c_in, c_out, l_in):
    if target.backend not in IMPLEMENTED:
        return check_not_implemented_says_so(target)
    x, w, bias = inputs(n, c_in, c_out, l_in, k, dtype, target.dev)
    op_kwargs, oracle = _kwargs(option, l_in, bias)
    got = stage(target, x, w, oracle["bias"], **op_kwargs)
    want = _oracle(x, w, **oracle)
    l_out = conv1d_act_length(oracle["length"], k, oracle["pool"])
    assert got.shape == want.shape == (n, c_out, l_out), (got.shape, want.shape, (n, c_out, l_out))
    assert got.dtype == dtype and got.device == x.device and got.is_contiguous()
    close(got, want, tolerance(target, dtype, c_in, k))


def check_upsampling_picks_atens_timestamps(target: Target, dtype, l_in, length):
    """Nearest upsampling (and, the op allowing it, downsampling) takes the source timestamps ATen's
    upsample_nearest1d takes: with a one-tap identity weight the output is the upsampled input itself, exactly."""
    x = inputs(3, 2, 2, l_in, 1, dtype, target.dev)[0]
    eye = torch.eye(2, dtype=dtype, device=target.dev)[:, :, None]
    got = stage(target, x, eye, length=length)
    want = torch.nn.functional.interpolate(x, size=length, mode="nearest")
    close(got, want, EXACT)
    assert torch.equal(got, torch.nn.Upsample(size=length, mode="nearest")(x))


def check_is_an_encoder_and_decoder_stage(target: Target):
    """The stages the op replaces, in float64: ``Conv1d(k, padding=k // 2) -> LeakyReLU(0.1) ->
    MaxPool1d(2, ceil_mode=True)`` and ``Upsample(size=L, mode='nearest') -> Conv1d``, alone and as the feature
    stacks of genad_fast.nn.blocks' ConvEncoder (on [N, W, C] windows, transposed: the real use) and
    ConvDecoder."""
    gen = torch.Generator().manual_seed(0)
    dev = target.dev
    with torch.no_grad():
        for k in (3, 4, 5):
            conv = torch.nn.Conv1d(6, 11, k, padding=k // 2).double().to(dev)
            enc = torch.nn.Sequential(conv, torch.nn.LeakyReLU(0.1), torch.nn.MaxPool1d(2, ceil_mode=True))
            dec = torch.nn.Sequential(torch.nn.Upsample(size=23, mode="nearest"), conv)
            x = torch.randn(5, 6, 11, generator=gen, dtype=F64).to(dev)
            close(stage(target, x, conv.weight, conv.bias, slope=0.1, pool=True), enc(x), MODULE_TOL)
            close(stage(target, x, conv.weight, conv.bias, length=23), dec(x), MODULE_TOL)

        window, channels, hidden = 21, 3, (8, 16)   # lengths 21 -> 11 -> 6: odd ones, pooled with ceil_mode
        with torch.random.fork_rng(devices=[]):  # the modules initialise on the CPU
            torch.manual_seed(0)
            encoder = ConvEncoder(window, channels, hidden, 4).double().to(dev)
            decoder = ConvDecoder(window, channels, hidden, 4).double().to(dev)
        windows = torch.randn(6, window, channels, generator=gen, dtype=F64).to(dev)
        h = windows.transpose(1, 2)
        convs = [m for m in encoder.features if isinstance(m, torch.nn.Conv1d)]
        for i, conv in enumerate(convs):
            pooled = encoder.lengths[i + 1] != encoder.lengths[i]
            h = stage(target, h, conv.weight, conv.bias, slope=NEGATIVE_SLOPE, pool=pooled)
        close(h, encoder.features(windows.transpose(1, 2)), MODULE_TOL)

        z = torch.randn(6, *decoder.start_shape, generator=gen, dtype=F64).to(dev)
        h, layers = z, list(decoder.features)
        for i, m in enumerate(layers):
            if isinstance(m, torch.nn.Upsample):
                conv = layers[i + 1]
                last = i + 2 == len(layers)
                h = stage(target, h, conv.weight, conv.bias, length=m.size, slope=None if last else NEGATIVE_SLOPE)
        assert h.shape == (6, channels, window)
        close(h, decoder.features(z), MODULE_TOL)


def layouts(n, c_in, length, dtype, seed, device="cpu"):
    """x [n, c_in, length] in the layouts a caller hands over: contiguous; a transpose of [N, L, C] windows (the
    real use: a stream's windows are [N, W, C]); every other timestep of a longer series; one sample broadcast over
    the batch (stride 0)."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=g, dtype=F64).to(dtype).to(device)

    return {
        "contiguous": rand(n, c_in, length),
        "transposed": rand(n, length, c_in).transpose(1, 2),
        "every-other-timestep": rand(n, c_in, 2 * length)[:, :, ::2],
        "broadcast-batch": rand(1, c_in, length).expand(n, c_in, length),
    }


def check_any_input_layout(target: Target, layout, dtype, n, c_in, c_out, l_in, k):
    """Any layout of x is an input like any other; the result is the reference's on x's contiguous copy, also right
    after a call of another shape that left NaN in the kernel's per-thread scratch buffers."""
    x = layouts(n, c_in, l_in, dtype, 1, target.dev)[layout]
    _, w, bias = inputs(n, c_in, c_out, l_in, k, dtype, target.dev, seed=2)
    stage(target, torch.full((n + 1, c_in + 1, 3 * l_in), float("nan"), dtype=dtype, device=target.dev),
          torch.ones(c_out, c_in + 1, k, dtype=dtype, device=target.dev))  # leaves NaN behind
    for kwargs in (dict(), dict(length=2 * l_in + 1, slope=0.1, pool=True)):
        got = stage(target, x, w, bias, **kwargs)
        want = _oracle(x.contiguous(), w, bias, **kwargs)
        close(got, want, tolerance(target, dtype, c_in, k))


def check_any_weight_and_bias_layout(target: Target):
    """A transposed or strided weight and a strided bias (the kernel makes them contiguous)."""
    x, w, bias = inputs(9, 6, 10, 21, 5, F64, target.dev)
    w_t = w.permute(2, 1, 0).contiguous().permute(2, 1, 0)      # another memory order
    w_strided = torch.stack([w, w], 3)[..., 0]                     # every stride doubled
    bias_strided = torch.stack([bias, bias], 1)[:, 0]              # stride 2
    want = _oracle(x, w, bias, None, 0.1, True)
    for weight in (w_t, w_strided):
        assert not weight.is_contiguous()
        close(stage(target, x, weight, bias_strided, slope=0.1, pool=True), want, tolerance(target, F64, 6, 5))


def check_kernel_takes_any_strides(target: Target):
    """The kernel itself (no Python layer) reads x through its strides: a transpose, a broadcast batch."""
    x, w, bias = inputs(40, 8, 12, 17, 3, F32, target.dev, seed=5)
    for xs in (x.transpose(1, 2).contiguous().transpose(1, 2), x[:1].expand(40, 8, 17), x[:, :, ::2]):
        got = target.ops.conv1d_act(xs, w, bias, 2 * xs.shape[2], 0.1, True)
        close(got, _oracle(xs.contiguous(), w, bias, 2 * xs.shape[2], 0.1, True), tolerance(target, F32, 8, 3))


def check_nan_and_inf_propagate(target: Target):
    """conv, then LeakyReLU, then max pooling, as the reference: a NaN in x spreads over the k taps that read it
    (NaN wins a pooling window); ±inf gives ±inf, or NaN where an inf meets the opposite sign or a zero slope.
    Other samples are untouched."""
    for dtype in DTYPES:
        x, w, bias = inputs(4, 3, 7, 33, 4, dtype, target.dev)
        x[0, 1, 5] = float("nan")
        x[2, 0, 0] = float("inf")
        x[3, 2, 32] = -float("inf")
        for slope in (None, 0.0, 0.1):
            for pool in (False, True):
                for length in (None, 66, 70):
                    got = stage(target, x, w, bias, length=length, slope=slope, pool=pool)
                    want = _oracle(x, w, bias, length, slope, pool)
                    assert got[0].isnan().any() and not got[1].isnan().any() and not got[1].isinf().any()
                    assert torch.equal(got.isnan(), want.isnan())
                    assert torch.equal(got.isinf(), want.isinf())
                    assert torch.equal(got[got.isinf()], want[want.isinf()])
                    close(got, want, tolerance(target, dtype, 3, 4), equal_nan=True)


def check_empty_batch(target: Target):
    """N = 0: an empty output of the right shape, for every option."""
    for option in OPTIONS:
        for k in KERNEL_SIZES:
            x, w, bias = inputs(0, 3, 5, 7, k, F32, target.dev)
            op_kwargs, oracle = _kwargs(option, 7, bias)
            got = stage(target, x, w, oracle["bias"], **op_kwargs)
            assert got.shape == (0, 5, conv1d_act_length(oracle["length"], k, oracle["pool"])), (option, k, got.shape)
            assert got.shape == _oracle(x, w, **oracle).shape and got.dtype == F32


def opcheck_samples(target: Target) -> dict:
    """float32 and float64; bias, slope, pooling and upsampling, and none; a transposed x; an empty batch."""
    samples = []
    for dtype in DTYPES:
        x, w, bias = inputs(5, 4, 6, 9, 3, dtype, target.dev)
        _, w4, _ = inputs(5, 4, 6, 9, 4, dtype, target.dev)
        samples += [(x, w, bias, 9, 0.1, True), (x, w4, None, 19, None, False),
                    (x.transpose(1, 2).contiguous().transpose(1, 2), w4, bias, 18, 0.0, True),
                    (x[:0], w, bias, 9, 0.1, True)]
    return {"conv1d_act": samples}


OPCHECK = ("conv1d_act",)
