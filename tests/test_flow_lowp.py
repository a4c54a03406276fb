"""The flow conditioner with bfloat16 products (bfloat16 operands, float32 results) as one C++ autograd node on MKL's
bfloat16 GEMM (csrc/residual_mlp.cpp, csrc/bf16_gemm.cpp; genad_fast.nn.flow.mlp_function, "bfloat16 products")
against its eager twin, the modules' composite with mlp_function.bf16_product. The node is the float32 node's template
with other products (csrc/residual_mlp.cpp): its backward's formulas are gradchecked in float64 there
(tests/test_flow_model.py); here the bfloat16 instantiation is checked against its twin."""
from __future__ import annotations

import pytest
import torch

from genad_fast._backend import BackendUnavailableError
from genad_fast.nn.flow import mlp_function
from genad_fast.nn.flow.realnvp import AffineCoupling, ResidualMLP

pytestmark = pytest.mark.skipif(not mlp_function.bf16_products_available(),
                                reason="this torch build exports no MKL bfloat16 GEMM (not an x86-64 wheel)")


def _net(d_in: int, d_out: int, hidden: int, n_blocks: int, seed: int) -> ResidualMLP:
    torch.manual_seed(seed)
    net = ResidualMLP(d_in, d_out, hidden, n_blocks)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    return net


def _outputs_and_grads(net, x, weights, backend):
    x = x.detach().clone().requires_grad_(True)
    y = net.forward_low_precision(x, torch.bfloat16, backend)
    grads = torch.autograd.grad((y * weights).sum(), [x, *net.parameters()])
    return y.detach(), grads


def _assert_twin(got: torch.Tensor, want: torch.Tensor, exact: torch.Tensor, name: str = "") -> None:
    """Equal to the order of float32 sums. Where an intermediate is rounded to bfloat16, two sums that differ in
    their last float32 bit can round to neighbouring bfloat16 values (2^-8 apart, relative), and that step carries
    on, so no elementwise tolerance fits every element. What separates the twins must be far smaller than what
    separates either from float32 (``exact``): a node that rounded other values, or at other places, would be as far
    from its twin as from float32."""
    gap_twins = (got - want).norm().item()
    gap_float32 = (want - exact).norm().item()
    if gap_float32 == 0:  # no product in it (the output bias's gradient): the same float32 sum
        assert torch.equal(got, want), name
    else:
        assert gap_twins <= 0.05 * gap_float32, (name, gap_twins, gap_float32)


def _rounded(t: torch.Tensor) -> torch.Tensor:
    return t.bfloat16().float()


def test_bf16_product_is_the_product_of_rounded_operands_forward_and_backward():
    a = torch.randn(9, 30, requires_grad=True)
    b = torch.randn(30, 7, requires_grad=True)
    g = torch.randn(9, 7)
    y = mlp_function.bf16_product(a, b)
    assert torch.equal(y, _rounded(a.detach()) @ _rounded(b.detach()))
    ga, gb = torch.autograd.grad(y, (a, b), g)
    assert torch.equal(ga, _rounded(g) @ _rounded(b.detach()).T)
    assert torch.equal(gb, _rounded(a.detach()).T @ _rounded(g))
    assert not torch.equal(y, a.detach() @ b.detach())  # the rounding did happen


@pytest.mark.parametrize("n_blocks", [0, 2])
@pytest.mark.parametrize("shape", [(33, 7, 10, 16), (256, 40, 80, 32), (64, 386, 772, 128)])
def test_the_node_equals_its_eager_twin(n_blocks, shape):
    """Output, the input's gradient and every parameter's: the node (MKL's products of bfloat16 operands, float32
    sums) against the modules' composite with bf16_product (the same products of the same rounded values), equal
    to the order of the float32 sums."""
    rows, d_in, d_out, hidden = shape
    net = _net(d_in, d_out, hidden, n_blocks, seed=n_blocks)
    x, weights = torch.randn(rows, d_in), torch.randn(rows, d_out)
    y_node, g_node = _outputs_and_grads(net, x, weights, "cpu")
    y_eager, g_eager = _outputs_and_grads(net, x, weights, "eager")
    xf = x.clone().requires_grad_(True)
    y_exact = net(xf, "cpu")
    g_exact = torch.autograd.grad((y_exact * weights).sum(), [xf, *net.parameters()])
    assert y_node.dtype == torch.float32
    assert "ResidualMLP" in net.forward_low_precision(x, torch.bfloat16, "cpu").grad_fn.name()
    _assert_twin(y_node, y_eager, y_exact.detach(), "output")
    names = ["x"] + [n for n, _ in net.named_parameters()]
    for name, a, b, e in zip(names, g_node, g_eager, g_exact):
        assert a.dtype == torch.float32 and a.shape == b.shape, name
        _assert_twin(a, b, e, name)
    with torch.no_grad():
        assert torch.equal(net.forward_low_precision(x, torch.bfloat16, "cpu"), y_node)  # the no-grad path


