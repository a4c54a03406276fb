"""The RealNVP/Glow flow (genad_fast.nn.flow): invertibility, exact log-determinants, exact density."""
import math

import pytest
import torch

from genad_fast._backend import BackendUnavailableError
from genad_fast import ops
from genad_fast.nn.flow import LOG_2PI, RealNVP

BACKENDS = ["eager", "cpu"]


def _trained_like(flow: RealNVP, seed: int = 0) -> RealNVP:
    """Give every parameter (zero-initialised last layers included) random values so the test sees a
    flow that is far from the identity, as after training."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return flow


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("mixing", ["lu", "permutation"])
def test_inverse_of_forward_is_identity(backend, mixing):
    torch.manual_seed(0)
    flow = _trained_like(RealNVP(5, n_steps=3, hidden=16, mixing=mixing, backend=backend).double()).eval()
    x = torch.randn(64, 5, dtype=torch.float64)
    z, _ = flow(x)
    torch.testing.assert_close(flow.inverse(z), x, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_logdet_equals_slogdet_of_the_jacobian(backend):
    torch.manual_seed(1)
    flow = _trained_like(RealNVP(4, n_steps=3, hidden=8, backend=backend).double()).eval()
    x = torch.randn(6, 4, dtype=torch.float64)
    _, logdet = flow(x)
    for i in range(x.shape[0]):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], x[i])
        sign, logabsdet = torch.linalg.slogdet(jac)
        assert sign != 0
        torch.testing.assert_close(logdet[i], logabsdet, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_conditioners_give_the_standard_normal_density(backend):
    # Fresh flow: zero-initialised conditioner outputs (identity couplings), ActNorm not yet fitted
    # (identity) and rotations in the mixing layers (|det| = 1): log p(x) is exactly log N(x; 0, I).
    # Built in float64 so the rotations are orthogonal to float64 precision, not float32-rounded.
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        flow = RealNVP(6, n_steps=4, hidden=16, backend=backend).eval()
    finally:
        torch.set_default_dtype(default)
    x = torch.randn(100, 6, dtype=torch.float64) * 3
    expected = -0.5 * (x.pow(2).sum(1) + 6 * LOG_2PI)
    torch.testing.assert_close(flow.log_prob(x), expected, atol=1e-10, rtol=1e-10)


def _mixture_sample(n, g):
    """Two well-separated 2-D Gaussians with weights 0.3 / 0.7 and known density."""
    means = torch.tensor([[-2.0, 0.0], [2.0, 1.0]])
    scales = torch.tensor([0.5, 0.8])
    comp = (torch.rand(n, generator=g) < 0.7).long()
    return means[comp] + scales[comp, None] * torch.randn(n, 2, generator=g), means, scales


def _mixture_log_density(x, means, scales):
    weights = torch.tensor([0.3, 0.7])
    d2 = ((x[:, None, :] - means[None]) ** 2).sum(-1)
    log_comp = -d2 / (2 * scales**2) - 2 * torch.log(scales) - LOG_2PI
    return torch.logsumexp(log_comp + torch.log(weights), dim=1)


def test_flow_learns_a_gaussian_mixture_to_its_entropy():
    g = torch.Generator().manual_seed(0)
    train, means, scales = _mixture_sample(4000, g)
    test, _, _ = _mixture_sample(4000, g)
    entropy = -_mixture_log_density(test, means, scales).mean().item()  # Monte-Carlo estimate, nats

    torch.manual_seed(0)
    flow = RealNVP(2, n_steps=6, hidden=48, backend="cpu")
    opt = torch.optim.Adam(flow.parameters(), lr=2e-3)
    flow.train()
    flow(train[:2048])  # data-initialise ActNorm
    for epoch in range(30):
        perm = torch.randperm(train.shape[0], generator=g)
        for i in range(0, train.shape[0], 256):
            loss = -flow.log_prob(train[perm[i:i + 256]]).mean()
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), 5.0)
            opt.step()
    flow.eval()
    with torch.no_grad():
        nll = -flow.log_prob(test).mean().item()
    assert math.isfinite(nll)
    assert nll - entropy < 0.1, f"flow NLL {nll:.3f} nats vs mixture entropy {entropy:.3f}"


# ---- the inference plan (genad_fast.nn.flow.plan) against the modules ---------------------------

from genad_fast.nn.flow.plan import FlowInference, chunk_rows  # noqa: E402


def _onednn(monkeypatch, use: bool, dtype: torch.dtype) -> None:
    """Run the plan with (where this build has it) or without oneDNN's prepacked GELU linears."""
    from genad_fast.nn.flow import onednn, plan as flow_inference

    if use and not onednn.available(dtype):
        pytest.skip(f"this torch build has no native oneDNN linear for {dtype}")
    if not use:
        monkeypatch.setattr(flow_inference.onednn, "available", lambda dtype: False)


