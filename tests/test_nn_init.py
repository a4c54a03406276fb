"""genad_fast.nn.init: networks built on the meta device and initialised from an explicit generator."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from genad_fast.nn.blocks import make_encoder
from genad_fast.nn.diffusion import ConditionalDenoiser
from genad_fast.nn.flow import ActNorm, AffineCoupling, LULinear, Permutation, RealNVP
from genad_fast.nn.init import build_module, init_module_
from genad_fast.nn.svdd import DeepSVDD, svdd_network
from genad_fast.nn.vae import GaussianVAE


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("factory", [lambda: nn.Linear(5, 7), lambda: nn.Conv1d(3, 4, 5),
                                     lambda: nn.Linear(6, 2, bias=False)], ids=["linear", "conv1d", "no-bias"])
def test_linear_and_convolution_layers_get_exactly_pytorchs_default_draws(factory):
    with torch.random.fork_rng():
        torch.manual_seed(11)
        want = factory()   # PyTorch's own reset_parameters, from the global generator seeded 11
    got = build_module(factory, _gen(11))
    for name, p in want.named_parameters():
        assert torch.equal(dict(got.named_parameters())[name], p), name


NETWORKS = {
    "flow-lu": lambda: RealNVP(6, n_steps=2, hidden=8, n_blocks=1, mixing="lu"),
    "flow-permutation": lambda: RealNVP(6, n_steps=2, hidden=8, n_blocks=1, mixing="permutation"),
    "denoiser": lambda: ConditionalDenoiser(2, residual_channels=4, n_layers=2, embedding_dim=4),
    "vae-batchnorm": lambda: GaussianVAE((8, 2), 3, (4, 4), batch_norm=True),
    "svdd": lambda: DeepSVDD(svdd_network((5,), (4,), 3, batch_norm=True), 3),
}


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_same_generator_same_network_and_the_global_rng_untouched(name):
    torch.manual_seed(5)
    before = torch.random.get_rng_state()
    a, b = build_module(NETWORKS[name], _gen(1)), build_module(NETWORKS[name], _gen(1))
    c = build_module(NETWORKS[name], _gen(2))
    assert torch.equal(torch.random.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())
    for k, v in sa.items():  # nothing left as uninitialised memory
        assert not v.is_floating_point() or bool(torch.isfinite(v).all()), k


def test_the_networks_own_initialisations_hold():
    flow = build_module(NETWORKS["flow-lu"], _gen(0))
    for layer in flow.layers:
        if isinstance(layer, ActNorm):   # identity until initialised from data
            assert not bool(layer.initialized) and not layer.bias.any() and not layer.log_scale.any()
        elif isinstance(layer, LULinear):  # a rotation
            w = layer.weight().double()
            torch.testing.assert_close(w @ w.T, torch.eye(6, dtype=torch.float64), atol=1e-5, rtol=0)
        elif isinstance(layer, AffineCoupling):  # starts as the identity map
            assert not layer.conditioner.out.weight.any() and not layer.conditioner.out.bias.any()
    perm = build_module(NETWORKS["flow-permutation"], _gen(0)).layers[1]
    assert isinstance(perm, Permutation)
    assert sorted(perm.perm.tolist()) == list(range(6)) and torch.equal(perm.perm[perm.inv_perm], torch.arange(6))
    den = build_module(NETWORKS["denoiser"], _gen(0))
    assert not den.out.weight.any() and not den.out.bias.any() and den.inp.weight.std() > 0
    svdd = build_module(NETWORKS["svdd"], _gen(0))
    assert not svdd.center.any() and float(svdd.radius) == 0.0
    bn = [m for m in svdd.modules() if isinstance(m, nn.BatchNorm1d)][0]
    assert torch.equal(bn.running_var, torch.ones_like(bn.running_var)) and not bn.running_mean.any()


def test_a_module_with_state_it_cannot_initialise_is_an_error():
    class Scale(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.empty(3))

    with pytest.raises(TypeError, match="Scale.*init_parameters_"):
        build_module(lambda: nn.Sequential(nn.Linear(2, 3), Scale()), _gen(0))
    init_module_(make_encoder((4,), (3,), 2), _gen(0))  # standard layers only: fine



def test_a_network_built_on_meta_keeps_each_tensors_strides():
    class Transposed(nn.Module):  # a [5, 3] parameter stored transposed: strides (1, 5), not (3, 1)
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.empty(3, 5).t())

        @torch.no_grad()
        def init_parameters_(self, generator=None):
            self.w.copy_(torch.arange(15.0).reshape(5, 3))

    built = build_module(Transposed, _gen(0))
    assert built.w.device.type == "cpu" and built.w.stride() == (1, 5)
    assert torch.equal(built.w, torch.arange(15.0).reshape(5, 3))


def test_the_denoiser_made_directly_draws_its_own_initialisation():
    # on the CPU (not built by build_module) the constructor still initialises: Kaiming-normal projections, a zero
    # output; the meta guard skips only the draws build_module makes afterwards
    torch.manual_seed(3)
    den = NETWORKS["denoiser"]()
    assert not den.out.weight.any() and den.inp.weight.std() > 0 and den.layers[0].conv.weight.std() > 0