def test_bf16_products_stay_near_float32():
    """Relative to the float32 conditioner, the bfloat16 operands move the output by about their rounding (2^-9
    relative per operand), never more than a few percent of its scale."""
    net = _net(386, 772, 128, 2, seed=1)
    x = torch.randn(128, 386)
    with torch.no_grad():
        exact = net(x, "cpu")
        low = net.forward_low_precision(x, torch.bfloat16, "cpu")
    assert not torch.equal(low, exact)
    assert ((low - exact).abs().max() / exact.abs().max()).item() < 2e-2


def test_the_output_bias_gradient_is_the_float32_sum():
    net = _net(12, 24, 16, 1, seed=3)
    x, weights = torch.randn(500, 12), torch.randn(500, 24)
    _, grads = _outputs_and_grads(net, x, weights, "cpu")
    assert torch.equal(grads[-1], weights.sum(0))


def test_no_second_derivative_frozen_parameters_and_an_input_without_gradient():
    net = _net(9, 14, 16, 2, seed=4)
    x, weights = torch.randn(40, 9), torch.randn(40, 14)
    _, full = _outputs_and_grads(net, x, weights, "cpu")
    net.inp.weight.requires_grad_(False)
    y = net.forward_low_precision(x, torch.bfloat16, "cpu")
    grads = torch.autograd.grad((y * weights).sum(), [p for p in net.parameters() if p.requires_grad])
    for g, e in zip(grads, full[2:]):
        assert torch.equal(g, e)
    xg = x.clone().requires_grad_(True)
    y = net.forward_low_precision(xg, torch.bfloat16, "cpu")
    with pytest.raises(RuntimeError, match="bfloat16 products's compiled backward is not differentiable"):
        torch.autograd.grad(y.sum(), xg, create_graph=True)


def test_bad_calls_are_named():
    net = _net(4, 6, 8, 1, seed=0)
    with pytest.raises(RuntimeError, match="residual_mlp_train_bf16: expected 4 \\+ 4·n_blocks = 8 parameters"):
        mlp_function.conditioner_train_bf16(torch.randn(3, 4), 1, net._fused_parameters()[:-1])
    with pytest.raises(RuntimeError, match="residual_mlp_forward_bf16: bfloat16 products run on float32 CPU"):
        mlp_function.conditioner_forward_bf16(torch.randn(3, 4, dtype=torch.float64), 1,
                                              [p.double() for p in net._fused_parameters()])
    with pytest.raises(ValueError, match="bfloat16 on float32 inputs, got torch.float16"):
        net.forward_low_precision(torch.randn(3, 4), torch.float16, "cpu")


def test_a_backend_without_the_fused_conditioner_is_an_error(monkeypatch):
    from genad_fast.nn.flow import realnvp

    net = _net(4, 6, 8, 1, seed=0)
    monkeypatch.setattr(realnvp, "select", lambda op, backend, device: "triton")
    with pytest.raises(BackendUnavailableError, match="not 'triton'"):
        net.forward_low_precision(torch.randn(3, 4), torch.bfloat16, "cpu")


def test_a_coupling_routes_bfloat16_products_through_the_node():
    """AffineCoupling with bfloat16 products on a compiled backend runs the node (in its autograd graph); on the
    eager backend, the composite. The same conditioner output up to the sums' order, so nearly the same coupling."""
    torch.manual_seed(1)
    coupling = AffineCoupling(12, 16, 1, clamp=2.0)
    with torch.no_grad():
        for p in coupling.parameters():
            p.normal_(0.0, 0.2)
    x = torch.randn(20, 12)
    outs = {b: coupling(x, backend=b, matmul_dtype=torch.bfloat16) for b in ("cpu", "eager")}
    exact = coupling(x, backend="cpu")
    assert "ResidualMLP" in _graph_names(outs["cpu"][0].grad_fn)
    assert "ResidualMLP" not in _graph_names(outs["eager"][0].grad_fn)
    for a, b, e in zip(outs["cpu"], outs["eager"], exact):
        _assert_twin(a.detach(), b.detach(), e.detach())


