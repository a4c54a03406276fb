"""The flow conditioner with bfloat16 products as one C++ autograd node (genad_fast.nn.flow.mlp_function, "Low
precision"; csrc/residual_mlp_lowp.cpp) against its eager twin, the modules under torch.autocast."""
from __future__ import annotations

import pytest
import torch

from genad_fast._backend import BackendUnavailableError
from genad_fast.nn.flow.realnvp import ResidualMLP


def _net(d_in: int, d_out: int, hidden: int, n_blocks: int, seed: int, dtype=torch.float32) -> ResidualMLP:
    torch.manual_seed(seed)
    net = ResidualMLP(d_in, d_out, hidden, n_blocks).to(dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    return net


def _outputs_and_grads(net, x, weights, backend, dtype):
    x = x.detach().clone().requires_grad_(True)
    y = net.forward_low_precision(x, dtype, backend)
    grads = torch.autograd.grad((y * weights).sum(), [x, *net.parameters()])
    return y.detach(), grads


@pytest.mark.parametrize("n_blocks", [0, 2])
@pytest.mark.parametrize("shape", [(33, 7, 10, 16), (256, 40, 80, 32)])
def test_the_node_is_autocasts_arithmetic(n_blocks, shape):
    """Output, the input's gradient and the weights' gradients: the modules under autocast, bit for bit (the same
    ATen calls on the same bfloat16 operands). The bias gradients are the same row sums kept in float32, where
    autocast rounds them to bfloat16: equal to within bfloat16's rounding, and nearer the float64 sum."""
    rows, d_in, d_out, hidden = shape
    net = _net(d_in, d_out, hidden, n_blocks, seed=n_blocks)
    x, weights = torch.randn(rows, d_in), torch.randn(rows, d_out)
    y_node, g_node = _outputs_and_grads(net, x, weights, "cpu", torch.bfloat16)
    y_eager, g_eager = _outputs_and_grads(net, x, weights, "eager", torch.bfloat16)
    assert y_node.dtype == torch.float32 and torch.equal(y_node, y_eager)
    names = ["x"] + [n for n, _ in net.named_parameters()]
    for name, a, b in zip(names, g_node, g_eager):
        assert a.dtype == torch.float32 and a.shape == b.shape, name
        if name.endswith("bias"):
            torch.testing.assert_close(a, b, rtol=2 ** -7, atol=2 ** -7 * b.abs().max().item(), msg=name)
        else:
            assert torch.equal(a, b), name
    with torch.no_grad():
        assert torch.equal(net.forward_low_precision(x, torch.bfloat16, "cpu"), y_node)  # the no-grad path


def test_the_bias_gradient_keeps_its_float32_sum():
    """The output bias's gradient is the float32 sum of the float32 output gradient: what autograd gives a float32
    bias (no bfloat16 rounding), unlike autocast's."""
    net = _net(12, 24, 16, 1, seed=3)
    x, weights = torch.randn(500, 12), torch.randn(500, 24)
    _, grads = _outputs_and_grads(net, x, weights, "cpu", torch.bfloat16)
    assert torch.equal(grads[-1], weights.sum(0))


def test_the_node_in_float64_gradcheck_and_no_second_derivative():
    """The node is written for any dtype of its products: in float64 it is the conditioner's exact derivative
    (gradcheck), and a second derivative is refused by name."""
    net = _net(4, 6, 8, 1, seed=6, dtype=torch.float64)
    names = [n for n, _ in net.named_parameters()]

    def run(x, *params):
        return _lowp_by_name(net, dict(zip(names, params)), x)

    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
    assert torch.autograd.gradcheck(run, (x, *params))
    y = run(x, *params)
    with pytest.raises(RuntimeError, match="low-precision conditioner.*backend='eager'"):
        torch.autograd.grad(y.sum(), x, create_graph=True)


def _lowp_by_name(net, params: dict, x):
    """The float64 node on ``params`` (by module name), in the fused order of ResidualMLP._fused_parameters."""
    from genad_fast.nn.flow.mlp_function import conditioner_train_lowp

    order = ["inp.weight", "inp.bias"]
    for k in range(len(net.blocks)):
        order += [f"blocks.{k}.1.weight", f"blocks.{k}.1.bias", f"blocks.{k}.3.weight", f"blocks.{k}.3.bias"]
    order += ["out.weight", "out.bias"]
    assert sorted(order) == sorted(params)
    return conditioner_train_lowp(x, len(net.blocks), [params[n] for n in order], torch.float64)


def test_frozen_parameters_and_an_input_without_gradient():
    net = _net(9, 14, 16, 2, seed=4)
    x, weights = torch.randn(40, 9), torch.randn(40, 14)
    _, full = _outputs_and_grads(net, x, weights, "cpu", torch.bfloat16)
    net.inp.weight.requires_grad_(False)
    y = net.forward_low_precision(x, torch.bfloat16, "cpu")
    grads = torch.autograd.grad((y * weights).sum(), [p for p in net.parameters() if p.requires_grad])
    for g, e in zip(grads, full[2:]):
        assert torch.equal(g, e)


def test_wrong_parameter_count_is_named():
    from genad_fast.nn.flow.mlp_function import conditioner_forward_lowp, conditioner_train_lowp

    net = _net(4, 6, 8, 1, seed=0)
    params = net._fused_parameters()[:-1]
    for fn, name in ((conditioner_train_lowp, "residual_mlp_train_lowp"),
                     (conditioner_forward_lowp, "residual_mlp_forward_lowp")):
        with pytest.raises(RuntimeError, match=f"{name}: expected 4 \\+ 4·n_blocks = 8 parameters"):
            fn(torch.randn(3, 4), 1, params, torch.bfloat16)


def test_a_backend_without_the_fused_conditioner_is_an_error(monkeypatch):
    from genad_fast.nn.flow import realnvp

    net = _net(4, 6, 8, 1, seed=0)
    monkeypatch.setattr(realnvp, "select", lambda op, backend, device: "triton")
    with pytest.raises(BackendUnavailableError, match="not 'triton'"):
        net.forward_low_precision(torch.randn(3, 4), torch.bfloat16, "cpu")


def test_a_coupling_routes_train_dtype_through_the_node():
    """AffineCoupling with bfloat16 products on a compiled backend runs the node (in its autograd graph); on the
    eager backend, autocast's modules. The same conditioner output, so the coupling ops' own rounding apart, the
    same transformed half and log-determinant."""
    from genad_fast.nn.flow.realnvp import AffineCoupling

    torch.manual_seed(1)
    coupling = AffineCoupling(12, 16, 1, clamp=2.0)
    with torch.no_grad():
        for p in coupling.parameters():
            p.normal_(0.0, 0.2)
    x = torch.randn(20, 12)
    outs = {b: coupling(x, backend=b, matmul_dtype=torch.bfloat16) for b in ("cpu", "eager")}
    assert "LowpResidualMLP" in _graph_names(outs["cpu"][0].grad_fn)
    assert "LowpResidualMLP" not in _graph_names(outs["eager"][0].grad_fn)
    for a, b in zip(outs["cpu"], outs["eager"]):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def _graph_names(fn, seen=None) -> str:
    seen = set() if seen is None else seen
    if fn is None or fn in seen:
        return ""
    seen.add(fn)
    return fn.name() + " " + " ".join(_graph_names(nxt, seen) for nxt, _ in fn.next_functions)
