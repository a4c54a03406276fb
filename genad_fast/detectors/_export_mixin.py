"""``det.export(path, format=...)``: the fitted scorer as an ONNX file or a ``torch.export`` program.

The work is :func:`genad_fast.export.export_detector`, imported when called (it pulls in ``torch.export`` and,
for ONNX, the exporter's packages, which scoring never needs).
"""
from __future__ import annotations

import os

__all__ = ["ExportMixin"]


class ExportMixin:
    """The ``export`` method of :class:`~genad_fast.detectors.base.BaseDetector`."""

    def export(self, path: str | os.PathLike, format: str = "onnx") -> str:
        """Write the fitted scorer to ``path``: ``format="onnx"`` (runs in onnxruntime without genad_fast; needs
        the ``export`` extra) or ``"torch"`` (``torch.export.save``; ``torch.export.load`` reads it,
        with torch alone). Returns the path.

        The graph holds the extreme-value guard, the normaliser, the model and the score: input raw float32 rows
        ``[N, D]`` (series detectors: windows ``[N, W, C]``), output float32 scores ``[N]`` (``[N, W]`` for
        per-timestamp window scores), equal to this detector's for those rows or windows; ``N`` is dynamic. A
        detector whose score cannot be a graph (AnoGAN's latent search, diffusion's sampling chain, the
        scikit-learn baselines other than PCA) raises NotImplementedError saying why. See
        :mod:`genad_fast.export` and docs/serve.md."""
        from genad_fast.export import export_detector

        return export_detector(self, path, format=format)
