"""Tolerance tables and the comparisons the op specs use.

A :class:`Tolerances` table maps a dtype to ``dict(rtol=, atol=)`` for ``torch.testing.assert_close``, with
entries per backend where a backend's arithmetic differs (its own libm, fused multiply-adds, the interpreter's
numpy). Each spec states, next to each table, why the numbers are what they are.

Besides plain closeness: :func:`assert_terms_close` (a few ulps of the largest term of a short sum, for results
that may cancel) and :func:`assert_within_budget` (flash-attention's honest budget: a fused result at most k times
further from a float64 truth than the eager result in the same dtype is).
"""
from __future__ import annotations

import torch

from op_specs.targets import Target

F32, F64, BF16 = torch.float32, torch.float64, torch.bfloat16
EPS = {F32: torch.finfo(F32).eps, F64: torch.finfo(F64).eps}
EXACT = dict(rtol=0.0, atol=0.0)


def tol(rtol: float, atol: float | None = None) -> dict:
    """``dict(rtol=, atol=)``; atol defaults to rtol."""
    return dict(rtol=rtol, atol=rtol if atol is None else atol)


class Tolerances:
    """Tolerances of one comparison: ``{dtype: tol(...)}`` by default, overridden per backend.

    ``Tolerances({F32: tol(2e-5), F64: tol(1e-12)}, triton={F64: tol(1e-10)})``: a lookup takes the target's kind
    (``'interpreter'`` for Triton on CPU tensors), then its backend, then the default.
    """

    def __init__(self, default: dict, **per_backend: dict):
        self.default = default
        self.per_backend = per_backend

    def __call__(self, target: Target | str, dtype: torch.dtype) -> dict:
        keys = (target.kind, target.backend) if isinstance(target, Target) else (target,)
        for key in keys:
            if dtype in self.per_backend.get(key, {}):
                return dict(self.per_backend[key][dtype])
        return dict(self.default[dtype])


def close(got, want, tolerance: dict, **kwargs) -> None:
    """``torch.testing.assert_close`` with a tolerance from a table (and e.g. ``equal_nan=True``)."""
    torch.testing.assert_close(got, want, **tolerance, **kwargs)


def assert_terms_close(got: torch.Tensor, want: torch.Tensor, scale: torch.Tensor, ulps: float = 4.0) -> None:
    """|got − want| <= ulps·eps·scale elementwise, NaN where NaN: for sums of a few products, where a fused
    multiply-add and separately rounded products differ by a few ulps of the largest term (``scale``), not of
    the (possibly cancelled) result."""
    assert got.shape == want.shape and got.dtype == want.dtype, (got.shape, want.shape, got.dtype, want.dtype)
    nan_got, nan_want = torch.isnan(got), torch.isnan(want)
    assert torch.equal(nan_got, nan_want), "NaN positions differ"
    ok = ~nan_want
    g, w, s = got[ok].double(), want[ok].double(), scale[ok].double()
    inf = torch.isinf(w)
    assert torch.equal(g[inf], w[inf]), "infinite values differ"
    bound = ulps * EPS[got.dtype] * s[~inf] + torch.finfo(got.dtype).tiny
    err = (g[~inf] - w[~inf]).abs()
    worst = float((err / bound).max()) if err.numel() else 0.0
    assert worst <= 1.0, f"error {worst:.2f}x the budget of {ulps} ulps of the largest term"


def assert_within_budget(got: torch.Tensor, eager: torch.Tensor, truth: torch.Tensor, rtol: float, atol: float,
                         factor: float = 2.0) -> tuple[float, float]:
    """The fused result may be at most ``factor`` times further from a float64 truth than the eager result in the
    same dtype is (its largest error), plus rtol/atol (STYLE.md, flash-attention's honest error budget); factor 0
    is a plain comparison with the truth. NaN/inf must sit where the truth has them.
    Returns (the fused result's largest error, the eager result's)."""
    truth = truth.double()
    g, e = got.double(), eager.double()
    finite = torch.isfinite(truth)
    eager_err = float((e - truth)[finite].abs().max()) if finite.any() else 0.0
    torch.testing.assert_close(g, truth, rtol=rtol, atol=atol + factor * eager_err, equal_nan=True)
    err = float((g - truth)[finite].abs().max()) if finite.any() else 0.0
    return err, eager_err


def ulp_distance(got: torch.Tensor, want: torch.Tensor) -> torch.Tensor:
    """|got − want| in float32 ulps of |want| (for float32 values, both finite)."""
    w = want.double()
    ulp = torch.finfo(torch.float32).eps * w.abs().clamp_min(torch.finfo(torch.float32).tiny)
    return (got.double() - w).abs() / ulp
