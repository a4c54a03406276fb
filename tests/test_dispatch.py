"""The op layer's dispatch object (genad_fast/ops/dispatch.py): the backend of every op chosen once, per device,
from backend= or GENAD_FAST_BACKEND; per-op capabilities (linear_act, conv1d_act, gated_tanh, bias_gelu and
permute_affine have no Triton kernel); kernel handles."""
import importlib.util

import pytest
import torch

from genad_fast import BackendUnavailableError, _ext, ops
from genad_fast.ops import Dispatch
from genad_fast.ops.schema import IMPLEMENTED, SCHEMAS

needs_ext = pytest.mark.skipif(_ext._C is None, reason="the compiled extension is not built")
needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")


def _coupling_inputs():
    g = torch.Generator().manual_seed(0)
    return torch.randn(5, 3, generator=g), torch.randn(5, 6, generator=g)


@needs_ext
def test_auto_on_cpu_tensors_runs_every_op_on_the_cpu_kernels():
    d = Dispatch.build("auto", "cpu")
    assert d.requested == "auto" and d.device == torch.device("cpu")
    assert set(d.ops) == set(SCHEMAS)
    for op in d.ops:
        assert d.backend_of(op) == "cpu" and d.has(op)
        assert d.kernel(op) is getattr(torch.ops.genad_fast, op)


def test_eager_runs_every_op_on_the_reference_and_has_no_kernel():
    d = Dispatch.build("eager", "cpu")
    for op in d.ops:
        assert d.backend_of(op) == "eager" and not d.has(op)
    with pytest.raises(BackendUnavailableError, match="coupling_forward runs on the eager backend"):
        d.kernel("coupling_forward")


@needs_triton
def test_triton_says_per_op_which_kernels_it_has(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "1")   # Triton runs on CPU tensors only in its interpreter
    d = Dispatch.build("triton", "cpu")
    assert not d.has("linear_act")                 # no Triton kernel: a question, not an exception
    with pytest.raises(BackendUnavailableError, match="linear_act has no 'triton' implementation"):
        d.backend_of("linear_act")
    with pytest.raises(BackendUnavailableError, match="linear_act has no 'triton' implementation"):
        ops.linear_act(torch.randn(3, 5), torch.randn(4, 5), backend=d)
    assert not d.has("conv1d_act")                 # no Triton kernel either (ops/conv.py says why)
    with pytest.raises(BackendUnavailableError, match="conv1d_act has no 'triton' implementation"):
        d.backend_of("conv1d_act")
    with pytest.raises(BackendUnavailableError, match="conv1d_act has no 'triton' implementation"):
        ops.conv1d_act(torch.randn(2, 3, 8), torch.randn(4, 3, 3), backend=d)
    for op in ("gated_tanh", "gated_tanh_backward"):  # no Triton kernel either (ops/gated.py says why)
        assert not d.has(op)
        with pytest.raises(BackendUnavailableError, match=f"{op} has no 'triton' implementation"):
            d.backend_of(op)
    with pytest.raises(BackendUnavailableError, match="gated_tanh has no 'triton' implementation"):
        ops.gated_tanh(torch.randn(2, 6, 3), backend=d)
    for op in ("bias_gelu", "bias_gelu_backward"):  # no Triton kernel either (ops/gelu.py says why)
        assert not d.has(op)
        with pytest.raises(BackendUnavailableError, match=f"{op} has no 'triton' implementation"):
            d.backend_of(op)
    with pytest.raises(BackendUnavailableError, match="bias_gelu has no 'triton' implementation"):
        ops.bias_gelu(torch.randn(4, 3), torch.randn(3), backend=d)
    for op in ("permute_affine", "permute_affine_backward"):  # no Triton kernel either (ops/permute.py says why)
        assert not d.has(op)
        with pytest.raises(BackendUnavailableError, match=f"{op} has no 'triton' implementation"):
            d.backend_of(op)
    with pytest.raises(BackendUnavailableError, match="permute_affine has no 'triton' implementation"):
        ops.permute_affine(torch.randn(4, 3), torch.randn(4, 2), torch.randn(5), torch.randn(5), torch.randperm(5), 2,
                           backend=d)
    without = ("linear_act", "conv1d_act", "gated_tanh", "gated_tanh_backward", "bias_gelu", "bias_gelu_backward",
               "bias_gelu_keep", "bias_gelu_backward_kept", "permute_affine", "permute_affine_backward")
    for op in (op for op in SCHEMAS if op not in without):
        assert "triton" in IMPLEMENTED[op]
        assert d.backend_of(op) == "triton" and d.kernel(op) is getattr(torch.ops.genad_fast_triton, op)