@pytest.mark.parametrize("dtype, tol, use_onednn", [(torch.float64, 1e-10, False), (torch.float32, 2e-5, False),
                                                    (torch.float32, 2e-5, True)], ids=["f64", "f32", "f32-onednn"])
@pytest.mark.parametrize("mixing", ["lu", "permutation"])
def test_inference_plan_equals_the_eager_modules(mixing, dtype, tol, use_onednn, monkeypatch):
    _onednn(monkeypatch, use_onednn, dtype)
    torch.manual_seed(2)
    flow = RealNVP(7, n_steps=3, hidden=16, n_blocks=2, mixing=mixing, backend="eager")
    flow = _trained_like(flow.to(dtype), seed=3).eval()
    with torch.no_grad():  # ActNorm far from the identity, as after data initialisation
        for layer in flow.layers[::3]:
            layer.bias.normal_(0, 0.5)
            layer.log_scale.normal_(0, 0.3)
    x = torch.randn(203, 7, dtype=dtype)
    with torch.inference_mode():
        expected = flow.log_prob(x)
        # chunks of 64 rows: three full chunks and a ragged one, buffers reused by the second call
        plan = FlowInference(flow, dtype, backend="cpu", chunk=64)
        assert plan.onednn == use_onednn
        got = plan.log_prob(x)
        again = plan.log_prob(x[:50])
    torch.testing.assert_close(got, expected, atol=tol, rtol=tol)
    torch.testing.assert_close(again, expected[:50], atol=tol, rtol=tol)


def test_inference_plan_reads_overlapping_windows_in_place():
    # Series windows reach the plan as a [n, W·C] view with row stride C (windows overlap).
    torch.manual_seed(4)
    W, C = 6, 3
    flow = _trained_like(RealNVP(W * C, n_steps=2, hidden=8, mixing="permutation").double()).eval()
    series = torch.randn(40, C, dtype=torch.float64)
    windows = series.unfold(0, W, 1).transpose(1, 2).reshape(-1, W * C)
    assert windows.stride() == (C, 1)  # a view, not a copy
    with torch.inference_mode():
        expected = flow.log_prob(windows.contiguous())
        got = FlowInference(flow, torch.float64, backend="cpu", chunk=16).log_prob(windows)
    torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("use_onednn", [False, True], ids=["addmm", "onednn"])
def test_inference_plan_bfloat16_products_err_no_more_than_autocast(use_onednn, monkeypatch):
    _onednn(monkeypatch, use_onednn, torch.bfloat16)
    # bfloat16 products round differently from the modules' autocast (bias added apart, in-place
    # residual), so the test bounds the error relative to float32, as flash-attention's tests do:
    # the plan may be at most 2x further from the float32 density than the autocast modules are.
    torch.manual_seed(5)
    flow = RealNVP(8, n_steps=2, hidden=32).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    x = torch.randn(300, 8)
    with torch.inference_mode():
        exact = flow.log_prob(x)
        flow.set_matmul_dtype(torch.bfloat16)
        autocast = flow.log_prob(x)
        flow.set_matmul_dtype(None)
        plan = FlowInference(flow, backend="cpu", matmul_dtype=torch.bfloat16)
        assert plan.onednn == use_onednn
        got = plan.log_prob(x)
    budget = (autocast - exact).abs().max().item()
    assert 0 < (got - exact).abs().max().item() <= 2 * budget


def test_inference_plan_rejects_bad_input():
    flow = RealNVP(4, n_steps=1, hidden=8).eval()
    with pytest.raises(ValueError, match="eager backend"):
        FlowInference(flow, backend="eager")
    with pytest.raises(ValueError, match="float32 or float64"):
        FlowInference(flow, torch.float16, backend="cpu")
    with pytest.raises(ValueError, match="chunk must be"):
        FlowInference(flow, backend="cpu", chunk=0)
    plan = FlowInference(flow, backend="cpu")
    with pytest.raises(ValueError, match=r"x must be \[N, 4\]"):
        plan.log_prob(torch.randn(3, 5))
    with pytest.raises(ValueError, match="must be torch.float32"):
        plan.log_prob(torch.randn(3, 4, dtype=torch.float64))
    assert plan.log_prob(torch.empty(0, 4)).shape == (0,)


