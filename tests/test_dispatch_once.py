"""Dispatch once (issue #13, step 1): the backend is resolved by the op layer once per fit or scoring call and
handed down; no module outside genad_fast/ops (and the Triton kernels) names a kernel library or reads the op
layer's private capability tuples."""
from pathlib import Path

import numpy as np
import pytest

from genad_fast import _backend
from genad_fast.detectors import _call

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "genad_fast"
FORBIDDEN = ("torch.ops.genad_fast", "_IMPLEMENTED")
ALLOWED: set[str] = set()  # none: AnoGAN's latent search asks the call's Dispatch for linear_act too


def test_no_module_outside_the_op_layer_names_a_kernel_library_or_a_capability_tuple():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if rel.startswith(("genad_fast/ops/", "genad_fast/kernels/")) or rel in ALLOWED:
            continue
        text = path.read_text()
        offenders += [f"{rel}: {name}" for name in FORBIDDEN if name in text]
    assert not offenders, "\n".join(offenders)


def test_the_scan_sees_the_op_layer():  # the test above would pass vacuously if the package moved
    assert "torch.ops" in (PACKAGE / "ops" / "dispatch.py").read_text()
    assert len(list(PACKAGE.rglob("*.py"))) > 50


@pytest.fixture()
def counted(monkeypatch):
    """Counts of: detector calls opened, backend tables resolved (Dispatch.build), and, while a call is open,
    single-op resolutions and reads of GENAD_FAST_BACKEND (requested_backend(None)); a call reads the environment
    as it opens, before it is open."""
    counts = {"table": 0, "resolve_in_call": 0, "env_in_call": 0, "calls": 0}
    resolve_table, resolve, requested = _backend.resolve_table, _backend.resolve, _backend.requested_backend
    call_scope = _call.call_scope

    def count_table(*args, **kwargs):
        counts["table"] += 1
        return resolve_table(*args, **kwargs)

    def in_call() -> bool:
        return bool(getattr(_call._LOCAL, "table", None))   # a call is open on this thread

    def count_resolve(*args, **kwargs):
        counts["resolve_in_call"] += in_call()
        return resolve(*args, **kwargs)

    def count_env(backend):
        counts["env_in_call"] += backend is None and in_call()
        return requested(backend)

    def count_calls(*args, **kwargs):
        counts["calls"] += 1
        return call_scope(*args, **kwargs)

    monkeypatch.setattr(_backend, "resolve_table", count_table)
    monkeypatch.setattr(_backend, "resolve", count_resolve)
    monkeypatch.setattr(_backend, "requested_backend", count_env)
    monkeypatch.setattr(_call, "call_scope", count_calls)
    monkeypatch.delenv("GENAD_FAST_BACKEND", raising=False)
    return counts


def _detectors():
    from genad_fast.detectors.diffusion import DiffusionDetector
    from genad_fast.detectors.flow import FlowDetector

    rng = np.random.default_rng(0)
    series = (np.sin(np.arange(300)[:, None] / 5.0 + np.arange(2)) + 0.1 * rng.normal(size=(300, 2))).astype(np.float32)
    return [
        (FlowDetector(n_steps=2, hidden=8, epochs=1, verbose=False), rng.normal(size=(200, 4)).astype(np.float32)),
        (FlowDetector(n_steps=2, hidden=8, epochs=1, window=8, verbose=False), series),
        (DiffusionDetector(window=32, residual_channels=4, n_layers=2, embedding_dim=8, n_steps=6, epochs=1,
                           denoise_steps=1, verbose=False), series),
        (DiffusionDetector(window=32, mode="impute", residual_channels=4, n_layers=2, embedding_dim=8, n_steps=6,
                           epochs=1, denoise_steps=2, verbose=False), series),
    ]


@pytest.mark.parametrize("index", range(4), ids=["flow", "flow-series", "diffusion", "diffusion-impute"])
def test_a_call_resolves_the_backend_once(index, counted):
    det, data = _detectors()[index]
    det.fit(data)
    assert counted["calls"] >= 1
    assert counted["table"] == counted["calls"]       # one dispatch per fit or scoring call, none elsewhere
    assert counted["resolve_in_call"] == 0            # no op, model, plan or loop resolves again
    assert counted["env_in_call"] == 0
    for key in counted:
        counted[key] = 0
    det.decision_function(data[:120])
    assert counted == {"table": 1, "resolve_in_call": 0, "env_in_call": 0, "calls": 1}
