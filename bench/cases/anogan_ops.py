"""AnoGAN latent-search ops (Schlegl et al., IPMI 2017): the residual with its sub-gradients, masked Adam, and both.

One iteration of the batched search needs, besides the networks, ``anogan_residual`` (per row
loss = (1−λ)·Σ|x − G(z)| + λ·Σ|f(x) − f(G(z))| and the gradients −(1−λ)·sign(x − G(z)), −λ·sign(f(x) − f(G(z))))
and ``masked_adam_`` (torch.optim.Adam's step on the rows still active, each with its own step count). The eager
provider is what one writes in PyTorch without the fused ops: the loss and ``torch.sign`` for the gradients, and a
vectorised masked Adam with per-row bias corrections and ``torch.where`` (``torch.optim.Adam`` cannot mask rows or
keep per-row step counts). λ = 0.1, lr = 0.01, float32, 3 of 4 rows active (every 4th row converged).

Bytes moved, each tensor once (4 bytes per float32; inactive rows are skipped by the fused kernels):
- residual: read x, gx [B,P] and fx, fgx [B,F], write grad_gx, grad_fgx and loss[B]: 3BP + 3BF + B floats;
- masked Adam: active[B] (1 byte), and for the active rows read z, grad, m, v [L] and step (8 bytes), write z, m, v
  and step: 7L floats + 16 bytes per active row.

State: each provider runs on its own copy of z, m, v and step (made on its first, untimed call, which also returns
a snapshot of the updated state for the check), so every provider's checked output starts from the same state.
"""
from __future__ import annotations

import torch

from bench.registry import Case, Size, allclose_check, fused_op, register, standard_providers

LAM, LR, BETA1, BETA2, EPS = 0.1, 0.01, 0.9, 0.999, 1e-8
SIZES = [Size("B1024-P64-F128-L32", {"b": 1024, "p": 64, "f": 128, "l": 32}),
         Size("B65536-P64-F128-L32", {"b": 65536, "p": 64, "f": 128, "l": 32})]
SMOKE = Size("B64-P64-F128-L32-smoke", {"b": 64, "p": 64, "f": 128, "l": 32})
CHECK = allclose_check(rtol=1e-5, atol=1e-6)
MUTATED = ("z", "m", "v", "step")


def residual_eager(x, gx, fx, fgx):
    d = x - gx
    e = fx - fgx
    loss = (1 - LAM) * d.abs().sum(1) + LAM * e.abs().sum(1)
    return loss, -(1 - LAM) * torch.sign(d), -LAM * torch.sign(e)


def masked_adam_eager(z, grad, m, v, step, active):
    act = active.unsqueeze(1)
    step.add_(active)
    t = step.to(torch.float64)
    step_size = (LR / (1 - BETA1 ** t)).to(z.dtype).unsqueeze(1)
    bc2_sqrt = (1 - BETA2 ** t).sqrt().to(z.dtype).unsqueeze(1)
    m_new = torch.lerp(m, grad, 1 - BETA1)
    v_new = v * BETA2 + (1 - BETA2) * grad * grad
    z_new = z - step_size * m_new / (v_new.sqrt() / bc2_sqrt + EPS)
    z.copy_(torch.where(act, z_new, z))
    m.copy_(torch.where(act, m_new, m))
    v.copy_(torch.where(act, v_new, v))


def both_eager(x, gx, fx, fgx, z, grad, m, v, step, active):
    out = residual_eager(x, gx, fx, fgx)
    masked_adam_eager(z, grad, m, v, step, active)
    return out


def fused_residual(backend: str):
    op = fused_op("anogan_residual")
    return lambda x, gx, fx, fgx: op(x, gx, fx, fgx, LAM, backend=backend)


def fused_adam(backend: str):
    op = fused_op("masked_adam_")
    return lambda z, grad, m, v, step, active: op(z, grad, m, v, step, active, lr=LR, beta1=BETA1, beta2=BETA2,
                                                  eps=EPS, backend=backend)


def fused_both(backend: str):
    residual, adam = fused_residual(backend), fused_adam(backend)

    def run(x, gx, fx, fgx, z, grad, m, v, step, active):
        out = residual(x, gx, fx, fgx)
        adam(z, grad, m, v, step, active)
        return out

    return run


def private_state(f):
    """Run ``f`` on this provider's own copy of the mutated state; the first call returns its outputs and a
    snapshot of that state (the checked output), later (timed) calls only its outputs."""
    own: dict[str, torch.Tensor] = {}

    def call(**inputs):
        first = not own
        if first:
            own.update({k: inputs[k].clone() for k in MUTATED if k in inputs})
        out = f(**{**inputs, **own})
        if not first:
            return out
        out = () if out is None else tuple(out)
        return out + tuple(own[k].clone() for k in MUTATED if k in own)

    return call


def setup(size: Size, device: torch.device, residual: bool = True, adam: bool = True) -> dict:
    g = torch.Generator().manual_seed(0)
    b, p, f, l_ = size["b"], size["p"], size["f"], size["l"]
    inputs = {}
    if residual:
        for name, k in (("x", p), ("gx", p), ("fx", f), ("fgx", f)):
            inputs[name] = torch.randn(b, k, generator=g).to(device)
    if adam:
        inputs["z"] = torch.randn(b, l_, generator=g).to(device)
        inputs["grad"] = torch.randn(b, l_, generator=g).to(device)
        inputs["m"] = (0.1 * torch.randn(b, l_, generator=g)).to(device)
        inputs["v"] = (0.01 * torch.rand(b, l_, generator=g)).to(device)
        inputs["step"] = torch.full((b,), 10, dtype=torch.int64).to(device)
        inputs["active"] = (torch.arange(b) % 4 != 0).to(device)
    return inputs


def residual_bytes(s: Size) -> float:
    return 4.0 * (3 * s["b"] * s["p"] + 3 * s["b"] * s["f"] + s["b"])


def adam_bytes(s: Size) -> float:
    active_rows = s["b"] - (s["b"] + 3) // 4
    return s["b"] + active_rows * (4.0 * 7 * s["l"] + 16)


register(Case(
    "anogan_residual", "forward", SIZES, lambda s, d: setup(s, d, adam=False),
    standard_providers(residual_eager, fused_residual),
    items=lambda s: s["b"], item_unit="row", bytes_moved=residual_bytes, check=CHECK, smoke=SMOKE,
    description="AnoGAN residual loss per row with its sign sub-gradients, λ = 0.1, float32"))

register(Case(
    "masked_adam", "step", SIZES, lambda s, d: setup(s, d, residual=False),
    standard_providers(masked_adam_eager, fused_adam, wrap=private_state),
    items=lambda s: s["b"], item_unit="row", bytes_moved=adam_bytes, check=CHECK, smoke=SMOKE,
    description="one Adam step on the active rows (3 of 4) of z[B, L], per-row step counts, float32"))

register(Case(
    "anogan_ops", "residual+adam", SIZES, setup,
    standard_providers(both_eager, fused_both, wrap=private_state),
    items=lambda s: s["b"], item_unit="row", bytes_moved=lambda s: residual_bytes(s) + adam_bytes(s), check=CHECK,
    smoke=SMOKE,
    description="the op-level work of one latent-search iteration: residual, then masked Adam, float32"))
