"""FlowDetector's corrected likelihood scores (issue #17 point 3): likelihood ratio against a background Gaussian,
input complexity (Serrà et al. 2020), typicality.

- A constructed case where raw NLL fails (bench/flow_scores.py: noisy sines; constant, smoothed and scaled-down
  segments): the NLL ranks every kind below normal data (AUROC < 0.5), the corrections above 0.9 where they can.
- The formulas, against independent computations (numpy Gaussian, a Rice coder written out per value).
- Training scores handed over by the fit equal a fresh scoring pass; save/load; export (ONNX and torch.export);
  streaming; constant training columns and extreme values give no NaN; bad names list the choices.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch

import genad_fast
from bench.flow_scores import FLOW, per_kind, simple_anomalies
from genad_fast.detectors import _flow_scores
from genad_fast.detectors.flow import SCORES, FlowDetector
from genad_fast.metrics import auroc

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(n_steps=2, hidden=16, n_blocks=1, epochs=3, verbose=False, backend="cpu")
CORRECTED = ("likelihood_ratio", "complexity")


@pytest.fixture(scope="module")
def case():
    train, test, kinds = simple_anomalies(0)
    det = FlowDetector(**FLOW, epochs=12, seed=0, anomaly_score="likelihood_ratio", backend="cpu").fit(train)
    return det, train, test, kinds


def _rows(n=300, d=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    return np.tanh(x) + 0.1 * rng.normal(size=(n, d))  # a curved cloud: not Gaussian


@pytest.fixture(scope="module")
def tabular():
    """score -> a FlowDetector fitted with that score on tabular rows (one constant column: a frozen dimension)."""
    x = _rows()
    x[:, 2] = 1.5
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the constant column's warning
        for score in SCORES:
            out[score] = FlowDetector(**TINY, seed=1, anomaly_score=score).fit(x)
    return out, x


# ---------------------------------------------------------------------------------------------- the case
def test_raw_nll_ranks_simple_windows_as_normal_and_the_corrections_do_not(case):
    det, _, test, kinds = case
    got = {}
    for score in SCORES:
        det.set_params(anomaly_score=score)
        got[score] = per_kind(kinds, det.decision_function(test), auroc)
    det.set_params(anomaly_score="likelihood_ratio")
    # the failure is real: every simple kind looks *more* normal than normal data
    assert all(a < 0.5 for a in got["nll"].values()), got["nll"]
    for score in ("typicality", "complexity"):
        assert all(a > 0.9 for a in got[score].values()), (score, got[score])
    # the ratio against the training data's Gaussian: what the flow learned beyond second-order statistics
    assert got["likelihood_ratio"]["smoothed"] > 0.9 and got["likelihood_ratio"]["scaled 0.3x"] > 0.9, got
    assert got["likelihood_ratio"]["constant"] > 0.8, got


def test_training_scores_equal_a_scoring_pass(case, tabular):
    det, train, _, _ = case
    np.testing.assert_allclose(det.decision_scores_, det.decision_function(train), rtol=1e-5, atol=1e-5)
    fitted, x = tabular
    for score in SCORES:
        d = fitted[score]
        np.testing.assert_allclose(d.decision_scores_, d.decision_function(x), rtol=1e-5, atol=1e-5, err_msg=score)


# ---------------------------------------------------------------------------------------------- formulas
def test_likelihood_ratio_is_nll_minus_the_training_gaussian():
    x = _rows(seed=3)
    det = FlowDetector(**TINY, seed=0, anomaly_score="likelihood_ratio").fit(x)
    test = _rows(n=40, seed=4) * 1.5
    lr = det.decision_function(test)
    nll = det.set_params(anomaly_score="nll").decision_function(test)
    z = (x - x.mean(0)) / x.std(0)
    zt = (test - x.mean(0)) / x.std(0)
    cov = np.cov(z, rowvar=False, bias=True)
    cov += _flow_scores.RIDGE * np.trace(cov) / cov.shape[0] * np.eye(cov.shape[0])
    d = zt - z.mean(0)
    maha = np.einsum("ij,jk,ik->i", d, np.linalg.inv(cov), d)
    gauss = 0.5 * (maha + np.linalg.slogdet(cov)[1] + cov.shape[0] * math.log(2 * math.pi))
    np.testing.assert_allclose(lr, nll - gauss / x.shape[1], rtol=1e-4, atol=1e-4)


def _rice_length(residuals: list[int]) -> int:
    """Rice code length of one channel's residuals with the best parameter (written out value by value)."""
    best = None
    for k in range(9):
        n = 4
        for r in residuals:
            u = 2 * r if r >= 0 else -2 * r - 1
            n += 1 + k + (u >> k)
        best = n if best is None else min(best, n)
    return best


