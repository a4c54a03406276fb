"""Seeded synthetic data with labelled anomalies: multivariate series and tabular mixtures.

Used by the demo, ``genad-fast eval`` and the tests of every detector. Only numpy; the same ``seed`` gives
the same arrays on every machine. The results are the containers of :mod:`genad_fast.data.containers`.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from genad_fast.data.containers import ANOMALY_KINDS, Anomaly, SeriesData, TabularData

__all__ = ["make_series", "make_tabular", "SERIES_TYPES", "ALL_SERIES_TYPES", "SCOPES", "TABULAR_TYPES"]

#: The default anomaly types of :func:`make_series` (kept so that old seeds give the same series).
SERIES_TYPES = ("point", "contextual", "collective")
#: Every anomaly type :func:`make_series` can inject.
ALL_SERIES_TYPES = ("point", "contextual", "collective", "trend", "frequency")
#: Channel scopes of :func:`make_series` events.
SCOPES = ("mixed", "single", "correlated")
TABULAR_TYPES = ("uniform", "shifted")


def _check_types(types: Sequence[str], allowed: tuple[str, ...], name: str) -> tuple[str, ...]:
    if isinstance(types, str):
        types = (types,)
    types = tuple(types)
    if not types:
        raise ValueError(f"{name} must name at least one of {', '.join(allowed)}")
    for t in types:
        if t not in allowed:
            raise ValueError(f"unknown {name} entry {t!r}; choose from {', '.join(allowed)}")
    if len(set(types)) != len(types):
        raise ValueError(f"{name} repeats an entry: {types}")
    return types


def _check_positive_int(name: str, value: int, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def make_series(T: int = 4000, C: int = 8, *, train_fraction: float = 0.5, period: int = 64,
                noise: float = 0.1, anomaly_types: Sequence[str] = SERIES_TYPES, contamination: float = 0.02,
                seed: int = 0, dtype: type = np.float32, scope: str = "mixed") -> SeriesData:
    """A seeded multivariate series: a clean training part and a test part with labelled anomalies.

    Recipe. Three latent sinusoids with periods ``P = period * (1, 0.43, 3.1)`` (incommensurate, so
    the pattern does not repeat exactly) and random phases ``phi_k`` drive every channel::

        s_c(t) = b_c + sum_k A[c, k] * sin(2 pi t / P_k + phi_k + delta[c, k])
        x_c(t) = s_c(t) + noise * std(s_c) * eps,   eps ~ N(0, 1)

    with ``A ~ N(0, 1)`` (so channels are correlated through the shared latents), small per-channel
    phase offsets ``delta ~ N(0, 0.3^2)`` and offsets ``b ~ N(0, 1)``; ``std_c`` is the standard
    deviation of ``s_c`` over the training part. The first ``round(T * train_fraction)`` timestamps
    are the training part (no anomalies), the rest the test part, continuing the same process.
    Into the test part go, at random non-overlapping places (gaps of at least ``period // 4``),
    events of ``anomaly_types`` (default: the first three; :data:`ALL_SERIES_TYPES` has all five).

    Each event has a channel ``scope``. ``"single"``: one channel changes, the others keep their
    normal values, so the anomaly breaks the cross-channel relations. ``"correlated"``: every
    channel changes, through the shared latent drivers (a change ``d_k(t)`` of latent ``k`` moves
    channel ``c`` by ``A[c, k] * d_k(t)``) or, for collective events, all together, so the
    channels stay consistent and only the temporal behaviour is wrong. ``scope="mixed"`` (default)
    keeps the original recipe for point, contextual and collective events (scope ``"subset"``,
    below) and draws single or correlated with probability 1/2 per trend or frequency event.

    - ``point``: one timestamp, a spike of ``+-U(4, 6)``. Subset: 1 to ``max(1, C // 3)`` random
      channels, each ``x_c += +-U(4, 6) * std_c``; single: one channel, the same; correlated: a
      latent jump ``d_k = +-U(4, 6)`` of a random latent ``k``.
    - ``contextual``: ``period // 2`` timestamps take the clean signal half a main period ahead,
      ``s_c(t + period / 2)`` (plus its noise): every value is normal for the channel, but wrong for
      its own recent past (and, unless correlated, for the phase of the other channels). Subset: 1 to
      ``max(1, C // 2)`` channels; single: one; correlated: all.
    - ``collective``: ``period // 2`` timestamps either frozen (held at the value just before the
      segment) or a noise burst of std ``max(3 * noise, 0.3) * std_c``. Subset: all channels,
      independent bursts; single: one channel; correlated: all channels frozen, or a burst of the
      latents ``d_k ~ N(0, max(3 * noise, 0.3)^2)`` (so the channels jump together).
    - ``trend``: ``period`` timestamps with a linear drift from 0 to ``+-U(3, 5)``: single
      ``x_c += r(t) * std_c`` on one channel, correlated ``d_0 = r(t)`` on the main latent. At the
      end of the segment the series drops back to normal.
    - ``frequency``: ``period`` timestamps in which one latent sinusoid runs ``f`` times as fast
      (``f ~ U(1.8, 2.5)`` or ``1 / f``, equally likely), phase continuous at the start: correlated
      on the main latent in every channel, single in one channel on the latent that channel
      loads most (``argmax_k |A[c, k]|``).

    The number of events of each type is chosen so that about ``contamination * T_test``
    timestamps are labelled, spread evenly over the types, at least one event per type. The
    timestamps of the events (the ``start:stop`` of each :class:`Anomaly`) are labelled 1. Everything is
    drawn from ``numpy.random.default_rng(seed)``; the signal and noise are drawn before the anomaly
    plan, and the defaults give the same arrays as before the trend/frequency kinds existed.

    Returns a :class:`SeriesData` (unpacks as ``train, test, labels``); arrays are ``dtype``.
    """
    T = _check_positive_int("T", T, 4)
    C = _check_positive_int("C", C)
    period = _check_positive_int("period", period, 4)
    types = _check_types(anomaly_types, ALL_SERIES_TYPES, "anomaly_types")
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    if not 0.0 < float(train_fraction) < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
    if not 0.0 < float(contamination) < 0.5:
        raise ValueError(f"contamination must be in (0, 0.5), got {contamination!r}")
    if not float(noise) >= 0.0:
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    n_train = int(round(T * train_fraction))
    n_test = T - n_train
    if n_train < 1 or n_test < 1:
        raise ValueError(f"T={T} with train_fraction={train_fraction} leaves an empty part")

    rng = np.random.default_rng(seed)
    periods = period * np.array([1.0, 0.43, 3.1])
    phases = rng.uniform(0.0, 2 * np.pi, size=3)
    amp = rng.normal(0.0, 1.0, size=(C, 3))
    delta = rng.normal(0.0, 0.3, size=(C, 3))
    offset = rng.normal(0.0, 1.0, size=C)

    def clean(t: np.ndarray) -> np.ndarray:  # [len(t), C]
        arg = 2 * np.pi * t[:, None, None] / periods[None, None, :] + phases + delta[None]
        return offset + (amp[None] * np.sin(arg)).sum(-1)

    t_all = np.arange(T, dtype=np.float64)
    s = clean(t_all)
    std = s[:n_train].std(axis=0)
    std = np.where(std > 0, std, 1.0)
    eps = rng.normal(0.0, 1.0, size=(T, C))
    x = s + noise * std * eps
    train, test = x[:n_train].copy(), x[n_train:].copy()
    t_test = t_all[n_train:]

    seg = max(2, period // 2)
    lengths = {"point": 1, "contextual": seg, "collective": seg, "trend": period, "frequency": period}
    budget = contamination * n_test / len(types)
    plan = [k for k in types for _ in range(max(1, int(round(budget / lengths[k]))))]
    rng.shuffle(plan)
    gap = max(1, period // 4)
    need = sum(lengths[k] for k in plan) + gap * (len(plan) + 1)
    if need > n_test:
        raise ValueError(f"{len(plan)} anomalies ({need} timestamps with gaps) do not fit in a test part of "
                         f"{n_test}; lower contamination or raise T")
    # Split the free timestamps at random between the gaps: sorted uniform cut points.
    free = n_test - need
    cuts = np.sort(rng.integers(0, free + 1, size=len(plan)))
    extra = np.diff(np.concatenate([[0], cuts]))
    kinds = np.zeros(n_test, dtype=np.int8)
    events = []
    pos = gap
    all_channels = np.arange(C)
    for kind, add in zip(plan, extra):
        start = pos + int(add)
        stop = start + lengths[kind]
        if scope == "mixed" and kind in SERIES_TYPES:
            chans, detail = _inject_subset(kind, test, s[n_train:], start, stop, t_test, clean, std, noise,
                                           period, rng)
            ev_scope = "subset"
        else:
            ev_scope = scope if scope != "mixed" else ("single" if rng.random() < 0.5 else "correlated")
            chans = (all_channels if ev_scope == "correlated" or C == 1
                     else np.array([rng.integers(C)]))
            if C == 1:
                ev_scope = "single"
            detail = _inject_scoped(kind, ev_scope, test, start, stop, t_test, chans, clean, std, noise, period,
                                    periods, phases, amp, delta, rng)
        kinds[start:stop] = ANOMALY_KINDS[kind]
        events.append(Anomaly(kind, start, stop, tuple(int(c) for c in chans), detail, ev_scope))
        pos = stop + gap
    labels = (kinds > 0).astype(np.int8)
    params = dict(T=T, C=C, train_fraction=train_fraction, period=period, noise=noise,
                  anomaly_types=types, contamination=contamination, seed=seed, scope=scope)
    return SeriesData(train.astype(dtype), test.astype(dtype), labels, kinds, tuple(events), params)


def _inject_subset(kind, test, s_test, start, stop, t_test, clean, std, noise, period, rng):
    """The original (``scope="mixed"``) point, contextual and collective events; draws unchanged."""
    C = test.shape[1]
    if kind == "point":
        chans = np.sort(rng.choice(C, size=rng.integers(1, max(1, C // 3) + 1), replace=False))
        sign = rng.choice([-1.0, 1.0], size=len(chans))
        mag = rng.uniform(4.0, 6.0, size=len(chans))
        test[start, chans] += sign * mag * std[chans]
        return chans, "spike of " + ", ".join(f"{m * g:+.2f} std" for m, g in zip(mag, sign))
    if kind == "contextual":
        chans = np.sort(rng.choice(C, size=rng.integers(1, max(1, C // 2) + 1), replace=False))
        tt = t_test[start:stop]
        test[start:stop, chans] += (clean(tt + period / 2.0) - clean(tt))[:, chans]
        return chans, f"signal shifted by half a period ({period / 2:g} steps)"
    chans = np.arange(C)
    if rng.random() < 0.5:
        test[start:stop] = test[start - 1]  # start >= gap >= 1
        return chans, "frozen"
    burst = max(3.0 * noise, 0.3) * std
    test[start:stop] = s_test[start:stop] + burst * rng.normal(size=(stop - start, C))
    return chans, f"noise burst (std {max(3.0 * noise, 0.3):g} x channel std)"


def _inject_scoped(kind, scope, test, start, stop, t_test, chans, clean, std, noise, period, periods, phases, amp,
                   delta, rng) -> str:
    """A single-channel (``chans`` = one channel) or correlated (every channel, via the latents) event."""
    L = stop - start
    tt = t_test[start:stop]
    corr = scope == "correlated"
    if kind == "point":
        sign = rng.choice([-1.0, 1.0])
        mag = sign * rng.uniform(4.0, 6.0)
        if corr:
            k = int(rng.integers(3))
            test[start] += mag * amp[:, k]
            return f"jump of {mag:+.2f} in latent {k}"
        test[start, chans] += mag * std[chans]
        return f"spike of {mag:+.2f} std"
    if kind == "contextual":
        test[start:stop, chans] += (clean(tt + period / 2.0) - clean(tt))[:, chans]
        return f"signal shifted by half a period ({period / 2:g} steps)"
    if kind == "collective":
        level = max(3.0 * noise, 0.3)
        if rng.random() < 0.5:
            test[start:stop, chans] = test[start - 1, chans]  # start >= gap >= 1
            return "frozen"
        if corr:
            test[start:stop] += rng.normal(0.0, level, size=(L, 3)) @ amp.T
            return f"latent noise burst (std {level:g})"
        test[start:stop, chans] += level * std[chans] * rng.normal(size=(L, len(chans)))
        return f"noise burst (std {level:g} x channel std)"
    if kind == "trend":
        end = rng.choice([-1.0, 1.0]) * rng.uniform(3.0, 5.0)
        ramp = end * np.arange(1, L + 1) / L
        if corr:
            test[start:stop] += ramp[:, None] * amp[:, 0]
            return f"drift of the main latent to {end:+.2f}"
        test[start:stop, chans] += ramp[:, None] * std[chans]
        return f"drift to {end:+.2f} std"
    # frequency
    f = rng.uniform(1.8, 2.5)
    if rng.random() < 0.5:
        f = 1.0 / f
    c = int(chans[0])
    k = 0 if corr else int(np.argmax(np.abs(amp[c])))
    t0 = t_test[start]
    old = 2 * np.pi * tt / periods[k] + phases[k]
    new = 2 * np.pi * (t0 + f * (tt - t0)) / periods[k] + phases[k]
    d = amp[chans, k] * (np.sin(new[:, None] + delta[chans, k]) - np.sin(old[:, None] + delta[chans, k]))
    test[start:stop, chans] += d
    return f"latent {k} at {f:.2f}x its frequency"


def _mixture_logpdf(x: np.ndarray, weights: np.ndarray, means: np.ndarray, chols: list[np.ndarray]) -> np.ndarray:
    D = x.shape[1]
    comps = []
    for w, m, L in zip(weights, means, chols):
        z = np.linalg.solve(L, (x - m).T).T
        logdet = 2 * np.log(np.diag(L)).sum()
        comps.append(np.log(w) - 0.5 * (z * z).sum(1) - 0.5 * logdet - 0.5 * D * np.log(2 * np.pi))
    comps = np.stack(comps, 1)
    top = comps.max(1, keepdims=True)
    return (top + np.log(np.exp(comps - top).sum(1, keepdims=True)))[:, 0]


def make_tabular(n_train: int = 1000, n_test: int = 500, n_features: int = 8, *, n_clusters: int = 3,
                 contamination: float = 0.05, outlier_types: Sequence[str] = TABULAR_TYPES, shift: float = 6.0,
                 seed: int = 0, dtype: type = np.float32) -> TabularData:
    """Gaussian-mixture normals and labelled outliers; the training part is clean.

    Normals: ``n_clusters`` Gaussians with means ``~ N(0, 3^2 I)``, covariances
    ``A A^T / D + 0.1 I`` (``A ~ N(0, 1)``) and Dirichlet(5) weights. ``round(contamination * n_test)``
    test rows are outliers, split over ``outlier_types``:

    - ``uniform``: uniform in the training data's bounding box widened by 10 % per side;
    - ``shifted``: a mixture sample moved ``shift`` cluster standard deviations
      (``sqrt(trace(cov) / D)``) along a random unit direction.

    An outlier candidate is kept only if its mixture log-density is below the 1st percentile of
    the training rows' log-densities, so every label 1 is an outlier by the true density.
    Returns :class:`TabularData` (unpacks as ``train, test, labels``), rows shuffled.
    """
    n_train = _check_positive_int("n_train", n_train)
    n_test = _check_positive_int("n_test", n_test)
    D = _check_positive_int("n_features", n_features)
    K = _check_positive_int("n_clusters", n_clusters)
    types = _check_types(outlier_types, TABULAR_TYPES, "outlier_types")
    if not 0.0 < float(contamination) < 0.5:
        raise ValueError(f"contamination must be in (0, 0.5), got {contamination!r}")
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 3.0, size=(K, D))
    covs = []
    for _ in range(K):
        A = rng.normal(size=(D, D))
        covs.append(A @ A.T / D + 0.1 * np.eye(D))
    chols = [np.linalg.cholesky(c) for c in covs]
    weights = rng.dirichlet(np.full(K, 5.0))

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        comp = rng.choice(K, size=n, p=weights)
        z = rng.normal(size=(n, D))
        out = np.empty((n, D))
        for k in range(K):
            idx = comp == k
            out[idx] = means[k] + z[idx] @ chols[k].T
        return out, comp

    train, _ = sample(n_train)
    floor = np.quantile(_mixture_logpdf(train, weights, means, chols), 0.01)
    n_out = int(round(contamination * n_test))
    counts = [n_out // len(types) + (1 if i < n_out % len(types) else 0) for i in range(len(types))]
    lo, hi = train.min(0), train.max(0)
    pad = 0.1 * (hi - lo)
    outliers, out_kinds = [], []
    for kind, count in zip(types, counts):
        got: list[np.ndarray] = []
        for _ in range(1000):
            if sum(len(g) for g in got) >= count:
                break
            m = max(4 * count, 16)
            if kind == "uniform":
                cand = rng.uniform(lo - pad, hi + pad, size=(m, D))
            else:
                base, comp = sample(m)
                direction = rng.normal(size=(m, D))
                direction /= np.linalg.norm(direction, axis=1, keepdims=True)
                scale = np.sqrt(np.array([np.trace(c) / D for c in covs]))[comp]
                cand = base + shift * scale[:, None] * direction
            keep = _mixture_logpdf(cand, weights, means, chols) < floor
            got.append(cand[keep])
        pts = np.concatenate(got)[:count] if got else np.empty((0, D))
        if len(pts) < count:
            raise RuntimeError(f"could not draw {count} {kind} outliers below the density floor; raise shift")
        outliers.append(pts)
        out_kinds.append(np.full(count, ANOMALY_KINDS[kind], dtype=np.int8))
    normals, _ = sample(n_test - n_out)
    test = np.concatenate([normals, *outliers])
    kinds = np.concatenate([np.zeros(len(normals), dtype=np.int8), *out_kinds])
    order = rng.permutation(n_test)
    test, kinds = test[order], kinds[order]
    params = dict(n_train=n_train, n_test=n_test, n_features=D, n_clusters=K, contamination=contamination,
                  outlier_types=types, shift=shift, seed=seed)
    return TabularData(train.astype(dtype), test.astype(dtype), (kinds > 0).astype(np.int8), kinds, params)
