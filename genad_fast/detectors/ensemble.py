"""EnsembleDetector: the average of several detectors' scores, each first put on a common scale fitted on its own
training scores.

Members are ordinary registered detectors (default: a normalising flow, Diffusion Time Estimation and kNN), each
fitted on the same (normalised) data; nothing is learned jointly. With s_m(x) member m's score and S_m its
training scores (``decision_scores_``: in-sample for the networks, leave-one-out for kNN),

    combine="zscore" (default):  score(x) = (1/M) Σ_m (s_m(x) - median(S_m)) / scale(S_m),
                                 scale = 1.4826·MAD(S_m) (the normal-consistent median absolute deviation)
    combine="rank":              score(x) = (1/M) Σ_m F_m(s_m(x)),   F_m the empirical CDF of S_m

Why these: averaging standardised member scores is the standard combination of outlier ensembles (Aggarwal &
Sathe, "Theoretical Foundations and Algorithms for Outlier Ensembles", SIGKDD Explorations 2015; PyOD's
``standardizer`` + ``average``); the centre and scale are robust (median, MAD) because training scores are
skewed (a flow's NLL has a long right tail) and a mean/std standardisation would let that tail set the scale.
Z-scores are the default because they do not saturate: a rank is 1 for every score above the largest training
score, so all clear anomalies tie within a member, and normal test points that a member scores above its
(overfitted, in-sample) training scores tie with them. Ranks (Zimek, Campello & Sander, "Ensembles for
unsupervised outlier detection", SIGKDD Explorations 2014) bound each member's vote in [0, 1], which protects
against one member's runaway scores; they are the option. A MAD of 0 (more than half the training scores equal)
falls back to 1.2533 times the mean absolute deviation from the median (also normal-consistent); all training
scores equal is an error.

Default members: the issue asks for "flow, diffusion and kNN". DiffusionDetector models series only (its scores
are a tiled reverse chain over a whole series) and costs ``n_steps`` denoiser passes; DTE is the diffusion
member instead: a diffusion model too, on rows and windows alike, one network call per sample, and the diffusion
detector that draws level with kNN on ADBench (Livernoche et al., ICLR 2024). kNN is ADBench's classic bar. No
member setting is tuned here: each member runs with its own defaults (``member_params`` changes them).

Series: every member windows the series itself (the ensemble's ``window`` and ``stride``) and returns its
per-timestamp scores (its own ``reduce``); the ensemble combines those. ``reduce`` is not a parameter here.
Streaming is not supported (members' stream scores are not combined); scoring a collection, thresholds,
save/load and threads work as for any detector.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from genad_fast._params import Param
from genad_fast.detectors._hook_helpers import stream_seed
from genad_fast.detectors._members import member_from_record, member_record
from genad_fast.detectors._registry import detector_names, get_detector
from genad_fast.detectors.base import BaseDetector
from genad_fast.series import SeriesBatch

__all__ = ["COMBINE", "DEFAULT_MEMBERS", "EnsembleDetector"]

COMBINE = ("zscore", "rank")
DEFAULT_MEMBERS = ("flow", "dte", "knn")
#: Parameters the ensemble sets on every member (so that members agree with it): not in ``member_params``.
MANAGED = ("normalize", "device", "backend", "seed", "verbose", "contamination", "threshold")
#: MAD -> standard deviation of a normal distribution; mean absolute deviation -> standard deviation.
MAD_TO_STD, MEAN_AD_TO_STD = 1.4826, 1.2533


def _names(value: Any) -> tuple:
    return (value,) if isinstance(value, str) else tuple(value) if isinstance(value, (list, tuple)) else ()


def _members_rule(name: str, value: Any) -> None:
    members = _names(value)
    if not members or not all(isinstance(m, str) for m in members):
        raise ValueError(f"{name} must be a non-empty list of registered detector names, got {value!r}")
    if len(set(members)) != len(members):
        raise ValueError(f"{name} names a detector twice: {list(members)}")
    known = detector_names()
    for m in members:
        if m not in known:
            raise ValueError(f"{name}: unknown detector {m!r}; registered detectors: {', '.join(known)}")
        if m == "ensemble":
            raise ValueError(f"{name}: an ensemble cannot be a member of an ensemble")


def _member_params_rule(name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, dict) for k, v in value.items()):
        raise ValueError(f"{name} must be None or a dict {{member name: {{parameter: value}}}}, got {value!r}")
    for member, params in value.items():
        managed = sorted(set(params) & set(MANAGED))
        if managed:
            raise ValueError(f"{name}[{member!r}] sets {', '.join(managed)}, which the ensemble sets on every "
                             f"member (set them on the ensemble)")


class EnsembleDetector(BaseDetector):
    """Average of normalised member scores (see the module docstring).

    Fitted attributes: ``members_`` (the fitted member detectors, in ``members`` order), ``centers_`` and
    ``scales_`` (per member: the median and robust scale of its training scores), ``sorted_scores_`` (per member:
    its training scores sorted, the empirical CDF of ``combine="rank"``), and the base's. The last two are
    derived from the members' ``decision_scores_``, so a model file holds only the members.

    Parameters
    ----------
    """

    #: Members decide for themselves whether their scoring runs under inference_mode (AnoGAN's does not).
    score_needs_grad = True
    min_fit_samples = 8
    _param_specs = (
        Param("members", "any", "Registry names of the member detectors (default: flow, DTE, kNN; see the module "
              "docstring).", check=_members_rule, type_doc="list of str"),
        Param("combine", "choice", "How member scores are put on one scale before averaging: robust z-scores "
              "(median, MAD) or empirical-CDF ranks, both against the member's training scores.", choices=COMBINE,
              scoring=True),
        Param("member_params", "any", "Parameters per member, e.g. ``{\"flow\": {\"epochs\": 20}}`` (not those the "
              "ensemble sets on every member: normalize, device, backend, seed, verbose, contamination, "
              "threshold). ``window``/``stride`` default to the ensemble's.", check=_member_params_rule,
              type_doc="None or dict"),
    )

    def __init__(self, members: tuple[str, ...] = DEFAULT_MEMBERS, combine: str = "zscore",
                 member_params: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.members = members
        self.combine = combine
        self.member_params = member_params

    # ---- members ---------------------------------------------------------------------------------
    def _check_params(self, scoring: bool = False) -> None:
        super()._check_params(scoring)
        if scoring:
            return
        unknown = sorted(set(self.member_params or {}) - set(_names(self.members)))
        if unknown:
            raise ValueError(f"member_params names {', '.join(map(repr, unknown))}, which is not among "
                             f"members={list(_names(self.members))}")

    def _make_member(self, name: str) -> BaseDetector:
        cls = get_detector(name)
        own = dict((self.member_params or {}).get(name, {}))
        if self.window is None and ("window" in own or cls._param_defaults().get("window") is not None):
            raise ValueError(f"member {name!r} models series only (it needs a window), but the ensemble has "
                             f"window=None (tabular rows); leave it out of members for tabular data")
        # window='auto' is resolved once, by the ensemble's fit (window_), and handed to every member: each
        # member windows the series as the ensemble does, and none estimates the period again
        params = dict(window=self.__dict__.get("window_", self.window), stride=self.stride, normalize=False,
                      device=str(self.device_),
                      backend=self.backend, seed=stream_seed(self.seed_, f"member/{name}"), verbose=self.verbose)
        return cls(**{**params, **own})

    def _min_fit_samples(self) -> int:
        # the most any member needs (kNN: n_neighbors + 1, the flow: 16), so that the error names the ensemble
        return max([int(self.min_fit_samples)] + [self._make_member(n)._min_fit_samples()
                                                   for n in _names(self.members)])

    def _fit_members(self, X: Any) -> None:
        self.members_ = [self._make_member(name) for name in _names(self.members)]
        for m in self.members_:
            m.fit(X)
        self._fit_normalizers()

    def _fit_normalizers(self) -> None:
        self.centers_, self.scales_, self.sorted_scores_ = [], [], []
        for name, m in zip(_names(self.members), self.members_):
            s = np.asarray(m.decision_scores_, dtype=np.float64)
            center = float(np.median(s))
            scale = MAD_TO_STD * float(np.median(np.abs(s - center)))
            if scale == 0.0:
                scale = MEAN_AD_TO_STD * float(np.mean(np.abs(s - center)))
            if scale == 0.0:
                raise ValueError(f"member {name!r} gives every training point the same score ({center!r}): its "
                                 f"scores cannot be put on a common scale; leave it out or check the data")
            self.centers_.append(center)
            self.scales_.append(scale)
            self.sorted_scores_.append(np.sort(s))

    def _combine(self, member_scores: list[np.ndarray]) -> np.ndarray:
        """float64 ensemble scores from the members' scores (one array per member, in ``members`` order)."""
        total = np.zeros_like(np.asarray(member_scores[0], dtype=np.float64))
        for i, s in enumerate(member_scores):
            s = np.asarray(s, dtype=np.float64)
            if self.combine == "zscore":
                total += (s - self.centers_[i]) / self.scales_[i]  # +inf (extreme input) stays +inf
            else:
                ref = self.sorted_scores_[i]
                total += np.searchsorted(ref, s, side="right") / ref.size
        return total / len(member_scores)

    # ---- hooks -----------------------------------------------------------------------------------
    def _fit_model(self, data: torch.Tensor) -> None:
        self._fit_members(data)

    def _fit_series(self, series: torch.Tensor, layout: SeriesBatch) -> None:
        parts = layout.split(series)
        self._fit_members(parts[0] if layout.n_series == 1 else list(parts))

    def _score_normalized(self, z: torch.Tensor, training: bool = False,
                          layout: SeriesBatch | None = None) -> np.ndarray:
        if training:  # the members' own training scores (kNN's leave-one-out ones), combined: no second pass
            return self._combine([m.decision_scores_ for m in self.members_])
        return super()._score_normalized(z, training, layout)

    def _score_rows(self, rows: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self._combine([m.decision_function(rows) for m in self.members_]))

    def _score_series(self, series: torch.Tensor, layout: SeriesBatch) -> torch.Tensor:
        parts = list(layout.split(series))
        X = parts[0] if layout.n_series == 1 else parts
        per_member = [m.decision_function(X) for m in self.members_]
        if layout.n_series != 1:
            per_member = [np.concatenate(s) for s in per_member]
        return torch.from_numpy(self._combine(per_member))

    def _score_model(self, batch: torch.Tensor) -> torch.Tensor:  # pragma: no cover - members score whole inputs
        raise NotImplementedError("EnsembleDetector scores through its members' decision_function")

    def stream(self, **kwargs: Any):
        raise NotImplementedError("EnsembleDetector does not stream: its members' stream scores are not combined; "
                                  "stream each member (det.members_[i].stream()) or score whole series")

    def causal_decision_function(self, X: Any, **kwargs: Any):
        raise NotImplementedError("EnsembleDetector has no causal scores: its members' causal scores are not "
                                  "combined; use decision_function, or each member's causal_decision_function")

    # ---- model files ----------------------------------------------------------------------------
    def _get_state(self) -> dict:
        return {"members": [member_record(m) for m in self.members_]}

    def _set_state(self, state: dict) -> None:
        records = state["members"]
        names = _names(self.members)
        if not isinstance(records, (list, tuple)) or len(records) != len(names):
            raise ValueError(f"the state holds {len(records) if isinstance(records, (list, tuple)) else 'no'} "
                             f"member(s) for members={list(names)}")
        self.members_ = [member_from_record(r, self.device_) for r in records]
        for member in self.members_:  # the ensemble's device and backend, which loading may have changed
            member.set_params(device=str(self.device_), backend=self.backend)
        got = [type(m).__name__ for m in self.members_]
        want = [get_detector(n).__name__ for n in names]
        if got != want:
            raise ValueError(f"the state's members are {got}, the parameters name {want}")
        self._fit_normalizers()
