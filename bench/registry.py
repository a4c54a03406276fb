"""The case registry: what a benchmark case declares, and the standard providers.

A case is one operation at several sizes. It declares

- ``setup(size, device)``: builds the inputs (a dict of keyword arguments) for one size;
- ``providers``: name -> :class:`Provider`, each turning those inputs into a zero-argument call;
- ``items(size)`` (and ``item_unit``): the work one call does, for the throughput column;
- ``bytes_moved(size)``: for memory-bound cases, the bytes one call must read plus write at least,
  from which the fraction of the measured copy bandwidth is reported;
- ``check(ref, out)``: compares a provider's output with the eager one (None means it matches).

Adding a case is one small file in ``bench/cases/`` that calls :func:`register`.
"""
from __future__ import annotations

import fnmatch
import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

EAGER, COMPILE = "eager", "compile"
FUSED_BACKENDS = ("cpu", "cuda", "triton")
#: Ways of calling a detector on many series (bench/cases/many_series.py): a Python loop over the series (the
#: reference of those cases), one call on the collection, one call on a single series of the same total length.
SCALE_PROVIDERS = ("loop", "packed", "one_long")
PROVIDER_ORDER = (EAGER, COMPILE) + FUSED_BACKENDS + SCALE_PROVIDERS


class Unavailable(Exception):
    """A provider cannot run here; the message says why (reported, never silently dropped)."""


@dataclass(frozen=True)
class Size:
    label: str                      # as it appears in the results, e.g. "65536x64"
    params: dict[str, Any]          # what setup() needs, e.g. {"n": 65536, "d": 64}

    def __getitem__(self, key: str) -> Any:
        return self.params[key]


@dataclass(frozen=True)
class Provider:
    name: str
    device: str                     # "cpu" or "cuda": the only device it runs on; "any": every device
    build: Callable[[dict[str, Any]], Callable[[], Any]]
    # raises Unavailable (or genad_fast.BackendUnavailableError on its first call) when it cannot run


@dataclass
class Case:
    name: str
    mode: str                       # forward, fwd+bwd, inverse, ...
    sizes: list[Size]
    setup: Callable[[Size, torch.device], dict[str, Any]]
    providers: dict[str, Provider]
    items: Callable[[Size], float]
    item_unit: str = "elem"
    bytes_moved: Callable[[Size], float] | None = None
    check: Callable[[Any, Any], str | None] | None = None
    description: str = ""
    reference: str = EAGER          # the provider whose output the others are checked against (and timed against)
    #: A size far below the timed ones, for the correctness smoke run of every provider (CI runs it:
    #: ``GENAD_BENCH_SMOKE=1 pytest bench --benchmark-disable``); None: the smallest timed size is small enough.
    smoke: Size | None = None

    @property
    def smoke_size(self) -> Size:
        return self.smoke or self.sizes[0]

    @property
    def key(self) -> str:
        return f"{self.name}:{self.mode}"


_CASES: dict[str, Case] = {}


def register(case: Case) -> Case:
    if case.key in _CASES:
        raise ValueError(f"benchmark case {case.key!r} is registered twice")
    for name in case.providers:
        if name not in PROVIDER_ORDER:
            raise ValueError(f"case {case.key!r}: unknown provider {name!r}; use one of {PROVIDER_ORDER}")
    _CASES[case.key] = case
    return case


def unregister(key: str) -> None:
    _CASES.pop(key, None)


def all_cases() -> list[Case]:
    """Every registered case, after importing the modules of ``bench/cases/``."""
    import bench.cases  # noqa: F401  (importing registers the built-in cases)

    return list(_CASES.values())


def select(cases: list[Case], patterns: list[str] | None) -> list[Case]:
    """Cases whose name or ``name:mode`` matches one of the shell-style patterns (all when None)."""
    if not patterns:
        return cases
    return [c for c in cases if any(fnmatch.fnmatchcase(c.name, p) or fnmatch.fnmatchcase(c.key, p)
                                    for p in patterns)]


# --- standard providers --------------------------------------------------------------------------

def fused_op(name: str) -> Callable[..., Any]:
    """``genad_fast.ops.<name>``, looked up lazily so the harness runs before the op exists."""
    try:
        import genad_fast.ops as ops
    except Exception as exc:  # the package itself failed to import: every fused provider is out
        raise Unavailable(f"genad_fast does not import ({type(exc).__name__}: {exc})") from exc
    op = getattr(ops, name, None)
    if op is None:
        raise Unavailable(f"genad_fast.ops.{name} does not exist (not implemented yet)")
    return op


def standard_providers(
    eager: Callable[..., Any],
    fused: Callable[[str], Callable[..., Any]],
    wrap: Callable[[Callable[..., Any]], Callable[..., Any]] | None = None,
    backends: tuple[str, ...] = FUSED_BACKENDS,
) -> dict[str, Provider]:
    """eager, compile and fused providers of one operation.

    ``eager(**inputs)`` is the idiomatic PyTorch code; ``compile`` is ``torch.compile`` of exactly
    that function. ``fused(backend)`` returns a function with eager's signature running the fused
    op on that backend (use :func:`fused_op` in it). ``wrap(f)`` turns the core function into what
    one timed call runs, e.g. forward followed by backward; it is applied to all providers alike.
    """
    wrap = wrap or (lambda f: f)

    def bind(fn: Callable[..., Any], inputs: dict[str, Any]) -> Callable[[], Any]:
        run = wrap(fn)
        return functools.partial(run, **inputs)

    def build_compile(inputs: dict[str, Any]) -> Callable[[], Any]:
        # A fresh dynamo cache per size, so the first call's time is this size's compile time;
        # dynamic=False keeps each size on its own specialised kernels, as a fixed-shape user gets.
        torch._dynamo.reset()
        return bind(torch.compile(eager, dynamic=False), inputs)

    providers = {
        EAGER: Provider(EAGER, "any", lambda inputs: bind(eager, inputs)),
        COMPILE: Provider(COMPILE, "any", build_compile),
    }
    for backend in backends:
        providers[backend] = Provider(
            backend, "cpu" if backend == "cpu" else "cuda",
            functools.partial(lambda b, inputs: bind(fused(b), inputs), backend))
    return providers


# --- output checks -------------------------------------------------------------------------------

def _leaves(out: Any) -> list[Any]:
    if isinstance(out, (tuple, list)):
        return [leaf for item in out for leaf in _leaves(item)]
    return [out]


def allclose_check(rtol: float, atol: float) -> Callable[[Any, Any], str | None]:
    """A check comparing every tensor of the output with the eager output."""

    def check(ref: Any, out: Any) -> str | None:
        refs, outs = _leaves(ref), _leaves(out)
        if len(refs) != len(outs):
            return f"{len(outs)} outputs, eager gives {len(refs)}"
        for i, (r, o) in enumerate(zip(refs, outs)):
            if not isinstance(r, torch.Tensor):
                continue
            if not isinstance(o, torch.Tensor) or o.shape != r.shape:
                return f"output {i}: shape {getattr(o, 'shape', type(o))}, eager gives {tuple(r.shape)}"
            o = o.to(r.device, r.dtype)
            if not torch.allclose(o, r, rtol=rtol, atol=atol, equal_nan=True):
                err = (o - r).abs().nan_to_num(nan=float("inf")).max().item()
                return f"output {i} differs from eager: max abs error {err:.3g} (rtol {rtol}, atol {atol})"
        return None

    return check
