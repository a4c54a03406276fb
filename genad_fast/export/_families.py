"""Which detectors export, with which scorer, and why the others do not.

Detectors are recognised by the import path of a class in their MRO (as the registry does,
:mod:`genad_fast.detectors._registry`), so this package never imports the detector modules: they sit above it
(``BaseDetector.export`` calls down into it). A subclass exports through the hook scorer when its class or a
base is listed; the scorers that restate a score accept a subclass only if it keeps the scoring methods they
restate.
"""
from __future__ import annotations

import copy
import os
import tempfile
import warnings

import torch
from torch import nn

from genad_fast.detectors._registry import registered_name
from genad_fast.export._graph import ScoreGraph
from genad_fast.export._scorers import HookScorer, KDEScorer, KNNScorer, VAEScorer

__all__ = ["EXPORTABLE", "build_graph", "check_exportable", "exportable_detectors", "metadata"]

#: Class path -> (registry name, scorer, the methods of that class the scorer restates).
EXPORTABLE: dict[str, tuple[str, type[nn.Module], tuple[str, ...]]] = {
    "genad_fast.detectors.flow:FlowDetector": ("flow", HookScorer, ()),
    "genad_fast.detectors.autoencoder:AutoEncoderDetector": ("autoencoder", HookScorer, ()),
    "genad_fast.detectors.vae:VAEDetector": ("vae", VAEScorer, ("_score_model",)),
    "genad_fast.detectors.deep_svdd:DeepSVDDDetector": ("deep_svdd", HookScorer, ()),
    "genad_fast.detectors.anogan:FAnoGANDetector": ("fanogan", HookScorer, ()),
    "genad_fast.detectors.sklearn_baselines:PCADetector": ("pca", HookScorer, ()),
    "genad_fast.detectors.knn:KNNDetector": ("knn", KNNScorer, ("_score_model", "_score_against")),
    "genad_fast.detectors.kde:KDEDetector": ("kde", KDEScorer, ("_score_model", "_score_against")),
    "genad_fast.detectors.dte:DTEDetector": ("dte", HookScorer, ()),
}

_SERVE_WITH_PACKAGE = "serve it with genad_fast itself (det.save(path); genad_fast.load(path).decision_function(X))"
#: Class path -> why it cannot be exported, and what to use instead.
NOT_EXPORTABLE: dict[str, str] = {
    "genad_fast.detectors.anogan:AnoGANDetector": (
        "its score is a latent search: every sample runs its own Adam iterations on z, through a hand-written "
        "backward pass, stops early on a data-dependent test (tol) and leaves the working set as it converges "
        "(data-dependent shapes). A graph of fixed structure holds neither; without them, torch.export would "
        "unroll `iterations` forward and backward passes into one graph. Export an FAnoGANDetector instead (its izi_f "
        "encoder replaces the search by one pass), or " + _SERVE_WITH_PACKAGE),
    "genad_fast.detectors.diffusion:DiffusionDetector": (
        "it scores a whole series at once, in tiles, through a reverse sampling chain whose noise is drawn per "
        "position of the series from the call's seed: there is no per-window score that equals it, and the "
        "chain of n_steps denoiser passes with Philox noise would be unrolled into one graph. " +
        "S" + _SERVE_WITH_PACKAGE[1:]),
    "genad_fast.detectors.ensemble:EnsembleDetector": (
        "it combines other detectors' whole-input scores (each member windows and reduces a series its own way, "
        "and a diffusion member scores a series in tiles), so it has no per-window score to trace; export its "
        "members one by one (det.members_[i].export(path)) and combine their scores with the ensemble's "
        "normalisation (centers_, scales_), or " + _SERVE_WITH_PACKAGE),
}


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def exportable_detectors() -> list[str]:
    """The detector classes that export, as ``"ClassName (registry name)"``."""
    return [f"{path.partition(':')[2]} ({name})" for path, (name, _, _) in EXPORTABLE.items()]


