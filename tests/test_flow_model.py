"""The RealNVP/Glow flow (genad_fast.nn.flow): invertibility, exact log-determinants, exact density."""
import math

import pytest
import torch

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
