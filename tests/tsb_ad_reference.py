"""A small port of TSB-AD's reference code (TheDatumOrg/TSB-AD, Apache-2.0, commit 8763009), for the tests only.

TSB-AD itself is not installable offline here (it pins its own torch and many model packages), so the three
pieces the evaluation must match are copied with their loops kept as they are in the original:

- ``TSB_AD/evaluation/basic_metrics.py``: ``range_convers_new``, ``new_sequence``, ``sequencing`` and
  ``RangeAUC_volume_opt`` (VUS-ROC/VUS-PR over buffer lengths ``0..windowSize``);
- ``TSB_AD/evaluation/metrics.py``: ``get_metrics`` calls ``generate_curve(labels, score, slidingWindow)``,
  i.e. ``RangeAUC_volume_opt(windowSize=slidingWindow)``;
- ``TSB_AD/utils/slidingWindows.py``: ``find_length_rank(data, rank=1)`` with statsmodels' ``acf(data,
  nlags=400, fft=True)`` written out (the biased autocorrelation: sum of lagged products of the demeaned
  series over n times its variance) and scipy's ``argrelextrema(..., np.greater)``.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import argrelextrema


def range_convers_new(label):
    anomaly_starts = np.where(np.diff(label) == 1)[0] + 1
    anomaly_ends, = np.where(np.diff(label) == -1)
    if len(anomaly_ends):
        if not len(anomaly_starts) or anomaly_ends[0] < anomaly_starts[0]:
            anomaly_starts = np.concatenate([[0], anomaly_starts])
    if len(anomaly_starts):
        if not len(anomaly_ends) or anomaly_ends[-1] < anomaly_starts[-1]:
            anomaly_ends = np.concatenate([anomaly_ends, [len(label) - 1]])
    return list(zip(anomaly_starts, anomaly_ends))


def new_sequence(label, sequence_original, window):
    a = max(sequence_original[0][0] - window // 2, 0)
    sequence_new = []
    for i in range(len(sequence_original) - 1):
        if sequence_original[i][1] + window // 2 < sequence_original[i + 1][0] - window // 2:
            sequence_new.append((a, sequence_original[i][1] + window // 2))
            a = sequence_original[i + 1][0] - window // 2
    sequence_new.append((a, min(sequence_original[len(sequence_original) - 1][1] + window // 2, len(label) - 1)))
    return sequence_new


def sequencing(x, L, window=5):
    label = x.copy().astype(float)
    length = len(label)
    for k in range(len(L)):
        s = L[k][0]
        e = L[k][1]
        x1 = np.arange(e + 1, min(e + window // 2 + 1, length))
        label[x1] += np.sqrt(1 - (x1 - e) / (window))
        x2 = np.arange(max(s - window // 2, 0), s)
        label[x2] += np.sqrt(1 - (s - x2) / (window))
    label = np.minimum(np.ones(length), label)
    return label


def range_auc_volume_opt(labels_original, score, windowSize, thre=250):
    """(VUS-ROC, VUS-PR) as ``RangeAUC_volume_opt`` returns its last two values."""
    window_3d = np.arange(0, windowSize + 1, 1)
    P = np.sum(labels_original)
    seq = range_convers_new(labels_original)
    l = new_sequence(labels_original, seq, windowSize)  # noqa: E741 (the original's name)
    score_sorted = -np.sort(-score)
    auc_3d = np.zeros(windowSize + 1)
    ap_3d = np.zeros(windowSize + 1)
    tp = np.zeros(thre)
    N_pred = np.zeros(thre)
    for k, i in enumerate(np.linspace(0, len(score) - 1, thre).astype(int)):
        threshold = score_sorted[i]
        pred = score >= threshold
        N_pred[k] = np.sum(pred)
    for window in window_3d:
        labels_extended = sequencing(labels_original, seq, window)
        L = new_sequence(labels_extended, seq, window)
        TF_list = np.zeros((thre + 2, 2))
        Precision_list = np.ones(thre + 1)
        j = 0
        for i in np.linspace(0, len(score) - 1, thre).astype(int):
            threshold = score_sorted[i]
            pred = score >= threshold
            labels = labels_extended.copy()
            existence = 0
            for seg in L:
                labels[seg[0]:seg[1] + 1] = labels_extended[seg[0]:seg[1] + 1] * pred[seg[0]:seg[1] + 1]
                if (pred[seg[0]:(seg[1] + 1)] > 0).any():
                    existence += 1
            for seg in seq:
                labels[seg[0]:seg[1] + 1] = 1
            TP = 0
            N_labels = 0
            for seg in l:
                TP += np.dot(labels[seg[0]:seg[1] + 1], pred[seg[0]:seg[1] + 1])
                N_labels += np.sum(labels[seg[0]:seg[1] + 1])
            TP += tp[j]
            FP = N_pred[j] - TP
            existence_ratio = existence / len(L)
            P_new = (P + N_labels) / 2
            recall = min(TP / P_new, 1)
            TPR = recall * existence_ratio
            N_new = len(labels) - P_new
            FPR = FP / N_new
            Precision = TP / N_pred[j]
            j += 1
            TF_list[j] = [TPR, FPR]
            Precision_list[j] = Precision
        TF_list[j + 1] = [1, 1]
        width = TF_list[1:, 1] - TF_list[:-1, 1]
        height = (TF_list[1:, 0] + TF_list[:-1, 0]) / 2
        auc_3d[window] = np.dot(width, height)
        width_PR = TF_list[1:-1, 0] - TF_list[:-2, 0]
        height_PR = Precision_list[1:]
        ap_3d[window] = np.dot(width_PR, height_PR)
    return sum(auc_3d) / len(window_3d), sum(ap_3d) / len(window_3d)


def _acf(x, nlags):
    """statsmodels ``acf(x, nlags, fft=True)`` (adjusted=False, demean=True)."""
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    z = x - x.mean()
    size = 1 << int(np.ceil(np.log2(2 * n - 1)))
    f = np.fft.rfft(z, n=size)
    acov = np.fft.irfft(f * np.conj(f), n=size)[:n] / n
    return (acov / acov[0])[: nlags + 1]


def find_length_rank(data, rank=1):
    """``find_length_rank`` for rank 1 (the only rank TSB-AD's runs use)."""
    data = data.squeeze()
    if len(data.shape) > 1:
        return 0
    if rank == 0:
        return 1
    data = data[:min(20000, len(data))]
    base = 3
    auto_corr = _acf(data, 400)[base:]
    local_max = argrelextrema(auto_corr, np.greater)[0]
    try:
        sorted_local_max = np.argsort([auto_corr[lcm] for lcm in local_max])[::-1]
        max_local_max = sorted_local_max[0]
        if local_max[max_local_max] < 3 or local_max[max_local_max] > 300:
            return 125
        return local_max[max_local_max] + base
    except IndexError:  # the original's bare except: no local maximum at all
        return 125