def test_complexity_is_nll_bits_minus_the_rice_length_of_the_8_bit_window():
    rng = np.random.default_rng(0)
    series = np.sin(np.arange(600)[:, None] / 4.0 + np.arange(2)) + 0.2 * rng.normal(size=(600, 2))
    det = FlowDetector(**TINY, window=8, stride=8, seed=0, anomaly_score="complexity").fit(series)
    test = series[:64] * np.array([1.0, 0.5])
    got = det.decision_function(test)  # stride 8, reduce min: each timestamp's score is its window's
    nll = det.set_params(anomaly_score="nll").decision_function(test)
    lo, hi = det.quant_lo_.double().numpy(), det.quant_hi_.double().numpy()
    z = (test - series.mean(0)) / series.std(0)
    q = np.clip(np.floor((z - lo) * (256.0 / (hi - lo))), 0, 255).astype(int)
    qbits = -np.mean(np.log2((hi - lo) / 256.0))
    for w in range(8):
        block = q[8 * w:8 * w + 8]
        bits = sum(_rice_length([int(block[0, c]) - 128] + list(np.diff(block[:, c]))) for c in range(2))
        want = nll[8 * w] / math.log(2) + qbits - bits / 16
        np.testing.assert_allclose(got[8 * w:8 * w + 8], want, rtol=1e-5, atol=1e-5)


def test_byte_compressors_measure_length_of_the_residual_bytes():
    batch = torch.zeros(3, 32, 2)
    batch[1] = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    lo, hi = torch.full((2,), -3.0), torch.full((2,), 3.0)
    for comp in ("rice", *_flow_scores.COMPRESSORS):
        bits = _flow_scores.compressed_bits(batch, lo, hi, comp)
        assert bits.shape == (3,) and bits[1] > bits[0] and bits[0] == bits[2], comp  # noise costs more
    with pytest.raises(ValueError, match="rice, zlib, lzma, bz2"):
        _flow_scores.compressed_bits(batch, lo, hi, "png")


# ---------------------------------------------------------------------------------------------- plumbing
def test_each_score_survives_save_and_load(tabular, tmp_path):
    fitted, x = tabular
    test = _rows(n=50, seed=9)
    for score in SCORES:
        path = tmp_path / f"{score}.pt"
        fitted[score].save(path)
        loaded = genad_fast.load(path)
        assert loaded.anomaly_score == score
        np.testing.assert_array_equal(loaded.decision_function(test), fitted[score].decision_function(test))


@pytest.mark.parametrize("score", CORRECTED)
def test_corrected_scores_export(tabular, tmp_path, score):
    fitted, _ = tabular
    det = fitted[score]
    test = _rows(n=50, seed=9).astype(np.float32)
    want = det.decision_function(test)
    program = torch.export.load(det.export(tmp_path / f"{score}.pt2", format="torch")).module()
    with torch.no_grad():
        got = program(torch.as_tensor(test)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    ort = pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxscript, onnxruntime) is not installed")
    session = ort.InferenceSession(det.export(tmp_path / f"{score}.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(["score"], {"x": test})[0], want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("score", CORRECTED)
def test_corrected_scores_stream_as_the_batch_call(case, score):
    det, _, test, _ = case
    det.set_params(anomaly_score=score)
    try:
        x = test[560:700]
        want = det.causal_decision_function(x, delay=3)
        stream, outs = det.stream(delay=3), []
        for i in range(0, len(x), 13):
            outs.append(stream.update(x[i:i + 13]).scores)
        outs.append(stream.flush().scores)
        np.testing.assert_allclose(np.concatenate(outs), want, rtol=1e-6, atol=1e-6)
    finally:
        det.set_params(anomaly_score="likelihood_ratio")


def test_no_nan_on_constant_columns_and_extreme_values(tabular):
    fitted, x = tabular
    mean, std = x.mean(0), np.maximum(x.std(0), 1.0)
    big = np.tile(mean, (6, 1))
    big[np.arange(6), np.arange(6) % x.shape[1]] += std[np.arange(6) % x.shape[1]] * np.geomspace(1e2, 1e5, 6)
    probes = np.concatenate([big, np.tile(mean, (3, 1)), np.tile(mean + 50 * std, (2, 1)),
                             np.tile(x[:1] * 0, (2, 1))])
    for score in SCORES:
        s = fitted[score].decision_function(probes)
        assert not np.isnan(s).any() and not np.isneginf(s).any(), (score, s)


def test_bad_score_name_lists_the_choices():
    with pytest.raises(ValueError) as info:
        FlowDetector(**TINY, anomaly_score="ratio").fit(_rows(n=50))
    assert all(name in str(info.value) for name in SCORES), str(info.value)


def test_likelihood_ratio_needs_the_background_fitted_with_the_flow(tabular):
    fitted, x = tabular
    det = fitted["nll"]
    assert getattr(det, "background_", None) is None  # the default fit does no background work
    det.set_params(anomaly_score="likelihood_ratio")
    try:
        with pytest.raises(ValueError, match="refit it with anomaly_score='likelihood_ratio'"):
            det.decision_function(x[:5])
    finally:
        det.set_params(anomaly_score="nll")


def test_aliases_of_the_evaluation():
    from genad_fast.evaluation.tasks import resolve_detector

    for alias, score in (("flow-lr", "likelihood_ratio"), ("flow-complexity", "complexity"),
                         ("flow-typicality", "typicality"), ("flow-nll", "nll")):
        spec = resolve_detector(alias)
        assert spec.cls is FlowDetector and spec.params == {"anomaly_score": score}
