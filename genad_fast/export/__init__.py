"""Export of fitted scorers for serving: ONNX (runs in onnxruntime without genad_fast) and ``torch.export``.

    det.export("model.onnx")                  # or export_detector(det, "model.onnx", format="onnx")
    det.export("model.pt2", format="torch")   # a torch.export ExportedProgram (torch.export.load)

The exported graph holds everything between the raw data and the score (:mod:`genad_fast.export._graph`): the
extreme-value guard, the normaliser, the model and the score formula. Input ``x``: float32 rows ``[N, D]``, or
for a series detector (``window=W``) raw windows ``[N, W, C]``; output ``score``: float32 ``[N]`` (``[N, W]`` for
AE/VAE with ``per_timestamp=True``), equal to what the detector computes for those rows or windows. ``N`` is
dynamic. For series, the combination of overlapping windows into one score per timestamp (``reduce``) stays
outside the graph (docs/serve.md shows it in numpy). ``threshold_`` and the detector's settings are in the
file's metadata.

Both formats trace the eager twins of the fused ops (the ``eager`` backend of :class:`genad_fast.ops.Dispatch`,
:mod:`genad_fast.reference`): the graphs hold plain ATen / ONNX ops only, so the torch format loads with
``torch.export.load`` without genad_fast installed, like the ONNX file in onnxruntime. Products are float32
(a detector with ``matmul_dtype="bfloat16"`` exports with float32 products, with a warning).

Exportable: flow (NLL and typicality), autoencoder, VAE (ELBO and reconstruction probability, with the
detector's latent draws: keyed on each row's content, so the graph recomputes them), Deep SVDD, f-AnoGAN's
encoder path, PCA, kNN and KDE (their reference set a constant of the graph; all N·M distances of a batch at
once, so pick the batch size for memory). Not exportable, with the reason and what to use instead: AnoGAN's
latent search and diffusion's sampling chain (NotImplementedError), and every other detector.
"""
from __future__ import annotations

import os

import torch

from genad_fast.export._families import build_graph, check_exportable, exportable_detectors, metadata
from genad_fast.export._writers import INSTALL_HINT, TORCH_METADATA, require_onnx, write_onnx, write_torch

__all__ = ["EXPORT_FORMATS", "INSTALL_HINT", "TORCH_METADATA", "export_detector", "exportable_detectors",
           "export_program"]

#: The formats of :func:`export_detector`.
EXPORT_FORMATS = ("onnx", "torch")


def export_program(det) -> torch.export.ExportedProgram:
    """The ``torch.export`` program of fitted ``det``'s scorer (see the module docstring), batch size dynamic."""
    return _export(det)[0]


def _export(det) -> tuple[torch.export.ExportedProgram, torch.Tensor]:
    graph, example = build_graph(det)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():
        return torch.export.export(graph, (example,), dynamic_shapes=({0: batch},), strict=False), example


def export_detector(det, path: str | os.PathLike, format: str = "onnx") -> str:
    """Write fitted ``det``'s scorer to ``path`` as ``format`` ("onnx" or "torch"); returns the path.

    Raises NotFittedError (a ValueError) for an unfitted detector, ValueError for an unknown format,
    NotImplementedError for a detector that cannot be exported (the message says why and what to use instead),
    ImportError naming the ``export`` extra's packages when format="onnx" lacks onnx or onnxscript."""
    if not isinstance(format, str) or format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(repr(f) for f in EXPORT_FORMATS)}, got {format!r}")
    path = os.fspath(path)
    check_exportable(det)  # a detector that cannot export says so whatever is installed
    if format == "onnx":
        require_onnx()  # before the trace: a missing package is no reason to wait
    program, example = _export(det)
    meta = metadata(det, len(_output_shape(program)))
    if format == "onnx":
        write_onnx(program, example, path, meta)
    else:
        write_torch(program, path, meta)
    return path


def _output_shape(program: torch.export.ExportedProgram) -> tuple:
    node = next(n for n in program.graph.nodes if n.op == "output")
    return tuple(node.args[0][0].meta["val"].shape)
