"""AnoGAN's batched latent search (genad_fast.nn.gan.search) against one-sample-at-a-time Adam loops."""
import math

import pytest
import torch

import genad_fast.nn.gan.search.program as ls
from genad_fast import ops
from genad_fast.nn.gan import ConvCritic, ConvGenerator, MLPCritic, MLPGenerator
from genad_fast.nn.gan.search import latent_search, linear_stack

LAM = 0.1


def nets(latent=4, d=6, hidden=(16, 12), critic=(10, 8), dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    g = MLPGenerator(latent, hidden, (d,)).to(dtype)
    c = MLPCritic((d,), critic).to(dtype)
    return g, c


def reference_loss(g, c, x, z, lam=LAM):
    gx = g(z)
    return (1 - lam) * (x - gx).flatten(1).abs().sum(1) + lam * (c.features(x) - c.features(gx)).abs().sum(1)


def one_sample_adam(g, c, x, z0, iterations, lr, lam=LAM):
    """The loop AnoGAN's papers and libraries run: one sample, torch.optim.Adam on its z, best loss kept."""
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    best, best_z = math.inf, z0.clone()
    for _ in range(iterations):
        loss = reference_loss(g, c, x, z, lam)
        if loss.item() < best:
            best, best_z = loss.item(), z.detach().clone()
        opt.zero_grad()
        loss.sum().backward()
        opt.step()
    return best, best_z


def initial_codes(n, latent, seed, dtype):
    return torch.randn(n, latent, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("vjp", ["manual", "autograd"])
def test_batched_search_equals_one_sample_adam_loops(vjp):
    g, c = nets(dtype=torch.float64)
    x = torch.randn(5, 6, dtype=torch.float64)
    res = latent_search(g, c, x, iterations=25, lr=0.05, rng=torch.Generator().manual_seed(3), vjp=vjp)
    z0 = initial_codes(5, 4, 3, torch.float64)
    for i in range(5):
        best, best_z = one_sample_adam(g, c, x[i:i + 1], z0[i:i + 1], 25, 0.05)
        assert res.loss[i].item() == pytest.approx(best, rel=1e-10)
        torch.testing.assert_close(res.z[i:i + 1], best_z, rtol=1e-10, atol=1e-12)
    assert res.iterations.tolist() == [25] * 5


def test_manual_backward_equals_autograd():
    g, c = nets(dtype=torch.float64, seed=1)
    layers = ls._mlp_layers(g, c)
    assert layers is not None
    prog = ls._MLPProgram(*layers, capacity=7, matmul_dtype=None, device=torch.device("cpu"), dtype=torch.float64)
    x, z = torch.randn(7, 6, dtype=torch.float64), torch.randn(7, 4, dtype=torch.float64)
    import genad_fast.ops as ops

    loss, grad = prog.loss_and_grad(z, x, c.features(x), LAM, ops.anogan_residual)
    zz = z.clone().requires_grad_(True)
    ref = reference_loss(g, c, x, zz)
    (ref_grad,) = torch.autograd.grad(ref.sum(), zz)
    torch.testing.assert_close(loss, ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-12, atol=1e-12)


def test_parts_add_up_and_match_the_networks():
    g, c = nets()
    x = torch.randn(9, 6)
    res = latent_search(g, c, x, iterations=10, rng=torch.Generator().manual_seed(0))
    torch.testing.assert_close(res.loss, (1 - LAM) * res.residual + LAM * res.feature)
    with torch.no_grad():
        gx = g(res.z)
        torch.testing.assert_close(res.residual, (x - gx).abs().sum(1), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(res.feature, (c.features(x) - c.features(gx)).abs().sum(1), rtol=1e-5, atol=1e-5)


def test_restarts_keep_the_best_of_independent_searches():
    g, c = nets(dtype=torch.float64)
    x = torch.randn(4, 6, dtype=torch.float64)
    res = latent_search(g, c, x, iterations=15, restarts=3, rng=torch.Generator().manual_seed(5))
    z0 = initial_codes(12, 4, 5, torch.float64)  # restart r of sample i starts at row r * B + i
    for i in range(4):
        runs = [one_sample_adam(g, c, x[i:i + 1], z0[r * 4 + i:r * 4 + i + 1], 15, 0.05)[0] for r in range(3)]
        assert res.loss[i].item() == pytest.approx(min(runs), rel=1e-10)
        assert res.restart[i].item() == min(range(3), key=runs.__getitem__)


def test_z0_starts_the_first_restart():
    g, c = nets()
    x = torch.randn(3, 6)
    z0 = torch.randn(3, 4)
    res = latent_search(g, c, x, iterations=1, z0=z0, rng=torch.Generator().manual_seed(0))
    # one iteration evaluates the start only: the best code is z0 itself
    torch.testing.assert_close(res.z, z0)
    with torch.no_grad():
        torch.testing.assert_close(res.loss, reference_loss(g, c, x, z0), rtol=1e-5, atol=1e-5)


def _count_rows(monkeypatch, rows_seen):
    """Record the number of rows of every iteration's products (the bound iteration of each working set)."""
    original = ls._MLPProgram.bind

    def bind(self, z, *args):
        step = original(self, z, *args)

        def counted():
            rows_seen.append(z.shape[0])
            return step()
        return counted

    monkeypatch.setattr(ls._MLPProgram, "bind", bind)


def test_early_stopping_masks_and_compacts_converged_rows(monkeypatch):
    g, c = nets(seed=2)
    x = torch.randn(64, 6)
    rows_seen = []
    _count_rows(monkeypatch, rows_seen)
    full = latent_search(g, c, x, iterations=200, lr=0.05, rng=torch.Generator().manual_seed(0))
    assert rows_seen == [64] * 200
    rows_seen.clear()
    early = latent_search(g, c, x, iterations=200, lr=0.05, tol=1e-2, check_every=10,
                          rng=torch.Generator().manual_seed(0))
    steps = early.iterations
    assert (steps < 200).any() and (steps % 10 == 0).all()
    # rows that stopped left the products: the work done is the sum of the per-row iterations (up to one
    # segment of masked rows before each compaction), far below 64 x 200
    assert sum(rows_seen) < 64 * 200 * 0.8
    assert sum(rows_seen) >= int(steps.sum())
    assert rows_seen == sorted(rows_seen, reverse=True)
    # a stopped row keeps the loss it had: never better than running on, and up to each row's stop identical
    assert (early.loss >= full.loss * (1 - 1e-3)).all()


def test_no_early_stopping_shrink_zero_masks_without_compacting(monkeypatch):
    g, c = nets(seed=2)
    x = torch.randn(32, 6)
    rows_seen = []
    _count_rows(monkeypatch, rows_seen)
    res = latent_search(g, c, x, iterations=100, tol=1e-2, shrink=0.0, rng=torch.Generator().manual_seed(0))
    assert set(rows_seen) == {32}
    assert (res.iterations < 100).any()


class _NoSync:
    """Makes every host read of a tensor value raise (or count): a search loop must not need one."""

    NAMES = ("item", "tolist", "cpu", "numpy", "nonzero", "__bool__", "__int__", "__float__", "__index__")

    def __init__(self, monkeypatch, allow_int: bool = False):
        self.counts = {"__int__": 0, "nonzero": 0}
        for name in self.NAMES:
            if name in self.counts and allow_int:
                orig = getattr(torch.Tensor, name)

                def counted(*args, _orig=orig, _name=name, **kwargs):
                    self.counts[_name] += 1
                    return _orig(*args, **kwargs)

                monkeypatch.setattr(torch.Tensor, name, counted)
                continue
            monkeypatch.setattr(torch.Tensor, name, _raiser(name))


def _raiser(name):
    def f(*args, **kwargs):
        raise AssertionError(f"host-device synchronisation: Tensor.{name} called in the search loop")
    return f


@pytest.mark.parametrize("vjp", ["manual", "autograd"])
def test_search_without_early_stopping_never_reads_a_tensor_on_the_host(monkeypatch, vjp):
    g, c = nets()
    x = torch.randn(8, 6)
    with monkeypatch.context() as m:
        _NoSync(m)
        res = latent_search(g, c, x, iterations=30, restarts=2, rng=torch.Generator().manual_seed(0), vjp=vjp)
    assert torch.isfinite(res.loss).all()


def test_early_stopping_reads_one_count_per_check(monkeypatch):
    g, c = nets()
    x = torch.randn(8, 6)
    with monkeypatch.context() as m:
        guard = _NoSync(m, allow_int=True)
        latent_search(g, c, x, iterations=50, tol=1e-3, check_every=10, rng=torch.Generator().manual_seed(0))
    # the active count after iterations 10, 20, 30, 40 (the check at 50 ends the search), plus the row
    # indices of each compaction: nothing inside a segment
    assert guard.counts["__int__"] == 4
    assert guard.counts["nonzero"] <= 4


def test_bfloat16_products_stay_close_to_float32():
    g, c = nets(latent=8, d=16, hidden=(64, 64), critic=(64, 32), seed=3)
    x = torch.randn(32, 16)
    f32 = latent_search(g, c, x, iterations=50, rng=torch.Generator().manual_seed(1))
    for vjp in ("manual", "autograd"):
        bf16 = latent_search(g, c, x, iterations=50, rng=torch.Generator().manual_seed(1),
                             matmul_dtype=torch.bfloat16, vjp=vjp)
        assert bf16.loss.dtype == torch.float32 and bf16.z.dtype == torch.float32
        rel = ((bf16.loss - f32.loss).abs() / f32.loss).max().item()
        assert 0 < rel < 0.03, rel


@pytest.mark.parametrize("matmul_dtype, tol", [(torch.bfloat16, (5e-3, 3e-2)), (None, (1e-5, 1e-3))])
def test_layer_op_and_aten_programs_agree(monkeypatch, matmul_dtype, tol):
    # the CPU kernels' program (one linear_act per layer and direction) against the plan of ATen calls
    g, c = nets(latent=8, d=16, hidden=(64, 64), critic=(64, 32), seed=4)
    x = torch.randn(40, 16)
    runs = {}
    for flag in (True, False):
        monkeypatch.setattr(ls, "_layer_op_runs", lambda backend, device, flag=flag: flag)
        runs[flag] = latent_search(g, c, x, iterations=30, rng=torch.Generator().manual_seed(2),
                                   matmul_dtype=matmul_dtype, backend="cpu")
    rel = ((runs[True].loss - runs[False].loss).abs() / runs[False].loss)
    assert rel.mean().item() < tol[0] and rel.max().item() < tol[1], (rel.mean().item(), rel.max().item())


def test_layer_op_program_is_used_on_the_cpu_backend_only():
    assert ls._layer_op_runs("cpu", torch.device("cpu"))
    assert not ls._layer_op_runs("eager", torch.device("cpu"))


def test_convolutional_networks_go_through_autograd():
    torch.manual_seed(0)
    g = ConvGenerator(5, 12, 3, (8, 8), kernel_size=3).double()
    c = ConvCritic(12, 3, (8, 8), kernel_size=3).double()
    assert ls._mlp_layers(g, c) is None
    x = torch.randn(6, 12, 3, dtype=torch.float64)
    res = latent_search(g, c, x, iterations=20, rng=torch.Generator().manual_seed(0))
    z0 = initial_codes(6, 5, 0, torch.float64)
    for i in (0, 2, 5):
        best, _ = one_sample_adam(g, c, x[i:i + 1], z0[i:i + 1], 20, 0.05)
        assert res.loss[i].item() == pytest.approx(best, rel=1e-9)
    with pytest.raises(ValueError, match="vjp='manual'"):
        latent_search(g, c, x, iterations=2, vjp="manual")


def test_networks_are_frozen_during_the_search_and_restored_after():
    g, c = nets()
    g.train()
    x = torch.randn(4, 6)
    latent_search(g, c, x, iterations=5, vjp="autograd")
    assert g.training and all(p.requires_grad for p in g.parameters())
    assert all(p.grad is None for p in list(g.parameters()) + list(c.parameters()))


def test_nan_input_gives_nan_scores():
    g, c = nets()
    x = torch.randn(4, 6)
    x[1, 2] = float("nan")
    res = latent_search(g, c, x, iterations=5)
    assert torch.isnan(res.loss[1]) and torch.isfinite(res.loss[[0, 2, 3]]).all()


def test_empty_batch():
    g, c = nets()
    res = latent_search(g, c, torch.empty(0, 6), iterations=3)
    assert res.loss.shape == (0,) and res.z.shape == (0, 4)


def test_linear_stack_recognises_linear_leaky_relu_stacks_only():
    seq = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LeakyReLU(0.3), torch.nn.Linear(4, 2))
    layers = linear_stack(seq)
    assert [l.slope for l in layers] == [0.3, None]
    assert linear_stack(torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh())) is None
    assert linear_stack(torch.nn.Sequential(torch.nn.LeakyReLU())) is None
    assert linear_stack(torch.nn.Linear(3, 3)) is None


@pytest.mark.parametrize("kwargs, match", [
    (dict(iterations=0), "iterations"), (dict(lam=1.5), "lam"), (dict(lr=0.0), "lr"), (dict(restarts=0), "restarts"),
    (dict(tol=-1.0), "tol"), (dict(check_every=0), "check_every"), (dict(patience=0), "patience"),
    (dict(vjp="fast"), "vjp"),
    (dict(z0=torch.zeros(3, 4)), "z0"), (dict(cuda_graph=True), "CUDA"),
])
def test_bad_arguments(kwargs, match):
    g, c = nets()
    with pytest.raises(ValueError, match=match):
        latent_search(g, c, torch.randn(2, 6), **kwargs)


@pytest.mark.parametrize("matmul_dtype", [None, torch.bfloat16])
def test_reported_loss_is_the_loss_the_search_saw(matmul_dtype):
    # The final pass recomputes the loss at each row's best code: it must be computed as the iterations
    # computed it (the same linear_act calls on the CPU kernels), or the score is not the loss that won.
    g, c = nets(latent=8, d=16, hidden=(64, 64), critic=(64, 32), seed=6)
    x = torch.randn(30, 16)
    res = latent_search(g, c, x, iterations=20, rng=torch.Generator().manual_seed(3), matmul_dtype=matmul_dtype,
                        backend="cpu", lam=0.1)
    layers = ls._mlp_layers(g, c)
    prog = ls._MLPProgram(*layers, capacity=30, matmul_dtype=matmul_dtype, device=torch.device("cpu"),
                          dtype=torch.float32, layer_op=True)
    assert prog.layer_op
    fx = c.features(x).flatten(1)
    seen, _ = prog.bind(res.z.clone(), x, fx, 0.1, ops.anogan_residual)()
    torch.testing.assert_close(res.loss, seen, rtol=1e-6, atol=1e-6)
