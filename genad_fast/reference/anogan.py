"""Eager AnoGAN latent-search ops (Schlegl et al., IPMI 2017): the oracle for the fused kernels.

Residual, per row of data x, generated G(z) and their discriminator features f(x), f(G(z)):
    loss     = (1−λ)·Σ_p |x − G(z)| + λ·Σ_f |f(x) − f(G(z))|
    grad_gx  = −(1−λ)·sign(x − G(z)),   grad_fgx = −λ·sign(f(x) − f(G(z)))
with sign(0) = 0 and sign(NaN) = NaN (``torch.sign`` gives 0 for NaN, so :func:`sign_nan` is used).

Masked Adam (Kingma & Ba, ICLR 2015), for each row i with ``active[i]`` (all rows at once, no host sync):
    step_i += 1;  m = lerp(m, g, 1−β1);  v = v·β2 + (1−β2)·g²
    z −= lr/(1−β1^step_i) · m / (√v/√(1−β2^step_i) + ε)
in the order of operations of ``torch.optim.Adam``'s default step, with the bias corrections in float64 as
torch computes them in Python; inactive rows (z, m, v and step) are left as they are.
"""
from __future__ import annotations

import torch


def sign_nan(d: torch.Tensor) -> torch.Tensor:
    """sign(d) with sign(±0) = 0 and sign(NaN) = NaN."""
    return torch.where(torch.isnan(d), d, torch.sign(d))


def anogan_residual(x: torch.Tensor, gx: torch.Tensor, fx: torch.Tensor, fgx: torch.Tensor,
                    lam: float = 0.1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss[...], grad_gx[..., P], grad_fgx[..., F]); see the module docstring. Differentiable in all four inputs
    through ``loss`` (plain torch ops)."""
    d = x - gx
    e = fx - fgx
    loss = (1 - lam) * d.abs().sum(-1) + lam * e.abs().sum(-1)
    with torch.no_grad():
        grad_gx = -(1 - lam) * sign_nan(d)
        grad_fgx = -lam * sign_nan(e)
    return loss, grad_gx, grad_fgx


STEP_LIMIT = 2**63 - 1  # step + 1 must stay an int64


def check_step_counts(step: torch.Tensor) -> None:
    """Every row's update count must be in [0, 2^63 − 1): a negative count has no meaning (1 − β^t would not be
    a bias correction) and 2^63 − 1 would wrap to −2^63 when incremented. A CPU tensor raises ValueError here;
    on a GPU the check is queued as a device-side assertion (no host synchronisation, so a search loop stays
    capturable in a CUDA graph), which raises at the next synchronisation."""
    message = "masked_adam_: step must hold update counts in [0, 2^63 - 1) (2^63 - 1 would wrap when incremented)"
    if step.numel() == 0:
        return
    if step.device.type != "cpu" or torch.compiler.is_compiling():  # (a traced value cannot branch the graph)
        torch._assert_async(((step >= 0) & (step < STEP_LIMIT)).all(), message)
        return
    lo, hi = torch.aminmax(step)
    if lo < 0 or hi >= STEP_LIMIT:
        raise ValueError(f"{message}, got {int(lo) if lo < 0 else int(hi)}")


@torch.no_grad()
def masked_adam_(z: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, step: torch.Tensor,
                 active: torch.Tensor, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8) -> None:
    """Adam on the rows of ``z[..., L]`` whose ``active[...]`` is set, in place (see the module docstring).

    ``step`` (int64, z's leading shape) counts each row's updates; ``m``, ``v`` are the moment estimates.
    """
    check_step_counts(step)
    act = active.unsqueeze(-1)
    new_step = step + active.to(step.dtype)
    t = new_step.to(torch.float64)
    # Inactive rows with step 0 divide by 0 here; torch.where below drops those values.
    neg_step_size = (-(lr / (1 - beta1 ** t))).to(z.dtype).unsqueeze(-1)
    bc2_sqrt = torch.sqrt(1 - beta2 ** t).to(z.dtype).unsqueeze(-1)
    m_new = torch.lerp(m, grad, 1 - beta1)
    v_new = torch.addcmul(v * beta2, grad, grad, value=1 - beta2)
    denom = v_new.sqrt() / bc2_sqrt + eps
    z_new = z + neg_step_size * m_new / denom
    z.copy_(torch.where(act, z_new, z))
    m.copy_(torch.where(act, m_new, m))
    v.copy_(torch.where(act, v_new, v))
    step.copy_(new_step)
