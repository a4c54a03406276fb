"""BaseDetector: the estimator API every genad_fast detector inherits (scikit-learn / PyOD conventions).

Users see::

    det = SomeDetector(window=64, contamination=0.01, device="auto", seed=0).fit(X_train)
    scores = det.decision_function(X_test)  # higher = more anomalous; one per row, or one per timestamp
    labels = det.predict(X_test)            # 1 where score > det.threshold_, else 0
    det.save("model.pt"); det2 = SomeDetector.load("model.pt", map_location="cpu")
    # many series in one call (lengths may differ), one score array per series, as scoring each alone:
    per_series = det.decision_function([X_a, X_b, X_c])     # list; a dict {id: series} gives a dict
    per_id = det.decision_function(long_frame, by="sensor")  # long DataFrame: {sensor id: scores}
    det.fit([X_1, X_2])                     # one model of normal over every series (also by=)

``window``: None (tabular rows; the default of most detectors, since a 2-D array may be a table or a multichannel
series), an int W, or ``"auto"`` (the default of detectors that only model series, such as DiffusionDetector):
the window is resolved at fit from the training series' dominant period (:mod:`._auto_window`) and kept in
``window_``; ``det.window`` stays ``"auto"`` (scikit-learn: fit never changes a parameter).

A collection is a list/tuple of arrays (numpy, torch, pandas), a dict, or a long DataFrame with ``by=``; a nested
list of numbers stays one table. The rules, and the errors that name a bad series: :mod:`._collection`.

Writing a detector
==================
Subclass :class:`BaseDetector`, list your own hyper-parameters in ``__init__`` and pass the base ones
on. Either spell them out (the scikit-learn way) or forward ``**kwargs``; both work with
``get_params``/``set_params``/``sklearn.base.clone``. Declare each parameter's rule and doc once as a
:class:`~genad_fast._params.Param` in ``_param_specs``: the base checks every value at fit (and those
marked ``scoring=True`` before every scoring call) and writes the Parameters section of the class
docstring from them (:mod:`genad_fast._params`)::

    class KDEDetector(BaseDetector):
        min_fit_samples = 2                       # optional; or override _min_fit_samples()
        _param_specs = (Param("bandwidth", "number", "The kernel's standard deviation.", low=0.0, low_open=True),)

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
    ``[n_windows, W, C]`` of the training series (a zero-copy view, :meth:`genad_fast.series.WindowGrid.windows`,
    stride ``self.stride``; copy one batch at a time, e.g. ``data[idx].reshape(len(idx), -1)``). ``data`` is
    already normalised (``normalize=True``), on ``self.device_``, of dtype ``self._data_dtype()`` (float32),
    finite, and holds at least ``self._min_fit_samples()`` rows/windows; the parameters are checked. Detectors
    never touch the process-global RNG (threads share it): draw only from ``self._torch_generator(purpose)``,
    ``self._numpy_rng(purpose)`` or ``current_call(self).generator(name, device)``, and build networks with
    :func:`genad_fast.detectors._call.build_network` (initialised from a generator). Show epochs with
    ``self._progress(...)``, log them with ``self._log_epoch(...)``. Set fitted attributes with a trailing
    underscore.
``_score_model(batch)`` *required*
    Scores of ``batch`` (``[b, D]`` rows or ``[b, W, C]`` windows, at most ``self.score_batch_size`` of them),
    higher = more anomalous: a tensor ``[b]``, or for windows optionally ``[b, W]`` (one score per timestamp of
    each window). Runs under ``torch.inference_mode()`` unless the class sets ``score_needs_grad = True``
    (e.g. AnoGAN's latent search). A stochastic score draws from the call's generators
    (:mod:`genad_fast.detectors._call`) or keyed on the row (:mod:`genad_fast.nn.keyed_noise`), so it is
    reproducible, and the same for a row whatever other rows share the call: the windows of many series share
    batches, and a collection must score as each series alone. A batch is never smaller than
    ``min_score_rows`` (the base pads it with copies of its first row: BLAS rounds one-row products otherwise).
``_get_state() -> dict`` / ``_set_state(state)`` *required for save/load*
    Everything ``_fit_model`` learned, as tensors, numbers, strings, None, lists, tuples and dicts
    (``module.state_dict()`` qualifies; modules and arbitrary objects do not: files are read with
    ``torch.load(weights_only=True)``). ``_set_state`` runs on a fresh instance built from the saved
    ``get_params()``, after the base restored ``device_``, ``n_features_in_``, ``feature_names_in_``,
    ``normalizer_``, ``seed_``, ``threshold_`` and ``decision_scores_``; the tensors arrive on ``map_location``.
``_training_scores() -> tensor or None`` *optional*
    Training scores the fit already computed (``[N]``, or ``[n_grid]`` / ``[n_grid, W]`` for the grid
    windows ``_fit_model`` got, every series' in order), handed over instead of a second scoring pass
    (:mod:`genad_fast.detectors._scoring`). Otherwise the base scores the training data as ``decision_function``
    does. ``decision_scores_`` and ``threshold_`` (see the ``threshold`` parameter) follow; non-finite training
    scores are an error (a diverged model is not returned as fitted).
``_score_context(dtype)`` *optional*: a context manager around every scoring pass of a call (e.g. a plan).
``_fit_series(series, layout)`` / ``_score_series(series, layout) -> [Σ T_i]`` *optional*
    Whole-series entry points: ``series`` normalised ``[Σ T_i, C]``, one series or the series of a collection
    packed one after another as ``layout`` (:class:`genad_fast.series.SeriesBatch`) says. The defaults window
    each series on its own grid (``_fit_model(layout.grid_windows(series))``: never a window across two
    series; scoring: the windows of all series in batches through ``_score_model``, then
    :meth:`~genad_fast.series.SeriesBatch.to_timestamps` with ``reduce``, per series). A detector that scores
    a series its own way (e.g. in tiles) overrides these, and scores every series as if alone.
``_score_rows(rows) -> [N]`` *optional*: tabular scoring; the default batches ``_score_model``.
``_check_params(scoring=False)`` *optional*: rules between parameters, after ``super()._check_params(scoring)``.
``_min_fit_samples() -> int`` *optional*: fewest rows/windows ``fit`` accepts (default: the class attribute
    ``min_fit_samples`` = 2). ``_data_dtype() -> torch.dtype`` *optional*: the data's dtype (default float32).
"""
from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch

