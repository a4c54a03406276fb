"""Fused ops: one module per hot path. Each validates its inputs, picks the backend
(``backend=`` > ``GENAD_FAST_BACKEND`` > auto, or the choice of a :class:`Dispatch` made once per call) and
registers fake and autograd kernels. The schemas of both kernel libraries are one table (:mod:`.schema`)."""
from genad_fast.ops.dispatch import Dispatch
from genad_fast.ops.noise import philox_counters, randn
from genad_fast.ops.coupling import coupling_forward, coupling_inverse
from genad_fast.ops.diffusion import add_noise, diffusion_step, recon_error_accumulate_
from genad_fast.ops.anogan import anogan_residual, masked_adam_
from genad_fast.ops.distance import kde_logpdf, knn_distance, scott_bandwidth, silverman_bandwidth
from genad_fast.ops.linear import linear_act
from genad_fast.ops.conv import conv1d_act
from genad_fast.ops.gated import gated_tanh
from genad_fast.ops.gelu import bias_gelu
from genad_fast.ops.permute import permute_affine

__all__ = [
    "Dispatch",
    "add_noise", "anogan_residual", "coupling_forward", "coupling_inverse", "diffusion_step", "masked_adam_",
    "philox_counters", "randn", "recon_error_accumulate_",
    "kde_logpdf", "knn_distance", "scott_bandwidth", "silverman_bandwidth", "linear_act",
    "conv1d_act", "gated_tanh", "bias_gelu", "permute_affine",
]
