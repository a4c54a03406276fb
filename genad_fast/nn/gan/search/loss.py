"""The objective of AnoGAN's latent search and the result it reports (Schlegl et al., IPMI 2017, Sec. 2.2).

With a frozen generator G and the frozen critic's intermediate features f, a sample x is scored by

    L(z) = (1 - lam) * R(z) + lam * F(z),   R(z) = sum |x - G(z)|,   F(z) = sum |f(x) - f(G(z))|

(lam = 0.1 in the paper) at the best z the search finds. During the search L and its sub-gradients
dL/dG(z) = -(1 - lam) sign(x - G(z)), dL/df(G(z)) = -lam sign(f(x) - f(G(z))) come from the fused op
:func:`genad_fast.ops.anogan_residual`. The reported score is the loss at the best latent code each row
reached (over its iterations, and over the restarts of a sample), recomputed by :func:`final_result` in
one forward pass through the search's own program (so it is the loss the search saw), together with
its two parts ``residual`` = R and ``feature`` = F.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["SearchResult", "final_result"]


@dataclass
class SearchResult:
    """Per sample: ``loss`` = (1 - lam) * residual + lam * feature at the best code ``z``.

    ``residual`` = sum |x - G(z)|, ``feature`` = sum |f(x) - f(G(z))|, ``iterations`` = the Adam
    steps the chosen restart took (fewer than asked when it stopped early), ``restart`` = which restart won.
    """

    loss: torch.Tensor          # [B] float32
    residual: torch.Tensor      # [B]
    feature: torch.Tensor       # [B]
    z: torch.Tensor             # [B, latent_dim]
    iterations: torch.Tensor    # [B] int64
    restart: torch.Tensor       # [B] int64


def final_result(program, best_z: torch.Tensor, x: torch.Tensor, fx: torch.Tensor, lam: float, restarts: int,
                 steps: torch.Tensor) -> SearchResult:
    """The loss and its parts at each row's best code, and the best restart of each sample.

    Rows are ``restarts`` blocks of B samples (restart r of sample i is row r * B + i): ``best_z``
    [restarts * B, latent_dim], ``x`` [restarts * B, n] (flattened samples), ``fx`` their features
    [restarts * B, n_f], ``steps`` the Adam steps each row took. ``program.forward(z)`` gives G(z) and
    f(G(z)) as the iterations computed them."""
    dtype, device = x.dtype, x.device
    B = x.shape[0] // restarts
    gx, fgx = program.forward(best_z)   # (on the MLP path: views of its buffers, read at once)
    gx, fgx = gx.to(dtype), fgx.to(dtype)
    res = (x - gx).abs().sum(1)
    feat = (fx - fgx).abs().sum(1)
    loss = (1 - lam) * res + lam * feat
    if restarts > 1:
        pick = loss.view(restarts, B).argmin(0)
        sel = pick * B + torch.arange(B, device=device)
    else:
        pick = torch.zeros(B, dtype=torch.int64, device=device)
        sel = torch.arange(B, device=device)
    return SearchResult(loss[sel], res[sel], feat[sel], best_z[sel], steps[sel], pick)