from genad_fast import _backend
from genad_fast._params import Param, Parametrized
from genad_fast.detectors._auto_window import AUTO, is_auto, resolve_window
from genad_fast.detectors._collection import CollectionMixin, Packed, map_result
from genad_fast.detectors._conventions import ConventionsMixin
from genad_fast.detectors._device import resolve_device
from genad_fast.detectors._export_mixin import ExportMixin
from genad_fast.detectors._extremes import warn_constant
from genad_fast.detectors._hook_helpers import HookHelpersMixin
from genad_fast.detectors._hook_helpers import stream_seed as _stream_seed  # noqa: F401 - the old import path
from genad_fast.detectors._input import InputMixin, str_names
# Model files: _io reads and writes them without importing this module (it finds classes through the
# registry), so save/load call straight down into it.
from genad_fast.detectors._io import load_detector, save_detector
from genad_fast.detectors._scoring import ScoringMixin
from genad_fast.detectors._stream_mixin import StreamMixin
from genad_fast.detectors._thresholding import ThresholdingMixin
from genad_fast.detectors._validation import NotFittedError
from genad_fast.series import REDUCTIONS, Normalizer, SeriesBatch, constant_columns

__all__ = ["BaseDetector", "REDUCE", "resolve_device"]


def _known_backend(name: str, value: Any) -> None:
    _backend.requested_backend(value)  # unknown names (also in GENAD_FAST_BACKEND) raise ValueError


