"""Noise schedules and step coefficients (DDPM posterior, DDIM), and the convolutional denoisers."""
import math

import pytest
import torch

from genad_fast.nn.diffusion.denoiser import ConditionalDenoiser, Denoiser, sinusoidal_embedding
from genad_fast.nn.diffusion.schedules import NoiseSchedule, make_betas

torch.set_default_dtype(torch.float32)


# ---- schedules --------------------------------------------------------------------------------------------
def test_quadratic_schedule_is_csdi_quad():
    betas = make_betas("quadratic", 50)
    expected = torch.linspace(1e-4 ** 0.5, 0.5 ** 0.5, 50, dtype=torch.float64) ** 2
    torch.testing.assert_close(betas, expected)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.5)


def test_linear_schedule_scales_ho_to_any_length():
    torch.testing.assert_close(make_betas("linear", 1000), torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64))
    b = make_betas("linear", 100)
    assert b[0] == pytest.approx(1e-3) and b[-1] == pytest.approx(0.2)
    with pytest.raises(ValueError, match="beta_end"):
        make_betas("linear", 10)  # 0.02 * 100 = 2 is no variance


def test_cosine_schedule_follows_its_alpha_bar():
    n = 40
    s = NoiseSchedule.from_name("cosine", n)
    f = lambda t: math.cos((t / n + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    for i in range(n - 1):  # the last beta is clipped to 0.999
        assert float(s.alpha_bars[i]) == pytest.approx(f(i + 1) / f(0), rel=1e-10)
    assert float(s.betas.max()) <= 0.999


@pytest.mark.parametrize("kind", ["linear", "cosine", "quadratic"])
def test_ddim_eta_one_is_the_ddpm_posterior(kind):
    s = NoiseSchedule.from_name(kind, 30)
    t = torch.tensor([29, 17, 5, 1, 0, 12])
    prev = torch.tensor([28, 3, 4, -1, -1, 11])
    for got, want in zip(s.ddim_coefficients(t, prev, eta=1.0), s.ddpm_coefficients(t, prev)):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


def test_ddpm_step_is_the_posterior_mean_and_variance():
    """a·x_t + b·ε = μ̃(x_t, x̂_0) of Ho et al. eq. 7, and c² = β̃, for x̂_0 from ε."""
    s = NoiseSchedule.from_name("quadratic", 50)
    for t in (49, 20, 3, 0):
        ab_t, ab_s = float(s.alpha_bars[t]), float(s.alpha_bars[t - 1]) if t > 0 else 1.0
        beta, alpha = float(s.betas[t]), float(s.alphas[t])
        a, b, c = (float(v) for v in s.ddpm_coefficients([t], [t - 1]))
        x_t, eps = 0.7, -1.3
        x0 = (x_t - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
        mean = math.sqrt(ab_s) * beta / (1 - ab_t) * x0 + math.sqrt(alpha) * (1 - ab_s) / (1 - ab_t) * x_t
        assert a * x_t + b * eps == pytest.approx(mean, rel=1e-9)
        assert c ** 2 == pytest.approx((1 - ab_s) / (1 - ab_t) * beta, abs=1e-15)


def test_ddim_eta_zero_follows_the_noise_exactly():
    """With the true noise, a deterministic DDIM step lands on x_s = sqrt(ᾱ_s)·x_0 + sqrt(1-ᾱ_s)·ε; to -1 on x_0."""
    s = NoiseSchedule.from_name("cosine", 20)
    x0, eps = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    for t, prev in ((19, 10), (10, 4), (4, -1)):
        a_t, b_t = s.add_noise_coefficients([t])
        a, b, c = s.ddim_coefficients([t], [prev], eta=0.0)
        assert float(c) == 0.0
        x_t = a_t * x0 + b_t * eps
        a_s, b_s = s.add_noise_coefficients([prev])
        torch.testing.assert_close(a * x_t + b * eps, a_s * x0 + b_s * eps, rtol=1e-9, atol=1e-9)


def test_coefficients_are_per_sample():
    s = NoiseSchedule.from_name("quadratic", 50)
    a, b, c = s.ddpm_coefficients([40, 10, 2], [39, 9, -1])
    for i, (t, prev) in enumerate(((40, 39), (10, 9), (2, -1))):
        one = s.ddpm_coefficients([t], [prev])
        assert (float(a[i]), float(b[i]), float(c[i])) == tuple(float(v) for v in one)
    assert float(c[2]) == 0.0  # the last step adds no noise
    assert s.alpha_bar([-1]).item() == 1.0


def test_timesteps():
    s = NoiseSchedule.from_name("quadratic", 50)
    assert s.timesteps(9, 10) == list(range(9, -1, -1)) + [-1]
    assert s.timesteps(9, 1) == [9, -1]
    chain = s.timesteps(49, 7)
    assert chain[0] == 49 and chain[-2:] == [0, -1] and len(chain) == 8
    assert all(x > y for x, y in zip(chain, chain[1:]))
    with pytest.raises(ValueError, match="k must be"):
        s.timesteps(9, 11)
    with pytest.raises(ValueError, match="start must be"):
        s.timesteps(50, 1)


@pytest.mark.parametrize("call, match", [
    (lambda: make_betas("sigmoid", 10), "schedule must be"),
    (lambda: make_betas("quadratic", 0), "n_steps"),
    (lambda: make_betas("cosine", 10, beta_end=0.1), "cosine"),
    (lambda: NoiseSchedule.from_name("quadratic", 10).ddim_coefficients([5], [3], eta=1.5), "eta"),
    (lambda: NoiseSchedule.from_name("quadratic", 10).ddpm_coefficients([3], [5]), "s < t"),
    (lambda: NoiseSchedule.from_name("quadratic", 10).alpha_bar([10]), r"\[-1, 9\]"),
    (lambda: NoiseSchedule.from_name("quadratic", 10).step_coefficients("euler", [3], [2]), "sampler"),
])
def test_schedule_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ---- denoiser ---------------------------------------------------------------------------------------------
def _random_denoiser(cls=Denoiser, channels=3, **kwargs):
    torch.manual_seed(0)
    net = cls(channels, residual_channels=8, n_layers=4, dilation_cycle=3, embedding_dim=16, **kwargs)
    torch.nn.init.normal_(net.out.weight, std=0.3)  # the zero-initialised head would hide everything
    return net.eval()


def test_receptive_field_is_exact():
    net = _random_denoiser()
    r = net.receptive_radius
    assert r == 1 + 2 + 4 + 1 and net.receptive_field == 2 * r + 1
    x = torch.randn(1, 3, 81)
    t = torch.tensor([7])
    centre = 40
    with torch.no_grad():
        base = net(x, t)[0, :, centre]
        for dist in (r, r + 1):
            for sign in (-1, 1):
                y = x.clone()
                y[0, :, centre + sign * dist] += 5.0
                changed = not torch.equal(net(y, t)[0, :, centre], base)
                assert changed == (dist <= r), (dist, sign)


def test_a_window_with_a_halo_gives_the_series_outputs():
    net = _random_denoiser()
    r = net.receptive_radius
    x = torch.randn(2, 3, 200)
    t = torch.tensor([3, 3])
    with torch.no_grad():
        full = net(x, t)
        for s, e in ((0, 30), (50, 90), (170, 200), (100, 101)):
            lo, hi = max(0, s - r), min(200, e + r)
            part = net(x[:, :, lo:hi], t)[:, :, s - lo:e - lo]
            torch.testing.assert_close(part, full[:, :, s:e], rtol=1e-5, atol=1e-6)


def test_step_embedding_can_be_shared_or_per_sample():
    net = _random_denoiser()
    x = torch.randn(3, 3, 40)
    with torch.no_grad():
        per_sample = net(x, torch.tensor([5, 5, 5]))
        shared = net(x, step=net.step_embedding(torch.tensor([5])))
        other = net(x, torch.tensor([5, 9, 5]))
    torch.testing.assert_close(per_sample, shared)
    assert torch.equal(other[0], per_sample[0]) and not torch.allclose(other[1], per_sample[1])


def test_new_denoiser_predicts_zero_noise():
    net = Denoiser(2, residual_channels=8, n_layers=2, embedding_dim=8)
    assert torch.equal(net(torch.randn(4, 2, 17), torch.tensor([1, 2, 3, 4])), torch.zeros(4, 2, 17))


def test_conditional_denoiser_sees_noise_only_where_it_imputes():
    net = _random_denoiser(ConditionalDenoiser)
    x_t, obs = torch.randn(1, 3, 50), torch.randn(1, 3, 50)
    mask = (torch.rand(1, 3, 50) < 0.5).float()  # 1 = observed
    t = torch.tensor([4])
    with torch.no_grad():
        base = net(x_t, obs, mask, t)
        # x_t where observed and the observed values where imputed are invisible to the network
        same = net(x_t + 10 * mask, obs + 10 * (1 - mask), mask, t)
        changed = net(x_t + 10 * (1 - mask), obs, mask, t)
    torch.testing.assert_close(same, base)
    assert not torch.allclose(changed, base)
    assert net.in_channels == 9


def test_sinusoidal_embedding():
    e = sinusoidal_embedding(torch.tensor([0, 3]), 8)
    assert e.shape == (2, 8)
    torch.testing.assert_close(e[0], torch.tensor([0.0] * 4 + [1.0] * 4))
    assert e[1, 0] == pytest.approx(math.sin(3.0)) and e[1, 4] == pytest.approx(math.cos(3.0))


@pytest.mark.parametrize("kwargs, match", [
    (dict(kernel_size=4), "odd"),
    (dict(n_layers=0), "n_layers"),
    (dict(residual_channels=1.5), "residual_channels"),
])
def test_denoiser_bad_config(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Denoiser(3, **kwargs)


def test_denoiser_bad_input():
    net = Denoiser(3, residual_channels=8, n_layers=2, embedding_dim=8)
    with pytest.raises(ValueError, match=r"\[B, 3, L\]"):
        net(torch.randn(2, 4, 10), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="exactly one"):
        net(torch.randn(2, 3, 10))
    with pytest.raises(ValueError, match="batch of 2"):
        net(torch.randn(2, 3, 10), torch.tensor([1, 1, 1]))


# ---- the inference plan (genad_fast.nn.diffusion.plan) ------------------------------------------------
def _random_full_denoiser(conditional: bool, dtype: torch.dtype, kernel_size: int = 3) -> Denoiser:
    """A small denoiser with every parameter random (a fresh one has a zero output layer: ε̂ = 0 hides all)."""
    torch.manual_seed(3)
    cls = ConditionalDenoiser if conditional else Denoiser
    net = cls(4, residual_channels=12, n_layers=5, dilation_cycle=3, kernel_size=kernel_size, embedding_dim=16)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0.0, 0.4)
    return net.to(dtype).eval()


def _module_eps(net: Denoiser, x: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    step = net.step_mlp(sinusoidal_embedding(torch.tensor([t]), net.embedding_dim).to(x.dtype))
    with torch.no_grad():
        return Denoiser.forward(net, x, step=step), step  # the network on its own input (conditional: 3·C channels)


@pytest.mark.parametrize("dtype, tol", [(torch.float32, 2e-5), (torch.float64, 1e-12)])
@pytest.mark.parametrize("conditional", [False, True])
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_inference_plan_equals_the_module(dtype, tol, conditional, kernel_size):
    from genad_fast.nn.diffusion.plan import DenoiserInference

    net = _random_full_denoiser(conditional, dtype, kernel_size)
    plan = DenoiserInference(net, dtype)
    assert plan.pad == 4 * (kernel_size - 1) // 2
    # odd lengths, a read shorter than the gap, one read and several; the buffers are rebuilt between shapes
    for n, length, t in ((3, 37, 7), (1, 3, 0), (2, 101, 19), (3, 37, 1)):
        x = torch.randn(n, net.in_channels, length, dtype=dtype)
        want, step = _module_eps(net, x, t)
        got = plan(x, plan.step_constants(step))
        assert got.shape == (n, 4, length) and got.dtype == dtype
        scale = float(want.abs().max())
        assert scale > 0.1  # the comparison is not between zeros
        torch.testing.assert_close(got, want, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("conditional", [False, True])
def test_module_gated_units_on_the_cpu_kernel_train_as_the_composite(conditional):
    """The training path: the denoiser with backend="cpu" (the gated_tanh kernel, its backward by hand) gives the
    eager composite's ε̂ and parameter gradients, to float64 rounding; under the Triton backend (no gated_tanh
    kernel) the layers take the composite."""
    net = _random_full_denoiser(conditional, torch.float64)
    x = torch.randn(3, net.in_channels, 29, dtype=torch.float64)
    t = torch.tensor([0, 7, 19])
    grads = {}
    for backend in ("eager", "cpu"):
        net.zero_grad()
        step = net.step_mlp(sinusoidal_embedding(t, net.embedding_dim).to(torch.float64))
        eps = Denoiser.forward(net, x, step=step, backend=backend)
        (eps * torch.linspace(-1, 1, eps.numel(), dtype=torch.float64).view_as(eps)).sum().backward()
        grads[backend] = (eps.detach(), [p.grad.clone() for p in net.parameters()])
    torch.testing.assert_close(grads["cpu"][0], grads["eager"][0], rtol=1e-12, atol=1e-12)
    for got, want in zip(grads["cpu"][1], grads["eager"][1]):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert any(float(g.abs().max()) > 0 for g in grads["cpu"][1])
    # the Triton backend has no gated_tanh kernel: its layers take the composite (no BackendUnavailableError)
    eps_triton = Denoiser.forward(net, x, step=step.detach(), backend="triton")
    torch.testing.assert_close(eps_triton, grads["eager"][0], rtol=0, atol=0)


def test_inference_plan_padding_is_each_reads_own():
    """Reads batched into one call stay independent: each read's edges see zeros, not its neighbour's values."""
    from genad_fast.nn.diffusion.plan import DenoiserInference

    net = _random_full_denoiser(False, torch.float64)
    plan = DenoiserInference(net, torch.float64)
    x = torch.randn(3, 4, 40, dtype=torch.float64)
    _, step = _module_eps(net, x, 5)
    consts = plan.step_constants(step)
    together = plan(x, consts).clone()
    for i in range(3):
        torch.testing.assert_close(plan(x[i:i + 1], consts)[0], together[i], rtol=1e-12, atol=1e-12)
    # a list of reads is the same as their stack (the detector passes views of the state)
    torch.testing.assert_close(plan([x[:1], x[1:]], consts), together, rtol=0, atol=0)


def test_inference_plan_bad_input():
    from genad_fast.nn.diffusion.plan import DenoiserInference

    net = _random_full_denoiser(False, torch.float32)
    plan = DenoiserInference(net)
    consts = plan.step_constants(net.step_embedding(torch.tensor([2])))
    with pytest.raises(ValueError, match=r"\[N, 4, L\]"):
        plan(torch.randn(2, 5, 10), consts)
    with pytest.raises(ValueError, match="float32"):
        plan(torch.randn(2, 4, 10, dtype=torch.float64), consts)
    with pytest.raises(ValueError, match="one L for all"):
        plan([torch.randn(1, 4, 10), torch.randn(1, 4, 11)], consts)
    with pytest.raises(ValueError, match="empty list"):
        plan([], consts)
    with pytest.raises(ValueError, match="step_constants"):
        plan(torch.randn(2, 4, 10), consts[:-1])
    with pytest.raises(ValueError, match="float32 or float64"):
        DenoiserInference(net, torch.bfloat16)
    with pytest.raises(ValueError, match="needs a Denoiser"):
        DenoiserInference(torch.nn.Linear(2, 2))