def _graph_names(fn, seen=None) -> str:
    seen = set() if seen is None else seen
    if fn is None or fn in seen:
        return ""
    seen.add(fn)
    return fn.name() + " " + " ".join(_graph_names(nxt, seen) for nxt, _ in fn.next_functions)


def test_the_bf16_node_in_threads_sharing_one_module():
    """Threads that share one conditioner run the node (the GIL released) and get the results of running alone."""
    from concurrent.futures import ThreadPoolExecutor

    net = _net(24, 40, 32, 2, seed=8)
    xs = [torch.randn(64, 24, requires_grad=True) for _ in range(6)]

    def run(x):
        y = net.forward_low_precision(x, torch.bfloat16, "cpu")
        return y.detach(), torch.autograd.grad((y * y).sum(), [x, *net.parameters()])

    alone = [run(x) for x in xs]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(run, xs))
    for (y1, g1), (y2, g2) in zip(alone, together):
        assert torch.equal(y1, y2) and all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_a_flow_detector_trains_with_bfloat16_products():
    """FlowDetector(train_dtype="bfloat16") fits through the node (cpu) and through the eager twin, close to each other
    and to float32, with finite scores."""
    import numpy as np

    from genad_fast.detectors.flow import FlowDetector

    rng = np.random.default_rng(0)
    x = np.sin(np.arange(900)[:, None] / 9.0 + np.arange(3)) + 0.1 * rng.normal(size=(900, 3))
    small = dict(window=24, n_steps=2, hidden=16, n_blocks=1, epochs=3, seed=0, verbose=False)
    fits = {name: FlowDetector(**small, **kw).fit(x) for name, kw in {
        "node": {"train_dtype": "bfloat16"}, "eager": {"train_dtype": "bfloat16", "backend": "eager"},
        "float32": {"train_dtype": "float32"}}.items()}
    scores = {name: det.decision_function(x[:200]) for name, det in fits.items()}
    for name, s in scores.items():
        assert np.isfinite(s).all(), name
    assert not np.array_equal(scores["node"], scores["float32"])  # bfloat16 operands did change the fit
    for name in ("eager", "float32"):
        np.testing.assert_allclose(fits["node"].history_.train_loss, fits[name].history_.train_loss, rtol=5e-2,
                                   atol=5e-2)


@pytest.mark.parametrize("rows", [0, 1, 3])
def test_the_bf16_node_on_few_rows(rows):
    """No rows, one row (a batch's remainder), a few: the node's shapes and values as its twin's, gradients included."""
    net = _net(10, 16, 8, 2, seed=5)
    x, weights = torch.randn(rows, 10), torch.randn(rows, 16)
    y_node, g_node = _outputs_and_grads(net, x, weights, "cpu")
    y_eager, g_eager = _outputs_and_grads(net, x, weights, "eager")
    assert y_node.shape == (rows, 16)
    for a, b in zip([y_node, *g_node], [y_eager, *g_eager]):
        assert a.shape == b.shape and torch.isfinite(a).all()
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-2 * max(b.abs().max().item() if b.numel() else 0.0, 1.0))


def test_the_bf16_node_carries_nan_and_large_values():
    """A NaN input row stays NaN in its output (never a finite score) and leaves the other rows alone; inputs near
    float32's range go through bfloat16's equal range without becoming inf or NaN where float32 does not."""
    net = _net(6, 10, 8, 1, seed=6)
    x = torch.randn(4, 6)
    x[1, 2] = float("nan")
    with torch.no_grad():
        y = net.forward_low_precision(x, torch.bfloat16, "cpu")
        clean = net.forward_low_precision(x[[0, 2, 3]], torch.bfloat16, "cpu")
    assert torch.isnan(y[1]).all() and torch.equal(y[[0, 2, 3]], clean)
    big = torch.tensor([[1e30] * 6, [-1e30] * 6, [1e30, -1e30] * 3])
    with torch.no_grad():
        exact, low = net(big, "cpu"), net.forward_low_precision(big, torch.bfloat16, "cpu")
    assert torch.isfinite(exact).all() and torch.isfinite(low).all()
    # bfloat16 operands: within a few of its 2^-8 roundings of the float32 values, relative to their scale
    torch.testing.assert_close(low, exact, rtol=0.0, atol=2e-2 * exact.abs().max().item())