def _fit_threshold_rule(name: str, spec: Any) -> None:
    from genad_fast.thresholds import BestF1Threshold, check_threshold_spec

    check_threshold_spec(spec)  # unknown names, NaN, bool: ValueError
    if (isinstance(spec, str) and spec == "best_f1") or isinstance(spec, BestF1Threshold):
        raise ValueError("threshold='best_f1' needs labels, which fit does not take (it learns from normal "
                         "data); fit, then det.set_threshold(X_val, y_val) on a labelled validation split")


#: The ``reduce`` parameter; detectors with another default give it their own doc (``REDUCE.but(doc=...)``).
REDUCE = Param("reduce", "choice", "How the scores of the windows covering a timestamp combine (series only).",
               choices=REDUCTIONS, scoring=True)
_SCORE_BATCH_SIZE = Param("score_batch_size", "int", "Rows or windows per scoring batch.", low=1, scoring=True)


class BaseDetector(CollectionMixin, InputMixin, ScoringMixin, ThresholdingMixin, HookHelpersMixin, ConventionsMixin,
                   ExportMixin, StreamMixin, Parametrized):
    """Base of all genad_fast detectors; see the module docstring for the hook contract. Every detector has
    these parameters (most forward them through ``**kwargs``).

    Parameters
    ----------

    Fitted attributes: ``window_`` (the window in use: ``window``, or the int ``window="auto"`` resolved to; None
    for tabular data), ``threshold_``, ``decision_scores_`` (float64 scores of the training data, one per row or
    per timestamp), ``n_features_in_``, ``feature_names_in_`` (the column names of a DataFrame whose column names
    are all strings, as an object array: :mod:`genad_fast.detectors._input`), ``normalizer_`` (or None),
    ``seed_``, ``device_``.
    """

    _param_specs = (
        Param("window", "int", "None: tabular data ``(n_samples, n_features)``, one score per row. An int W: the "
              "data is a series ``(T, C)`` (1-D = one channel), modelled through windows of W timestamps, one score "
              "per timestamp. ``\"auto\"``: a series, its window one dominant period of the training series "
              "(TSB-AD's autocorrelation rule, clipped to [8, min(512, T // 2)]: :mod:`genad_fast.detectors."
              "_auto_window`), resolved at fit into ``window_``. None is the default of most detectors because a "
              "2-D array is a table or a multichannel series and only the caller knows which; detectors that "
              "only model series default to ``\"auto\"``.", low=1, allow_none=True, choices=(AUTO,),
              scoring=True),
        Param("stride", "int", "Step between window starts (series only). The last window is aligned to the end "
              "of the series so the tail is scored.", low=1, scoring=True),
        Param("contamination", "number", "Expected fraction of anomalies; with ``threshold=None`` (the default), "
              "``threshold_`` is the ``1 - contamination`` quantile of the training scores (PyOD's default of 0.1; "
              "with clean training data it is the fraction of training points flagged, so lower it, e.g. to 0.01, "
              "for fewer false alarms).", low=0.0, high=0.5, low_open=True),
        REDUCE,
        Param("normalize", "bool", "Standardise each feature/channel with mean and std of the training data "
              "(:class:`genad_fast.series.Normalizer`), stored in the model and applied at scoring."),
        Param("device", "any", "Where the model trains and scores; \"auto\" takes a visible GPU. The device "
              "actually used is ``device_`` after fit or load (checked at fit: a model file may name a GPU).",
              type_doc='"auto", "cpu", "cuda" or "cuda:<i>"'),
        Param("backend", "any", "Implementation of the fused ops (None: ``GENAD_FAST_BACKEND``, else automatic). "
              "A backend named explicitly that cannot run is an error at fit.", check=_known_backend,
              scoring=True, type_doc='None or "eager", "cpu", "cuda", "triton"'),
        Param("seed", "int", "Seeds every random choice of fit and scoring, through generators derived from it "
              "(the process-global RNG is never read or changed). None draws a fresh seed at fit (kept in "
              "``seed_``).", low=0, allow_none=True),
        Param("verbose", "any", "Progress bars for training epochs and long scoring (tqdm, on stderr).",
              type_doc="bool"),
        Param("threshold", "any", "How ``threshold_`` is set from the training scores (:mod:`genad_fast."
              "thresholds`). None or ``\"contamination\"``: the ``1 - contamination`` quantile. A float: that "
              "score, fixed. ``\"pot\"``, ``\"spot\"``, ``\"dspot\"``: the extreme-value threshold of risk q = 1e-4 "
              "(Siffer et al., KDD 2017; at fit SPOT/DSPOT calibrate on the training scores, so ``\"spot\"`` gives "
              "POT's value and ``\"dspot\"`` the last local mean plus the POT threshold of the deviations). An "
              "object such as ``POTThreshold(q=1e-3)``: fitted (as an unfitted copy) on the training scores. "
              "Training scores are lower than fresh ones for a model that overfits, so thresholds from them flag "
              "more than intended on new data; :meth:`set_threshold` refits on held-out data.",
              check=_fit_threshold_rule, type_doc="None, float, str or threshold object"),
    )
    _shared_params_doc = "The shared detector parameters (:class:`~genad_fast.detectors.base.BaseDetector`)"
    #: Fewest training rows/windows; subclasses raise it (e.g. for a validation split).
    min_fit_samples: ClassVar[int] = 2

    def __init__(self, *, window: int | str | None = None, stride: int = 1, contamination: float = 0.1,
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

    def _canonical_params(self, params: dict[str, Any]) -> dict[str, Any]:
        from genad_fast.detectors._renamed import canonical_params

        # A renamed parameter's old spelling (score=) still works, with a DeprecationWarning.
        return canonical_params(params, self._get_param_names(), type(self).__name__)

    def _check_params(self, scoring: bool = False) -> None:
        super()._check_params(scoring)
        if "score_batch_size" not in self._spec_table:  # a class attribute here, a parameter of some detectors
            _SCORE_BATCH_SIZE.validate(self.score_batch_size)
        # "auto" is checked against the stride once resolved, at fit (_auto_window.resolve_window).
        if not scoring and self.window is not None and not is_auto(self.window) and self.stride > self.window:
            raise ValueError(f"stride={self.stride} is longer than window={self.window}: timestamps between "
                             f"windows would get no score; use stride <= window")

    def _check_base_params(self) -> None:
        """The parameter checks of fit (the name the model-file loader and the CLI call)."""
        self._check_params()

    # ------------------------------------------------------------------ public API
    @property
    def is_series(self) -> bool:
        """True when the detector models series through windows (``window`` is set, an int or ``"auto"``)."""
        return self.window is not None

    @property
    def _window(self) -> int | None:
        """The window in use: None (tabular), the int ``window``, or for ``window="auto"`` the fitted ``window_``.
        Everything that needs the window's length reads it here (``self.window`` may be ``"auto"``)."""
        if not is_auto(self.window):
            return None if self.window is None else int(self.window)
        resolved = self.__dict__.get("window_")
        if resolved is None:
            raise NotFittedError(f"{type(self).__name__}(window='auto') has no window before fit: the window is "
                                 f"resolved from the training series (window_)")
        return int(resolved)

    def fit(self, X: Any, y: Any = None, *, by: Any = None) -> "BaseDetector":
        """Learn the normal behaviour from ``X`` (assumed clean); ``y`` is ignored. Returns self.

        ``X`` may be a collection of series or tables (a list/tuple of arrays, a dict, or a long DataFrame with
        ``by=`` the id column: :mod:`genad_fast.detectors._collection`): one model of normal over all of them.
        The normaliser's statistics are those of all their rows; windows lie inside each series (never across
        two; the windows of many series are gathered into one tensor, a copy); ``decision_scores_`` holds the
        training scores of the parts concatenated in collection order, and ``threshold_`` comes from them."""
        self._fit_input(X, by)
        return self

    def _fit_input(self, X: Any, by: Any) -> Packed:
        self._check_params()
        for attr in ("threshold_", "decision_scores_", "window_"):  # a failed re-fit must not look fitted
            self.__dict__.pop(attr, None)
        device = resolve_device(self.device)
        _backend.resolve(self.backend, device)  # an explicitly named backend that cannot run fails here
        self.device_ = device
        self.seed_ = int(self.seed) if self.seed is not None else \
            int(np.random.SeedSequence().entropy % (1 << 63))

        data = self._read(X, by, fitting=True)
        self.window_ = resolve_window(self.window, self.stride, data.x, data.lengths,
                                      data.source.name if data.source is not None else lambda i: "X")
        x, columns, layout = data.x, data.columns, self._layout(data.lengths)
        self.n_features_in_ = int(x.shape[1])
        self.feature_names_in_ = str_names(columns)
        self._check_enough(x, layout)
        self.input_stats_ = Normalizer.fit(x)  # the extreme-value guard's reference (_extremes.py)
        self.normalizer_ = self.input_stats_ if self.normalize else None
        constant = constant_columns(x)
        if bool(constant.any()):
            warn_constant(constant, columns, type(self).__name__)
        z = self._apply_normalizer(x)

        with self._call_scope("fit"):
            if self.is_series:
                self._fit_series(z, layout)
            else:
                self._fit_model(z)

        scores = self._score_normalized(z, training=True, layout=layout)
        bad = ~np.isfinite(scores)
        if bad.any():
            raise ValueError(f"{type(self).__name__} gives non-finite scores on {int(bad.sum())} of "
                             f"{scores.size} training {'timestamps' if self.is_series else 'rows'} "
                             f"(the first at {int(np.argmax(bad))}); the fit diverged or the data is degenerate")
        self.decision_scores_ = scores
        self.threshold_ = self._fit_threshold(getattr(self, "threshold", None), scores, None)
        return data

    def decision_function(self, X: Any, *, by: Any = None) -> np.ndarray | list | dict:
        """Anomaly scores, higher = more anomalous: float64 ``[N]`` (tabular) or ``[T]`` (series).

        For a collection ``X`` (a list/tuple of arrays, a dict, or a long DataFrame with ``by=`` the id column:
        :mod:`genad_fast.detectors._collection`) one such array per part, as a list (or a dict with X's ids),
        equal to scoring each part alone; the windows of all parts share the model's batches."""
        scores, data = self._scores(X, by)
        return data.unpack(scores)

    def _scores(self, X: Any, by: Any) -> tuple[np.ndarray, Packed]:
        self._check_fitted()
        self._check_params(scoring=True)  # set_params may have changed what scoring reads
        data = self._read(X, by, fitting=False)
        return self._packed_scores(data), data

    def predict(self, X: Any, *, by: Any = None) -> np.ndarray | list | dict:
        """1 where ``decision_function(X) > threshold_``, else 0 (int64, like PyOD); per part for a collection."""
        return map_result(self.decision_function(X, by=by), lambda s: (s > self.threshold_).astype(np.int64))

    def save(self, path: str) -> None:
        """Write the fitted detector to ``path`` (see :mod:`genad_fast.detectors._io` for the format)."""
        save_detector(self, path)

    @classmethod
    def load(cls, path: str, map_location: str | torch.device = "cpu", backend: str | None = None) -> "BaseDetector":
        """Read a detector written by :meth:`save`; tensors go to ``map_location`` (default CPU), scoring with
        ``backend`` (None: the file's, or ``"auto"`` with a warning where the file's cannot run on that device).

        ``BaseDetector.load`` accepts any registered detector; ``SomeDetector.load`` also checks
        that the file holds a SomeDetector (or a subclass).
        """
        return load_detector(path, map_location=map_location, expected=cls, backend=backend)

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

    def _fit_series(self, series: torch.Tensor, layout: SeriesBatch) -> None:
        self._fit_model(layout.grid_windows(series))

    # ------------------------------------------------------------------ internals
    def _check_fitted(self) -> None:
        if not hasattr(self, "threshold_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X) first "
                                 f"(or load a saved model)")