def test_chunk_rows_rule():
    assert chunk_rows(64, 128, 4) == 16384            # 2 KiB per row: 16,384 rows fill 32 MiB
    assert chunk_rows(8, 16, 4) == (32 << 20) // (4 * (32 + 32)) // 64 * 64
    assert chunk_rows(64, 128, 4, target_bytes=2 << 20) == 1024
    assert chunk_rows(1600, 128, 4) == 1216           # 26.6 KiB per row
    assert chunk_rows(4000, 128, 4) == 1024           # wider windows: the GEMM floor


def _module_chain(flow: RealNVP, x: torch.Tensor, backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The flow's forward through its modules one by one (ActNorm, mixing, coupling): what the training
    path's fused permutation steps replace."""
    logdet = torch.zeros(x.shape[0], dtype=x.dtype)
    for layer in flow.layers:
        x, ld = layer(x, backend=backend) if hasattr(layer, "d_cond") else layer(x)
        logdet = logdet + ld
    return x, logdet


def _count_permute_affine(monkeypatch) -> list:
    """The backends of the flow's genad_fast.ops.permute_affine calls, recorded as they run."""
    from genad_fast import ops

    calls, op = [], ops.permute_affine

    def counted(*args, backend=None):
        calls.append(backend)
        return op(*args, backend=backend)
    monkeypatch.setattr(ops, "permute_affine", counted)
    return calls


@pytest.mark.parametrize("dim", [2, 7, 300])
def test_training_forward_equals_the_module_chain(dim, monkeypatch):
    # With gradients on and the CPU kernels, permutation steps run actnorm_permute_split on the previous
    # coupling's halves (one permute_affine call): the same values bit for bit, and the same gradients as autograd
    # through the modules (to float rounding of the sums' order).
    calls = _count_permute_affine(monkeypatch)
    torch.manual_seed(2)
    backend = "cpu"
    flow = _trained_like(RealNVP(dim, n_steps=3, hidden=16, mixing="permutation", backend=backend))
    x = torch.randn(33, dim)
    z, logdet = flow(x)
    assert calls == ["cpu"] * 3
    z_ref, logdet_ref = _module_chain(flow, x, backend)
    assert torch.equal(z, z_ref) and torch.equal(logdet, logdet_ref)
    weights = torch.randn_like(z)
    grads = torch.autograd.grad((z * weights).sum() + logdet.sum(), list(flow.parameters()))
    grads_ref = torch.autograd.grad((z_ref * weights).sum() + logdet_ref.sum(), list(flow.parameters()))
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-5, atol=1e-5)


def test_eager_backend_and_no_grad_keep_the_modules(monkeypatch):
    from genad_fast.ops import Dispatch

    calls = _count_permute_affine(monkeypatch)
    flow = RealNVP(300, n_steps=2, hidden=8, mixing="permutation")
    x = torch.randn(4, 300)
    flow(x, backend="eager")
    flow(x, backend=Dispatch.build("eager", "cpu"))
    with torch.no_grad():
        flow(x, backend="cpu")
    assert calls == []
    flow(x, backend=Dispatch.build("cpu", "cpu"))
    assert calls == ["cpu"] * 2


@pytest.mark.parametrize("mixing", ["lu", "permutation"])
def test_a_flow_of_no_steps_is_the_identity_with_and_without_gradients(mixing):
    flow = RealNVP(4, n_steps=0, mixing=mixing)
    x = torch.randn(3, 4, requires_grad=True)
    for grad in (True, False):
        with torch.set_grad_enabled(grad):
            z, logdet = flow(x, backend="cpu")
        assert torch.equal(z, x) and torch.equal(logdet, torch.zeros(3))


