"""BaseDetector: the estimator API every genad_fast detector inherits (scikit-learn / PyOD conventions).

Users see::

    det = SomeDetector(window=64, contamination=0.01, device="auto", seed=0).fit(X_train)
    scores = det.decision_function(X_test)  # higher = more anomalous; one per row, or one per timestamp
    labels = det.predict(X_test)            # 1 where score > det.threshold_, else 0
    det.save("model.pt"); det2 = SomeDetector.load("model.pt", map_location="cpu")

Writing a detector
==================
Subclass :class:`BaseDetector`, list your own hyper-parameters in ``__init__`` and pass the
base ones on. Either spell them out (the scikit-learn way) or forward ``**kwargs``; both work
with ``get_params``/``set_params``/``sklearn.base.clone``::

    class KDEDetector(BaseDetector):
        min_fit_samples = 2                       # optional; or override _min_fit_samples()

        def __init__(self, bandwidth=1.0, **kwargs):
            super().__init__(**kwargs)
            self.bandwidth = bandwidth            # __init__ only stores arguments: no checks, no work

        def _fit_model(self, data):              # data: [N, D] rows, or [n, W, C] windows (a view)
            self.reference_ = data.reshape(data.shape[0], -1).clone()

        def _score_model(self, batch):           # -> [b] (or [b, W] per timestamp for windows)
            return -kde_log_density(batch.reshape(batch.shape[0], -1), self.reference_, self.bandwidth)

        def _get_state(self):
            return {"reference": self.reference_}

        def _set_state(self, state):
            self.reference_ = state["reference"].to(self.device_)

    register_detector("kde", KDEDetector)         # makes it known to the CLI and genad_fast.load

Hook contract (the base calls these; none of them validates user data, the base already did):

``_fit_model(data)`` *required*
    Train on ``data``: tabular ``[N, D]`` rows, or for ``window=W`` the grid windows
    ``[n_windows, W, C]`` of the training series (a zero-copy view of
    :func:`genad_fast.series.sliding_windows`, stride ``self.stride``; copy one batch at a
    time, e.g. ``data[idx].reshape(len(idx), -1)``). ``data`` is already normalised
    (``normalize=True``), on ``self.device_``, of dtype ``self._data_dtype()`` (float32), finite,
    and holds at least ``self._min_fit_samples()`` rows/windows. Detectors never touch the
    process-global RNG (threads share it): draw only from ``self._torch_generator(purpose)``,
    ``self._numpy_rng(purpose)`` or ``current_call(self).generator(name, device)``, and build
    networks with :func:`genad_fast.detectors._call.build_network` (initialised from a
    generator). Show epochs with ``self._progress(...)``, log them with
    ``self._log_epoch(...)``. Set fitted attributes with a trailing underscore.
``_score_model(batch)`` *required*
    Scores of ``batch`` (``[b, D]`` rows or ``[b, W, C]`` windows, at most
    ``self.score_batch_size`` of them), higher = more anomalous: a tensor ``[b]``, or for windows
    optionally ``[b, W]`` (one score per timestamp of each window). Runs under
    ``torch.inference_mode()`` unless the class sets ``score_needs_grad = True`` (e.g. AnoGAN's
    latent search). A stochastic score draws from the call's generators
    (:mod:`genad_fast.detectors._call`), so it is reproducible, and the same for a row whatever
    other rows share the call.
``_get_state() -> dict`` / ``_set_state(state)`` *required for save/load*
    Everything ``_fit_model`` learned, as tensors, numbers, strings, None, lists, tuples and
    dicts (``module.state_dict()`` qualifies; modules and arbitrary objects do not: files are
    read with ``torch.load(weights_only=True)``). ``_set_state`` runs on a fresh instance built
    from the saved ``get_params()``, after the base restored ``device_``, ``n_features_in_``,
    ``feature_names_in_``, ``normalizer_``, ``seed_``, ``threshold_`` and ``decision_scores_``;
    the tensors arrive on ``map_location``.
``_fit_series(series)`` / ``_score_series(series) -> [T]`` *optional*
    Whole-series entry points, ``series`` normalised ``[T, C]``. The defaults window the series
    (``_fit_model(sliding_windows(series, W, S))``; scoring: every window of
    :func:`genad_fast.series.window_starts` in batches through ``_score_model``, then
    :func:`genad_fast.series.windows_to_timestamps` with ``reduce``). A detector that scores a
    series its own way (e.g. in tiles) overrides these.
``_score_rows(rows) -> [N]`` *optional*: tabular scoring; the default batches ``_score_model``.
``_min_fit_samples() -> int`` *optional*: fewest rows/windows ``fit`` accepts (default: the
    class attribute ``min_fit_samples`` = 2).
``_data_dtype() -> torch.dtype`` *optional*: dtype the data is cast to (default float32).

Training scores: after the fit hook, the base scores the training data through the same path
as ``decision_function``: ``decision_scores_`` and ``threshold_`` (by default
``quantile(decision_scores_, 1 - contamination)``, linear interpolation, numpy's default; see the
``threshold`` parameter) follow. Non-finite training scores are an error (a diverged model is not
returned as fitted).
"""
from __future__ import annotations

