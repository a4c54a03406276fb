"""AutoEncoderDetector: the reconstruction error of a deterministic autoencoder (the DCAE baseline of
Ruff et al., "Deep One-Class Classification", ICML 2018).

An autoencoder trained on normal data to reconstruct it through a ``latent_dim`` bottleneck
reconstructs normal samples well and anomalies badly (Sakurada & Yairi, 2014):

    score(x)   = ||x - D(E(x))||² / D                    (rows: mean over the D features)
    score(x)_t = Σ_c (x_tc - x̂_tc)² / C                   (windows, per timestamp; ``per_timestamp=True``)

Windows are encoded with 1-D convolutions over time, rows with an MLP
(:mod:`genad_fast.nn.blocks`). With ``per_timestamp=True`` each timestamp gets the mean over the
windows covering it of its own error (``reduce``, "min" by default), so an anomaly is scored where it is.
"""
from __future__ import annotations

import torch

from genad_fast._params import Param
from genad_fast.detectors._call import build_network
from genad_fast.detectors._network import HIDDEN, NetworkParamsMixin, default_code_size, sample_shape
from genad_fast.detectors.base import REDUCE, BaseDetector
from genad_fast.nn import training
from genad_fast.nn.autoencoder import AutoEncoder, reconstruction_loss


class AutoEncoderDetector(NetworkParamsMixin, BaseDetector):
    """Autoencoder reconstruction-error detector, tabular or over windows of a series.

    Parameters
    ----------
    """

    min_fit_samples = 8
    _param_specs = (
        Param("latent_dim", "int", "Bottleneck size; None: half the input size (features, or W·C), at least 2, at "
              "most 16. It must be smaller than the input for the error to mean anything (an autoencoder as wide "
              "as its input can learn the identity and reconstruct anomalies too).", low=1, allow_none=True),
        HIDDEN.but(doc="Hidden widths of the MLP (rows) or channels of the convolution stages (windows, each stage "
                   "halves the length); None: (128, 64) for rows, (32, 64) for windows."),
        Param("per_timestamp", "bool", "Windows: score each timestamp by its own reconstruction error (else each "
              "window by its mean error).", scoring=True),
        REDUCE.but(doc="Series: how the scores of the windows covering a timestamp combine. A window's code depends "
                   "on all its timestamps, so an anomaly spoils the reconstruction of the normal timestamps around "
                   "it in every window it falls in; \"min\" keeps the score where every covering window finds it "
                   "anomalous (see :data:`genad_fast.series.REDUCTIONS`)."),
    )

    def __init__(self, latent_dim: int | None = None, hidden: tuple[int, ...] | None = None, kernel_size: int = 5,
                 batch_norm: bool = False, per_timestamp: bool = True, epochs: int = 50, batch_size: int = 128,
                 lr: float = 1e-3, weight_decay: float = 0.0, grad_clip: float = 5.0, val_fraction: float = 0.1,
                 patience: int = 10, reduce: str = "min", **kwargs):
        super().__init__(reduce=reduce, **kwargs)
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.kernel_size = kernel_size
        self.batch_norm = batch_norm
        self.per_timestamp = per_timestamp
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.grad_clip = grad_clip
        self.val_fraction = val_fraction
        self.patience = patience

    def _build(self, shape: tuple[int, ...], latent: int) -> AutoEncoder:
        hidden = self._hidden_for(shape)
        return build_network(self, lambda: AutoEncoder(shape, latent, hidden, kernel_size=self.kernel_size,
                                                       batch_norm=self.batch_norm), "autoencoder")

    def _fit_model(self, data: torch.Tensor) -> None:
        shape = sample_shape(data)
        n_dims = data[0].numel()
        latent = self.latent_dim if self.latent_dim is not None else default_code_size(n_dims)
        self.model_ = self._build(shape, latent)
        self.history_ = training.fit(self.model_, reconstruction_loss, data, self._train_config(),
                                     self._torch_generator("fit"), verbose=self.verbose, desc="AutoEncoderDetector")

    def _score_model(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model_.errors(batch, per_timestamp=self.is_series and self.per_timestamp)

    def _get_state(self) -> dict:
        return {"model": self.model_.state_dict(), "sample_shape": list(self.model_.sample_shape),
                "latent_dim": int(self.model_.encoder.out_dim)}

    def _set_state(self, state: dict) -> None:
        self.model_ = self._build(tuple(int(s) for s in state["sample_shape"]), int(state["latent_dim"]))
        self.model_.load_state_dict(state["model"])
        self.model_.eval()