@pytest.mark.parametrize("source_split", [0, 2, 6])
def test_actnorm_permute_split_gradcheck(source_split):
    from genad_fast.nn.flow.realnvp import ActNorm, Permutation, actnorm_permute_split

    torch.manual_seed(3)
    actnorm, permutation = ActNorm(6).double(), Permutation(6)
    actnorm.initialized.fill_(True)
    with torch.no_grad():
        actnorm.bias.normal_()
        actnorm.log_scale.normal_(0, 0.5)
    x = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)

    def halves(x, bias, log_scale):
        actnorm.bias, actnorm.log_scale = bias, log_scale  # plain tensors: gradcheck's inputs
        return actnorm_permute_split((x[:, :source_split], x[:, source_split:]), actnorm, permutation, 2, "cpu")

    bias = actnorm.bias.detach().clone().requires_grad_()
    log_scale = actnorm.log_scale.detach().clone().requires_grad_()
    del actnorm.bias, actnorm.log_scale
    assert torch.autograd.gradcheck(halves, (x, bias, log_scale))
    # one half unused: its gradient is None, read as zero
    assert torch.autograd.gradcheck(lambda *a: halves(*a)[1], (x, bias, log_scale))


def test_actnorm_permute_split_initialises_actnorm_from_the_first_training_batch():
    torch.manual_seed(4)
    flow = RealNVP(300, n_steps=1, hidden=8, mixing="permutation").train()
    x = 5 + 3 * torch.randn(512, 300)
    z, _ = flow(x)  # the coupling starts as the identity: z is the normalised, permuted x
    actnorm = flow.layers[0]
    assert bool(actnorm.initialized)
    torch.testing.assert_close(z.mean(0), torch.zeros(300), atol=1e-4, rtol=0)
    torch.testing.assert_close(z.std(0, unbiased=False), torch.ones(300), atol=1e-4, rtol=0)


@pytest.mark.parametrize("n_blocks", [0, 1, 2])
def test_conditioner_on_bias_gelu_equals_the_modules(n_blocks):
    """ResidualMLP with a compiled backend (biases carried beside the residual stream, every GELU a bias_gelu
    kernel) is the modules' function: the same output and parameter gradients to float64 rounding, a flow's
    log-density and gradients too; the Triton backend (no bias_gelu kernel) keeps the modules."""
    from genad_fast.nn.flow.realnvp import ResidualMLP
    from genad_fast.ops import Dispatch
    from genad_fast.ops.dispatch import kernel_or_eager

    torch.manual_seed(4)
    net = ResidualMLP(5, 6, 16, n_blocks).double()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.5)
    x = torch.randn(21, 5, dtype=torch.float64)
    weights = torch.randn(21, 6, dtype=torch.float64)
    results = {}
    for backend in ("eager", "cpu", Dispatch.build("cpu", "cpu")):
        y = net(x, backend)
        grads = torch.autograd.grad((y * weights).sum(), list(net.parameters()))
        results[str(backend)] = (y.detach(), grads)
    want_y, want_grads = results["eager"]
    assert float(want_y.abs().max()) > 0.1
    for key in results:
        y, grads = results[key]
        torch.testing.assert_close(y, want_y, rtol=1e-12, atol=1e-12)
        for g, w in zip(grads, want_grads):
            torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-12)
    assert kernel_or_eager("bias_gelu", "triton") == "eager" and kernel_or_eager("bias_gelu", "cpu") == "cpu"

    flow = _trained_like(RealNVP(6, n_steps=2, hidden=16, n_blocks=n_blocks)).double()
    xf = torch.randn(17, 6, dtype=torch.float64)
    lp = {b: flow.log_prob(xf, backend=b) for b in ("eager", "cpu")}
    torch.testing.assert_close(lp["cpu"], lp["eager"], rtol=1e-12, atol=1e-12)
    g_cpu = torch.autograd.grad(lp["cpu"].sum(), list(flow.parameters()), allow_unused=True)
    g_eager = torch.autograd.grad(lp["eager"].sum(), list(flow.parameters()), allow_unused=True)
    for a, b in zip(g_cpu, g_eager):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


def _conditioner_by_ops(net, x: torch.Tensor) -> torch.Tensor:
    """ResidualMLP's fused function composed of the public ops under autograd (a node per call): what the one-node
    autograd function (genad_fast.nn.flow.mlp_function) must equal bit for bit."""
    h, bias = torch.mm(x, net.inp.weight.T), net.inp.bias
    for block in net.blocks:
        a = ops.bias_gelu(torch.mm(ops.bias_gelu(h, bias, backend="cpu"), block[1].weight.T), block[1].bias,
                          backend="cpu")
        h, bias = torch.addmm(h, a, block[3].weight.T), bias + block[3].bias
    return torch.addmm(net.out.bias, ops.bias_gelu(h, bias, backend="cpu"), net.out.weight.T)