import contextlib
import inspect
import logging
import zlib
from collections.abc import Iterable
from typing import Any, ClassVar

import numpy as np
import torch

from genad_fast import _backend
from genad_fast.detectors._device import resolve_device
from genad_fast.detectors._extremes import (
    extreme_entries,
    infinite_timestamps,
    may_hold_extremes,
    replace_extremes,
    warn_constant,
    warn_extremes,
)
# Model files: _io reads and writes them without importing this module (it finds classes through the
# registry), so save/load call straight down into it.
from genad_fast.detectors._io import load_detector, save_detector
from genad_fast.detectors._validation import (
    NotFittedError,
    check_finite,
    check_int_param,
    check_rank,
    to_tensor,
)
from genad_fast.series import (
    REDUCTIONS,
    Normalizer,
    constant_columns,
    iter_window_batches,
    n_window_batches,
    sliding_windows,
    windows_to_timestamps,
)

logger = logging.getLogger("genad_fast")

__all__ = ["BaseDetector", "resolve_device"]


def _stream_seed(seed: int, purpose: str) -> int:
    """An independent 63-bit seed for each named use of the detector's seed (SeedSequence spawn keys)."""
    ss = np.random.SeedSequence(seed, spawn_key=(zlib.crc32(purpose.encode()),))
    hi, lo = (int(v) for v in ss.generate_state(2, np.uint32))
    return ((hi << 32) | lo) & ((1 << 63) - 1)