def test_a_backend_that_cannot_run_fails_when_the_dispatch_is_built(monkeypatch):
    with pytest.raises(BackendUnavailableError, match="CUDA"):
        Dispatch.build("cuda", "cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(BackendUnavailableError, match="triton"):
        Dispatch.build("triton", "cpu")
    with pytest.raises(ValueError, match="unknown backend"):
        Dispatch.build("fast", "cpu")
    with pytest.raises(ValueError, match="unknown op 'coupling'"):
        Dispatch.build("eager", "cpu").has("coupling")


def test_the_environment_is_read_once_when_the_dispatch_is_built(monkeypatch):
    x, h = _coupling_inputs()
    monkeypatch.setenv("GENAD_FAST_BACKEND", "eager")
    d = Dispatch.build(None, "cpu")
    assert d.requested == "eager"
    monkeypatch.setenv("GENAD_FAST_BACKEND", "cuda")   # an op that read it now would raise
    with pytest.raises(BackendUnavailableError):
        ops.coupling_forward(x, h)
    y, logdet = ops.coupling_forward(x, h, backend=d)
    ref = ops.coupling_forward(x, h, backend="eager")
    assert torch.equal(y, ref[0]) and torch.equal(logdet, ref[1])


@needs_ext
def test_ops_given_a_dispatch_run_its_choice():
    x, h = _coupling_inputs()
    for name in ("cpu", "eager"):
        d = Dispatch.build(name, "cpu")
        for got, want in zip(ops.coupling_forward(x, h, 1.5, backend=d), ops.coupling_forward(x, h, 1.5, backend=name)):
            assert torch.equal(got, want)
        assert torch.equal(ops.randn((3, 7), 5, 2, backend=d), ops.randn((3, 7), 5, 2, backend=name))


def test_tensors_of_another_device_type_are_refused():
    x, h = _coupling_inputs()
    d = Dispatch.build("auto", "meta")
    assert not d.has("coupling_forward")   # auto on meta tensors: the reference
    with pytest.raises(ValueError, match="tensors are on cpu, but the backend was chosen for meta tensors"):
        ops.coupling_forward(x, h, backend=d)


def test_repr_lists_the_choice_per_op():
    text = repr(Dispatch.build("eager", "cpu"))
    assert text.startswith("Dispatch(requested='eager', device='cpu'") and "linear_act=eager" in text


def test_kernel_or_eager_reads_a_name_as_the_ops_do(monkeypatch):
    """A module's choice for an op among ATen ops (the denoiser's gated units, the flow's conditioner GELUs): the
    backend itself where it has the op's kernel, else the composite; a name in any case, "auto", and None (the
    environment's choice) resolved as the ops resolve them, never silently the composite for a backend that has
    the kernel, and never an error for one that lacks it."""
    from genad_fast.ops.dispatch import kernel_or_eager

    monkeypatch.delenv("GENAD_FAST_BACKEND", raising=False)
    for op in ("gated_tanh", "bias_gelu", "permute_affine"):
        assert kernel_or_eager(op, "cpu") == "cpu" and kernel_or_eager(op, " CPU ") == "cpu"
        assert kernel_or_eager(op, "cuda") == "cuda"
        assert kernel_or_eager(op, "auto") == "auto" and kernel_or_eager(op, None) == "auto"
        assert kernel_or_eager(op, "triton") == "eager" and kernel_or_eager(op, "Triton") == "eager"
        assert kernel_or_eager(op, "eager") == "eager"
        cpu = Dispatch.build("cpu", "cpu")
        assert kernel_or_eager(op, cpu) is cpu
        assert kernel_or_eager(op, Dispatch.build("eager", "cpu")) == "eager"
        monkeypatch.setenv("GENAD_FAST_BACKEND", "triton")   # None reads it, as the ops do
        assert kernel_or_eager(op, None) == "eager"
        monkeypatch.setenv("GENAD_FAST_BACKEND", "cpu")
        assert kernel_or_eager(op, None) == "cpu"
        monkeypatch.delenv("GENAD_FAST_BACKEND")
        with pytest.raises(ValueError, match="unknown backend"):
            kernel_or_eager(op, "gpu")
    # the ops themselves run under what it returns
    x = torch.randn(3, 8, 5)
    for backend in ("auto", "CPU", "triton"):
        torch.testing.assert_close(ops.gated_tanh(x, 1, backend=kernel_or_eager("gated_tanh", backend)),
                                   ops.gated_tanh(x, 1, backend="eager"), rtol=1e-6, atol=1e-6)