@pytest.mark.parametrize(("n_blocks", "dtype"), [(0, torch.float32), (2, torch.float32), (2, torch.float64)])
def test_the_conditioner_trains_as_one_autograd_node_with_the_same_bits(n_blocks, dtype):
    from genad_fast.nn.flow.realnvp import ResidualMLP

    torch.manual_seed(5)
    net = ResidualMLP(7, 10, 16, n_blocks).to(dtype)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.5)
    x = torch.randn(33, 7, dtype=dtype, requires_grad=True)
    weights = torch.randn(33, 10, dtype=dtype)
    y = net(x, "cpu")
    assert "ResidualMLP" in y.grad_fn.name() and "genad::autograd" in y.grad_fn.name()  # one C++ node
    with torch.no_grad():
        assert torch.equal(y, net(x, "cpu"))  # the no-grad fused path: the same calls
    want = _conditioner_by_ops(net, x)
    assert torch.equal(y, want)
    inputs = [x, *net.parameters()]
    got = torch.autograd.grad((y * weights).sum(), inputs)
    expected = torch.autograd.grad((want * weights).sum(), inputs)
    for g, e in zip(got, expected):
        assert torch.equal(g, e)
    # an input without gradient and a frozen parameter get none; the others are unchanged
    net.out.bias.requires_grad_(False)
    y2 = net(x.detach(), "cpu")
    grads = torch.autograd.grad((y2 * weights).sum(), [p for p in net.parameters() if p.requires_grad])
    for g, e in zip(grads, expected[1:-1]):
        assert torch.equal(g, e)


def test_the_conditioner_node_in_threads_sharing_one_module():
    """The C++ node releases the GIL while it computes: threads that share one conditioner, forward and backward at
    once, get the results of running alone, bit for bit."""
    from concurrent.futures import ThreadPoolExecutor

    from genad_fast.nn.flow.realnvp import ResidualMLP

    torch.manual_seed(8)
    net = ResidualMLP(12, 20, 32, 2)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.3)
    xs = [torch.randn(64, 12, requires_grad=True) for _ in range(6)]

    def run(x):
        y = net(x, "cpu")
        with torch.no_grad():
            y_scoring = net(x, "cpu")
        return y.detach(), y_scoring, torch.autograd.grad((y * y).sum(), [x, *net.parameters()])

    alone = [run(x) for x in xs]
    with ThreadPoolExecutor(3) as pool:
        together = list(pool.map(run, xs))
    for (y1, s1, g1), (y2, s2, g2) in zip(alone, together):
        assert torch.equal(y1, y2) and torch.equal(s1, s2) and torch.equal(y1, s1)
        assert all(torch.equal(a, b) for a, b in zip(g1, g2))


def test_the_conditioner_node_gradcheck_and_no_second_derivative():
    from genad_fast.nn.flow.realnvp import ResidualMLP

    torch.manual_seed(6)
    net = ResidualMLP(4, 6, 8, 1).double()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.5)
    names = [n for n, _ in net.named_parameters()]

    def run(x, *params):
        return torch.func.functional_call(net, dict(zip(names, params)), (x, "cpu"))

    x = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    params = [p.detach().clone().requires_grad_(True) for p in net.parameters()]
    assert torch.autograd.gradcheck(run, (x, *params))
    y = run(x, *params)
    with pytest.raises(RuntimeError, match="conditioner's compiled backward is not differentiable.*backend='eager'"):
        torch.autograd.grad(y.sum(), x, create_graph=True)


def test_the_fused_conditioner_refuses_a_backend_whose_bias_gelu_it_would_not_run(monkeypatch):
    # The C++ node calls the C++ ops' bias_gelu: a backend that one day gains its own (Triton) is an error here,
    # never the C++ kernel run in its place.
    from genad_fast.nn.flow import realnvp

    net = realnvp.ResidualMLP(4, 6, 8, 1)
    monkeypatch.setattr(realnvp, "select", lambda op, backend, device: "triton")
    with pytest.raises(BackendUnavailableError, match="cpu and cuda kernels of bias_gelu, not 'triton'"):
        net(torch.randn(3, 4), "cpu")