class BaseDetector:
    """Base of all genad_fast detectors; see the module docstring for the hook contract.

    Parameters (every detector has these)
    ----------
    window : int or None, default None
        None: tabular data ``(n_samples, n_features)``, one score per row. An int W: the data is
        a series ``(T, C)`` (1-D = one channel), modelled through windows of W timestamps, one
        score per timestamp.
    stride : int, default 1
        Step between window starts (series only). The last window is aligned to the end of the
        series so the tail is scored.
    contamination : float in (0, 0.5], default 0.1
        Expected fraction of anomalies; with ``threshold=None`` (the default), ``threshold_`` is the
        ``1 - contamination`` quantile of the training scores (PyOD's default of 0.1; with clean
        training data it is the fraction of training points flagged, so lower it, e.g. to 0.01, for
        fewer false alarms).
    reduce : "mean", "max" or "min", default "mean"
        How the scores of the windows covering a timestamp combine (series only).
    normalize : bool, default True
        Standardise each feature/channel with mean and std of the training data
        (:class:`genad_fast.series.Normalizer`), stored in the model and applied at scoring.
    device : "auto", "cpu", "cuda" or "cuda:<i>", default "auto"
        Where the model trains and scores; "auto" takes a visible GPU. The device actually used is
        ``device_`` after fit or load.
    backend : None or "eager", "cpu", "cuda", "triton"
        Implementation of the fused ops (None: ``GENAD_FAST_BACKEND``, else automatic). A backend
        named explicitly that cannot run is an error at fit.
    seed : int or None, default 0
        Seeds every random choice of fit and scoring, through generators derived from it (the
        process-global RNG is never read or changed). None draws a fresh seed at fit (kept in ``seed_``).
    verbose : bool, default True
        Progress bars for training epochs and long scoring (tqdm, on stderr).
    threshold : None, float, str or threshold object, default None
        How ``threshold_`` is set from the training scores (:mod:`genad_fast.thresholds`). None or
        ``"contamination"``: the ``1 - contamination`` quantile. A float: that score, fixed.
        ``"pot"``, ``"spot"``, ``"dspot"``: the extreme-value threshold of risk q = 1e-4 (Siffer et al.,
        KDD 2017; at fit SPOT/DSPOT calibrate on the training scores, so ``"spot"`` gives POT's value and
        ``"dspot"`` the last local mean plus the POT threshold of the deviations). An object such as
        ``POTThreshold(q=1e-3)``: fitted (as an unfitted copy) on the training scores. Training scores
        are lower than fresh ones for a model that overfits, so thresholds from them flag more than
        intended on new data; :meth:`set_threshold` refits on held-out data.

    Fitted attributes: ``threshold_``, ``decision_scores_`` (float64 scores of the training data,
    one per row or per timestamp), ``n_features_in_``, ``feature_names_in_`` (DataFrame columns or
    None), ``normalizer_`` (or None), ``seed_``, ``device_``.
    """

    #: Rows (tabular) or windows (series) per ``_score_model`` call. A subclass may expose it as a
    #: constructor parameter of the same name.
    score_batch_size: int = 4096
    #: Fewest training rows/windows; subclasses raise it (e.g. for a validation split).
    min_fit_samples: ClassVar[int] = 2
    #: True for detectors whose scoring differentiates (AnoGAN's latent search): no inference_mode.
    score_needs_grad: ClassVar[bool] = False

    def __init__(self, *, window: int | None = None, stride: int = 1, contamination: float = 0.1,
                 reduce: str = "mean", normalize: bool = True, device: str = "auto",
                 backend: str | None = None, seed: int | None = 0, verbose: bool = True,
                 threshold: Any = None) -> None:
        self.window = window
        self.stride = stride
        self.contamination = contamination
        self.reduce = reduce
        self.normalize = normalize
        self.device = device
        self.backend = backend
        self.seed = seed
        self.verbose = verbose
        self.threshold = threshold

    # ------------------------------------------------------------------ parameters (sklearn rules)
    @classmethod
    def _init_signature_params(cls) -> tuple[list[inspect.Parameter], bool]:
        init = cls.__dict__.get("__init__")
        if init is None:  # inherits its parent's __init__
            for base in cls.__mro__[1:]:
                if "__init__" in base.__dict__:
                    init = base.__dict__["__init__"]
                    break
        params, var_kw = [], False
        for p in inspect.signature(init).parameters.values():
            if p.name == "self":
                continue
            if p.kind == p.VAR_POSITIONAL:
                raise TypeError(f"{cls.__name__}.__init__ takes *{p.name}; detectors must name their "
                                f"parameters (scikit-learn convention)")
            if p.kind == p.VAR_KEYWORD:
                var_kw = True
                continue
            params.append(p)
        return params, var_kw

    @classmethod
    def _param_defaults(cls) -> dict[str, Any]:
        """Every parameter name with its default: the class's own __init__, plus the parents' when it forwards ``**kwargs``."""
        out: dict[str, Any] = {}
        for klass in cls.__mro__:
            if not (isinstance(klass, type) and issubclass(klass, BaseDetector)):
                continue
            if klass is not cls and "__init__" not in klass.__dict__:
                continue
            params, var_kw = klass._init_signature_params()
            for p in params:
                out.setdefault(p.name, p.default)
            if not var_kw:
                break
            # **kwargs: the parameters of the next __init__ up the MRO are ours too.
        return out

    @classmethod
    def _get_param_names(cls) -> list[str]:
        return sorted(cls._param_defaults())

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters, as ``sklearn.base.BaseEstimator.get_params``."""
        out: dict[str, Any] = {}
        for key in self._get_param_names():
            value = getattr(self, key)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{key}__{k}", v) for k, v in value.get_params().items())
            out[key] = value
        return out

    def set_params(self, **params: Any) -> "BaseDetector":
        """Set constructor parameters (``nested__param`` for nested estimators); returns self."""
        if not params:
            return self
        from genad_fast.detectors._renamed import canonical_params

        # A renamed parameter's old spelling (score=) still works, with a DeprecationWarning.
        params = canonical_params(params, self._get_param_names(), type(self).__name__)
        valid = self.get_params(deep=True)
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            key, delim, sub = key.partition("__")
            if key not in valid:
                raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}; valid parameters: "
                                 f"{', '.join(self._get_param_names())}")
            if delim:
                nested.setdefault(key, {})[sub] = value
            else:
                setattr(self, key, value)
                valid[key] = value
        for key, sub_params in nested.items():
            valid[key].set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        defaults = self._param_defaults()
        shown = []
        for key in self._get_param_names():
            value = getattr(self, key, None)
            default = defaults.get(key, inspect.Parameter.empty)
            try:
                same = value is default or (type(value) is type(default) and bool(value == default))
            except Exception:  # arrays and the like: show them
                same = False
            if not same:
                shown.append(f"{key}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    # ------------------------------------------------------------------ public API
    @property
    def is_series(self) -> bool:
        """True when the detector models series through windows (``window`` is set)."""
        return self.window is not None

    def fit(self, X: Any, y: Any = None) -> "BaseDetector":
        """Learn the normal behaviour from ``X`` (assumed clean); ``y`` is ignored. Returns self."""
        self._check_base_params()
        for attr in ("threshold_", "decision_scores_"):  # a failed re-fit must not look fitted
            self.__dict__.pop(attr, None)
        device = resolve_device(self.device)
        _backend.resolve(self.backend, device)  # an explicitly named backend that cannot run fails here
        self.device_ = device
        self.seed_ = int(self.seed) if self.seed is not None else \
            int(np.random.SeedSequence().entropy % (1 << 63))

        x, columns = self._validate(X, fitting=True)
        x = self._cast(x)
        self.n_features_in_ = int(x.shape[1])
        self.feature_names_in_ = columns
        self._check_enough(x)
        self.input_stats_ = Normalizer.fit(x)  # the extreme-value guard's reference (_extremes.py)
        self.normalizer_ = self.input_stats_ if self.normalize else None
        constant = constant_columns(x)
        if bool(constant.any()):
            warn_constant(constant, columns, type(self).__name__)
        z = self._apply_normalizer(x)

        with self._call_scope("fit"):
            if self.is_series:
                self._fit_series(z)
            else:
                self._fit_model(z)

        scores = self._score_normalized(z)
        bad = ~np.isfinite(scores)
        if bad.any():
            raise ValueError(f"{type(self).__name__} gives non-finite scores on {int(bad.sum())} of "
                             f"{scores.size} training {'timestamps' if self.is_series else 'rows'} "
                             f"(the first at {int(np.argmax(bad))}); the fit diverged or the data is degenerate")
        self.decision_scores_ = scores
        self.threshold_ = self._fit_threshold(getattr(self, "threshold", None), scores, None)
        return self

    def set_threshold(self, X: Any, y: Any = None, method: Any = None) -> "BaseDetector":
        """Refit ``threshold_`` on the scores of held-out data ``X``; returns self.

        ``method``: anything the ``threshold`` parameter accepts, or ``"best_f1"`` /
        :class:`~genad_fast.thresholds.BestF1Threshold` (needs the 0/1 labels ``y`` of ``X``). None: best
        F1 when ``y`` is given, else the detector's own ``threshold`` rule. Held-out scores avoid the
        optimism of training scores (a model that overfits scores its training data lower than new
        normal data). Use a validation split, never the test labels you report on.
        """
        self._check_fitted()
        if method is None:
            method = "best_f1" if y is not None else getattr(self, "threshold", None)
        scores = self.decision_function(X)
        if y is not None:
            n_y = len(y)
            if n_y != scores.shape[0]:
                raise ValueError(f"y has {n_y} labels but X gives {scores.shape[0]} scores "
                                 f"(one per {'timestamp' if self.is_series else 'row'})")
        self.threshold_ = self._fit_threshold(method, scores, y)
        return self

    def decision_function(self, X: Any) -> np.ndarray:
        """Anomaly scores, higher = more anomalous: float64 ``[N]`` (tabular) or ``[T]`` (series)."""
        self._check_fitted()
        x, columns = self._validate(X, fitting=False)
        x, extreme_rows = self._guard_extremes(x, columns)
        scores = self._score_normalized(self._apply_normalizer(x))
        if extreme_rows is not None:
            infinite = extreme_rows.cpu() if not self.is_series else infinite_timestamps(
                extreme_rows.cpu(), int(self.window), int(self.stride), self.reduce)
            scores[infinite.numpy()] = np.inf
        self._check_scores(scores)
        return scores

    def predict(self, X: Any) -> np.ndarray:
        """1 where ``decision_function(X) > threshold_``, else 0 (int64, like PyOD)."""
        scores = self.decision_function(X)
        return (scores > self.threshold_).astype(np.int64)

    # PyOD's and scikit-learn's names for the same estimator. genad_fast keeps PyOD's conventions where the two
    # differ: decision_function and predict_proba grow with anomaly, predict gives 0 (normal) / 1 (anomaly);
    # score_samples is scikit-learn's opposite-signed score. Series detectors answer per timestamp throughout.

    #: scikit-learn < 1.6 reads the estimator type from this attribute (``sklearn.base.is_outlier_detector``).
    _estimator_type = "outlier_detector"

    def __sklearn_tags__(self):
        """scikit-learn >= 1.6 estimator tags: an unsupervised outlier detector of dense, finite, 2-D float data
        (series mode, ``window=W``, also takes a 1-D array: one channel). ``non_deterministic`` only for
        ``seed=None`` (any other seed reproduces fit and scores exactly)."""
        from sklearn.utils import InputTags, Tags, TargetTags

        return Tags(estimator_type="outlier_detector", target_tags=TargetTags(required=False),
                    input_tags=InputTags(one_d_array=self.is_series, two_d_array=True, allow_nan=False),
                    non_deterministic=self.seed is None, requires_fit=True)

    @property
    def labels_(self) -> np.ndarray:
        """PyOD's training labels: 1 where ``decision_scores_ > threshold_``, else 0 (int64), one per training row
        or timestamp. Computed from the fitted attributes, so it follows :meth:`set_threshold`."""
        if "decision_scores_" not in self.__dict__ or "threshold_" not in self.__dict__:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet, so it has no labels_; call fit(X)")
        return (self.decision_scores_ > self.threshold_).astype(np.int64)

    def fit_predict(self, X: Any, y: Any = None) -> np.ndarray:
        """``fit(X)``, then the training labels :attr:`labels_` (PyOD's ``fit_predict``); ``y`` is ignored.

        These are the labels of the training scores the threshold was set on, so their mean is about
        ``contamination``. They equal ``predict(X)`` except for the reference-set detectors (kNN, KDE, LOF),
        which score their own training points leave-one-out."""
        return self.fit(X, y).labels_

    def score_samples(self, X: Any) -> np.ndarray:
        """scikit-learn's outlier score: ``-decision_function(X)``, lower = more abnormal (as
        ``sklearn.ensemble.IsolationForest.score_samples``); float64, one per row or timestamp."""
        return -self.decision_function(X)

    def predict_proba(self, X: Any, method: str = "linear") -> np.ndarray:
        """``[n, 2]`` float64: ``[P(normal), P(anomaly)]`` per row (or timestamp), from the scores, as PyOD's
        ``BaseDetector.predict_proba``. With s = ``decision_function(X)`` and the training scores
        ``decision_scores_``:

        - ``method="linear"``: min-max scaling against the training scores' range, clipped,
          ``P(anomaly) = clip((s - min) / (max - min), 0, 1)``;
        - ``method="unify"``: Gaussian scaling (Kriegel et al., "Interpreting and Unifying Outlier Scores",
          SDM 2011), ``P(anomaly) = clip(erf((s - μ) / (σ √2)), 0, 1)``, μ and σ the mean and population
          standard deviation (ddof = 0) of the training scores.

        If every training score is the same (max = min, σ = 0), both give the limit of their formula:
        ``P(anomaly) = 1`` where s is above that score, else 0. A score of +inf (an extreme input) gives 1.
        ``P(normal) = 1 - P(anomaly)``. These are rescaled scores, not calibrated probabilities.
        """
        if method not in ("linear", "unify"):
            raise ValueError(f"method must be 'linear' or 'unify', got {method!r}")
        self._check_fitted()
        scores = self.decision_function(X)
        train = self.decision_scores_
        if method == "linear":
            low, span = float(train.min()), float(train.max() - train.min())
            centred, scale = scores - low, span
        else:
            centred, scale = scores - float(train.mean()), float(train.std()) * np.sqrt(2.0)
        if scale > 0:
            z = centred / scale
        else:  # the limit of either formula as the spread goes to 0: a step at the (single) training score
            z = np.where(centred > 0, np.inf, 0.0)
        if method == "unify":
            z = torch.special.erf(torch.from_numpy(np.asarray(z, dtype=np.float64))).numpy()
        p_anomaly = np.clip(z, 0.0, 1.0)
        return np.stack([1.0 - p_anomaly, p_anomaly], axis=1)

    def save(self, path: str) -> None:
        """Write the fitted detector to ``path`` (see :mod:`genad_fast.detectors._io` for the format)."""
        save_detector(self, path)

    @classmethod
    def load(cls, path: str, map_location: str | torch.device = "cpu") -> "BaseDetector":
        """Read a detector written by :meth:`save`; tensors go to ``map_location`` (default CPU).

        ``BaseDetector.load`` accepts any registered detector; ``SomeDetector.load`` also checks
        that the file holds a SomeDetector (or a subclass).
        """
        return load_detector(path, map_location=map_location, expected=cls)

    # ------------------------------------------------------------------ hooks (see module docstring)
    def _min_fit_samples(self) -> int:
        return int(self.min_fit_samples)

    def _data_dtype(self) -> torch.dtype:
        return torch.float32

    def _fit_model(self, data: torch.Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _fit_model(data)")

    def _score_model(self, batch: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement _score_model(batch)")

    def _get_state(self) -> dict:
        raise NotImplementedError(f"{type(self).__name__} must implement _get_state() to be saved")

    def _set_state(self, state: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _set_state(state) to be loaded")

    def _fit_series(self, series: torch.Tensor) -> None:
        self._fit_model(sliding_windows(series, int(self.window), int(self.stride)))

    def _score_rows(self, rows: torch.Tensor) -> torch.Tensor:
        n, bs = rows.shape[0], int(self.score_batch_size)
        out = []
        for i in self._progress(range(0, n, bs), total=-(-n // bs), desc="score", unit="batch", long_only=True):
            s = self._score_model(rows[i:i + bs])
            self._check_hook_output("_score_model", s, (min(bs, n - i),))
            out.append(s)
        return torch.cat(out) if len(out) != 1 else out[0]

    def _score_series(self, series: torch.Tensor) -> torch.Tensor:
        T, W, S, bs = series.shape[0], int(self.window), int(self.stride), int(self.score_batch_size)
        out = []
        batches = iter_window_batches(series, W, S, bs)
        for batch in self._progress(batches, total=n_window_batches(T, W, S, bs), desc="score", unit="batch",
                                    long_only=True):
            s = self._score_model(batch)
            b = batch.shape[0]
            if not (isinstance(s, torch.Tensor) and tuple(s.shape) in ((b,), (b, W))):
                raise RuntimeError(f"{type(self).__name__}._score_model must return [{b}] or [{b}, {W}] scores "
                                   f"for {b} windows, got {getattr(s, 'shape', type(s).__name__)}")
            if out and s.dim() != out[0].dim():
                raise RuntimeError(f"{type(self).__name__}._score_model returned scores of different ranks "
                                   f"for different batches")
            out.append(s)
        scores = torch.cat(out) if len(out) != 1 else out[0]
        return windows_to_timestamps(scores, T, W, S, reduce=self.reduce)

    # ------------------------------------------------------------------ helpers for subclasses
    def _torch_generator(self, purpose: str = "fit", device: torch.device | str | None = None) -> torch.Generator:
        """A ``torch.Generator`` on ``device`` (default ``device_``) seeded from ``seed_`` and ``purpose``."""
        g = torch.Generator(device=device if device is not None else self.device_)
        g.manual_seed(_stream_seed(self.seed_, purpose))
        return g

    def _numpy_rng(self, purpose: str = "fit") -> np.random.Generator:
        """A numpy ``Generator`` seeded from ``seed_`` and ``purpose`` (independent of the torch streams)."""
        return np.random.default_rng(np.random.SeedSequence(self.seed_, spawn_key=(zlib.crc32(purpose.encode()),)))

    def _call_scope(self, purpose: str) -> contextlib.AbstractContextManager:
        """One fit (``"fit"``) or scoring (``"score"``) call: its generators, the backend read once, what the
        hooks build for it, kept per thread (:mod:`genad_fast.detectors._call`). No global RNG is seeded,
        drawn from or restored: a fitted detector is shared between threads."""
        from genad_fast.detectors._call import call_scope

        return call_scope(self, purpose)

    def _progress(self, iterable: Iterable | None = None, *, total: int | None = None, desc: str | None = None,
                  long_only: bool = False, **kwargs: Any):
        """A tqdm bar over ``iterable`` (or a manual one), shown when ``verbose``.

        ``long_only=True`` (used for scoring) shows it only for more than one step and only once the
        work has taken half a second.
        """
        from tqdm.auto import tqdm

        disable = not self.verbose or (long_only and total is not None and total <= 1)
        if long_only:
            kwargs.setdefault("delay", 0.5)
        name = type(self).__name__
        return tqdm(iterable, total=total, desc=f"{name} {desc}" if desc else name, disable=disable,
                    leave=False, **kwargs)

    def _log_epoch(self, epoch: int, n_epochs: int | None = None, **metrics: float) -> None:
        """Log one training epoch at DEBUG level on the ``genad_fast`` logger: ``Name epoch 3/50: loss=...``."""
        if not logger.isEnabledFor(logging.DEBUG):
            return
        of = f"/{n_epochs}" if n_epochs is not None else ""
        parts = " ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items())
        logger.debug("%s epoch %d%s: %s", type(self).__name__, epoch, of, parts)

    # ------------------------------------------------------------------ internals
    def _check_base_params(self) -> None:
        check_int_param("window", self.window, 1, allow_none=True)
        check_int_param("stride", self.stride, 1)
        if self.window is not None and self.stride > self.window:
            raise ValueError(f"stride={self.stride} is longer than window={self.window}: timestamps between "
                             f"windows would get no score; use stride <= window")
        c = self.contamination
        if isinstance(c, bool) or not isinstance(c, (int, float, np.floating)) or not (0.0 < float(c) <= 0.5):
            raise ValueError(f"contamination must be a number in (0, 0.5], got {c!r}")
        if self.reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {', '.join(REDUCTIONS)}, got {self.reduce!r}")
        if not isinstance(self.normalize, (bool, np.bool_)):
            raise ValueError(f"normalize must be True or False, got {self.normalize!r}")
        check_int_param("seed", self.seed, 0, allow_none=True)
        _backend.requested_backend(self.backend)  # unknown names raise ValueError
        check_int_param("score_batch_size", self.score_batch_size, 1)
        from genad_fast.thresholds import BestF1Threshold, check_threshold_spec

        spec = getattr(self, "threshold", None)
        check_threshold_spec(spec)  # unknown names, NaN, bool: ValueError
        if (isinstance(spec, str) and spec == "best_f1") or isinstance(spec, BestF1Threshold):
            raise ValueError("threshold='best_f1' needs labels, which fit does not take (it learns from normal "
                             "data); fit, then det.set_threshold(X_val, y_val) on a labelled validation split")

    def _fit_threshold(self, spec: Any, scores: np.ndarray, labels: Any) -> float:
        from genad_fast.thresholds import make_threshold

        rule = make_threshold(spec, float(self.contamination))
        value = rule.fit(scores, labels).threshold_
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)) \
                or not np.isfinite(value):
            raise ValueError(f"the threshold rule {rule!r} gave threshold_={value!r}; a finite number is needed")
        return float(value)

    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X) first "
                                 f"(or load a saved model)")

    def _validate(self, X: Any, fitting: bool) -> tuple[torch.Tensor, list[str] | None]:
        """Checked data as ``[rows, features]`` (the user's float dtype and device), plus DataFrame column names.

        Not yet cast: :meth:`_cast` does that, after the extreme-value guard at scoring (a cast to float32
        could overflow on a value the guard replaces)."""
        t, columns = to_tensor(X, "X")
        t = check_rank(t, self.is_series, "X")
        what = ("timestamps", "channels") if self.is_series else ("rows", "features")
        if t.shape[0] == 0:
            raise ValueError(f"X has 0 {what[0]}")
        if t.shape[1] == 0:
            raise ValueError(f"X has 0 {what[1]}")
        if not fitting:
            if t.shape[1] != self.n_features_in_:
                raise ValueError(f"X has {t.shape[1]} {what[1]}, but {type(self).__name__} was fitted on "
                                 f"{self.n_features_in_}")
            if columns is not None and self.feature_names_in_ is not None and columns != self.feature_names_in_:
                raise ValueError(f"X has columns {columns}, but {type(self).__name__} was fitted on columns "
                                 f"{self.feature_names_in_} (same names, same order)")
        check_finite(t, "X", columns)
        if self.is_series and t.shape[0] < self.window:
            raise ValueError(f"X has {t.shape[0]} timestamps, fewer than window={self.window}")
        return t, columns

    def _cast(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` on ``device_`` in ``_data_dtype()``, C-contiguous (whatever layout the user's array had)."""
        out = t.to(device=self.device_, dtype=self._data_dtype()).contiguous()
        if out.dtype != t.dtype and not bool(torch.isfinite(out).all()):
            first = tuple(int(i) for i in (~torch.isfinite(out)).nonzero()[0].tolist())
            raise ValueError(f"X value {float(t[first])} at row {first[0]} overflows {out.dtype}; rescale the data")
        return out

    def _input_stats(self) -> Normalizer | None:
        """The training statistics of the extreme-value guard (files written before it: the normaliser, if any)."""
        return getattr(self, "input_stats_", None) or self.normalizer_

    def _guard_extremes(self, t: torch.Tensor, columns: list[str] | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Validated scoring data with extreme values replaced (see :mod:`genad_fast.detectors._extremes`), cast
        for the model, and the boolean ``[rows]`` mask of the rows/timestamps that held one (None if none did)."""
        stats = self._input_stats()
        if stats is None:
            return self._cast(t), None
        if not may_hold_extremes(t, stats):
            return self._cast(t), None
        entries = extreme_entries(t, stats)
        if not bool(entries.any()):
            return self._cast(t), None
        warn_extremes(entries, "windows" if self.is_series else "rows", columns)
        return self._cast(replace_extremes(t, entries, stats)), entries.any(dim=1)

    def _check_scores(self, scores: np.ndarray) -> None:
        """A score is finite or +inf; NaN or -inf means the model's arithmetic broke: an error, never a silent 'normal'."""
        bad = np.isnan(scores) | np.isneginf(scores)
        if bad.any():
            raise RuntimeError(f"{type(self).__name__} produced {int(bad.sum())} NaN/-inf score(s) of {scores.size} "
                               f"from finite input (the first at {'timestamp' if self.is_series else 'row'} "
                               f"{int(np.argmax(bad))}); this is a bug: please report it with the data's shape "
                               f"and value range")

    def _check_enough(self, x: torch.Tensor) -> None:
        need = self._min_fit_samples()
        if self.is_series:
            T, W, S = x.shape[0], int(self.window), int(self.stride)
            have = (T - W) // S + 1  # the grid windows _fit_model receives
            if have < need:
                raise ValueError(f"the training series gives {have} window{'s' if have != 1 else ''} "
                                 f"(T={T}, window={W}, stride={S}), but {type(self).__name__} needs at least "
                                 f"{need} to fit; use a longer series or a smaller window/stride")
        elif x.shape[0] < need:
            raise ValueError(f"X has {x.shape[0]} rows, but {type(self).__name__} needs at least {need} to fit")

    def _apply_normalizer(self, x: torch.Tensor) -> torch.Tensor:
        return self.normalizer_.transform(x) if self.normalizer_ is not None else x

    def _score_normalized(self, z: torch.Tensor) -> np.ndarray:
        grad = contextlib.nullcontext() if self.score_needs_grad else torch.inference_mode()
        with grad, self._call_scope("score"):
            scores = self._score_series(z) if self.is_series else self._score_rows(z)
        self._check_hook_output("_score_series" if self.is_series else "_score_rows", scores, (z.shape[0],))
        return scores.detach().to(device="cpu", dtype=torch.float64).numpy()

    def _check_hook_output(self, hook: str, s: Any, shape: tuple[int, ...]) -> None:
        if not isinstance(s, torch.Tensor) or tuple(s.shape) != shape:
            got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
            raise RuntimeError(f"{type(self).__name__}.{hook} must return a tensor of shape {list(shape)}, got {got}")