def _scorer_for(det) -> type[nn.Module]:
    cls = type(det)
    for base in cls.__mro__:
        path = _class_path(base)
        if path in NOT_EXPORTABLE:
            raise NotImplementedError(f"{cls.__name__} cannot be exported: {NOT_EXPORTABLE[path]}")
        if path in EXPORTABLE:
            _, scorer, restated = EXPORTABLE[path]
            changed = [m for m in restated if getattr(cls, m) is not getattr(base, m)]
            if changed:
                raise NotImplementedError(
                    f"{cls.__name__} overrides {', '.join(changed)} of {base.__name__}, whose score the exporter "
                    f"restates as a graph; it cannot know the new one")
            return scorer
    raise NotImplementedError(f"{cls.__name__} cannot be exported: no exported scorer is written for it. "
                              f"Exportable: {', '.join(exportable_detectors())}")


def _on_cpu(det):
    """``det`` with its fitted state on the CPU (exports are traced there): itself, or a copy read back from a
    model file for a detector on another device (the detector is never changed)."""
    if torch.device(det.device_).type == "cpu":
        return det
    from genad_fast.detectors._io import load_detector, save_detector

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # The copy is internal: the loader's note that a CUDA backend became "auto" on the CPU is not the user's.
        warnings.filterwarnings("ignore", message=r"model file .* loaded on cpu", category=UserWarning)
        path = os.path.join(tmp, "model.pt")
        save_detector(det, path)
        return load_detector(path, map_location="cpu")


def _float32_products(det):
    """A copy of ``det`` whose products run in float32 (the exported graph is float32 throughout); a deep copy, so
    that the export can switch its networks' gradients off without touching the user's detector."""
    det = copy.deepcopy(det)
    if getattr(det, "matmul_dtype", "float32") != "float32":
        warnings.warn(f"{type(det).__name__} scores with matmul_dtype={det.matmul_dtype!r}; the exported graph "
                      f"computes its products in float32 (onnxruntime's CPU kernels have no bfloat16 GEMM), so its "
                      f"scores equal those of the detector with matmul_dtype='float32', which the bfloat16 ones "
                      f"approximate", UserWarning, stacklevel=4)
        det.matmul_dtype = "float32"
    return det


def check_exportable(det) -> type[nn.Module]:
    """The scorer class of ``det``; NotFittedError or NotImplementedError (saying why) when it cannot export."""
    det._check_fitted()
    return _scorer_for(det)


def build_graph(det) -> tuple[ScoreGraph, torch.Tensor]:
    """The :class:`~genad_fast.export._graph.ScoreGraph` of fitted ``det``, and an example input (2 rows or
    windows; the batch size is dynamic in the export)."""
    scorer_cls = check_exportable(det)
    det = _float32_products(_on_cpu(det))
    det._check_params(scoring=True)
    graph = ScoreGraph(scorer_cls(det), det._input_stats(), det.normalizer_)
    graph.requires_grad_(False)  # a served score needs no gradients (the torch format keeps this flag)
    shape = (2, det._window, det.n_features_in_) if det.is_series else (2, det.n_features_in_)
    return graph, torch.zeros(shape, dtype=torch.float32)


def metadata(det, output_rank: int) -> dict[str, str]:
    """What a server needs to know about the graph (ONNX metadata_props / the torch file's extra file)."""
    from genad_fast._version import __version__

    series = det.is_series
    layout = f"[batch, {det._window}, {det.n_features_in_}] windows" if series else \
        f"[batch, {det.n_features_in_}] rows"
    out = "[batch]" if output_rank == 1 else f"[batch, {det._window}] (per timestamp of each window)"
    meta = {
        "genad_fast_version": __version__,
        "detector": registered_name(type(det)) or _class_path(type(det)),
        "detector_class": _class_path(type(det)),
        "input": f"x: float32 {layout} of raw (unnormalised) data",
        "output": f"score: float32 {out}, higher = more anomalous; +inf for inputs holding a non-finite value or "
                  f"one more than 1e6 training standard deviations from its column's training mean",
        "n_features": str(det.n_features_in_),
        "threshold": repr(float(det.threshold_)),
        "window": str(det._window) if series else "",
        "stride": str(det.stride) if series else "",
        "reduce": str(det.reduce) if series else "",
    }
    for key in ("anomaly_score", "method", "objective"):
        if hasattr(det, key):
            meta[key] = str(getattr(det, key))
    names = getattr(det, "feature_names_in_", None)
    if names is not None:
        meta["feature_names"] = ",".join(str(n) for n in names)
    return meta
