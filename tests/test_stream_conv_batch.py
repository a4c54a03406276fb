"""A window's score does not depend on the batch it is scored in, for the convolutional autoencoder at a size
where oneDNN's float32 convolution takes its batched kernels (8 channels, W = 32, bench.stream's model): batches
of 1-15 windows round differently from larger ones there, so ``min_score_rows`` pads every batch to 16, and a
stream in chunks of 1, 5 and 16 gives ``causal_decision_function``'s scores bit for bit (issue #15 point 2)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from genad_fast.detectors import get_detector

pytestmark = pytest.mark.usefixtures("one_thread")


def _series(T: int, seed: int) -> np.ndarray:
    t = np.arange(T)[:, None]
    rng = np.random.default_rng(seed)
    return np.sin(2 * np.pi * t / (50 + 7 * np.arange(8))) + 0.3 * rng.normal(size=(T, 8))


def test_conv_autoencoder_scores_do_not_depend_on_the_batch_and_stream_bitwise():
    det = get_detector("autoencoder")(window=32, epochs=1, batch_size=256, device="cpu", seed=0,
                                      verbose=False).fit(_series(1200, 0))
    windows = torch.from_numpy(_series(400, 3)).float().unfold(0, 32, 1).transpose(1, 2)
    with torch.inference_mode():
        full = det._score_batch(windows)
        for b in (1, 2, 8, 15, 16, 17):
            assert torch.equal(det._score_batch(windows[:b]), full[:b]), b
    x = _series(200, 1)
    want = det.causal_decision_function(x, stride=1)
    for chunk in (1, 5, 16):
        s = det.stream(stride=1, exact=True)
        got = np.concatenate([s.update(x[i:i + chunk]).scores for i in range(0, len(x), chunk)] + [s.flush().scores])
        np.testing.assert_array_equal(got, want, err_msg=f"chunk {chunk}")
