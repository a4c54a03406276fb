"""Tabular anomaly tasks built from data sets that scikit-learn ships (no download).

- :func:`load_digits_one_class`: the one-class protocol of Ruff et al., "Deep One-Class Classification"
  (ICML 2018), on scikit-learn's 8x8 digits in place of MNIST: one class is normal, the other nine anomalous.
- :func:`load_wdbc`, :func:`load_wine`: the ODDS outlier sets (Rayana 2016, odds.cs.stonybrook.edu) WDBC
  (357 benign + 10 malignant, 30 features) and wine (119 rows of classes 2 and 3 + 10 of class 1, 13 features),
  rebuilt from scikit-learn's copies of the UCI sources; the outlier class is subsampled at random (seeded),
  so the outlier rows differ from the ODDS files.
"""
from __future__ import annotations

import numpy as np

from genad_fast.data.containers import ANOMALY_KINDS, TabularData

__all__ = ["load_digits_one_class", "load_wdbc", "load_wine", "global_contrast_normalize"]

SETTINGS = ("semi-supervised", "unsupervised")


def global_contrast_normalize(x: np.ndarray) -> np.ndarray:
    """Per-sample global contrast normalisation with the l1 scale (Ruff et al. 2018):
    ``x <- (x - mean(x)) / mean(|x - mean(x)|)``; a constant sample becomes all zeros."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(axis=1, keepdims=True)
    scale = np.abs(centred).mean(axis=1, keepdims=True)
    return centred / np.where(scale > 0, scale, 1.0)


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    return int(seed)


def _check_fraction(name: str, value: float) -> float:
    if not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return float(value)


def load_digits_one_class(normal_class: int, seed: int = 0, *, test_fraction: float = 0.3,
                          preprocess: str = "ruff", dtype: type = np.float32) -> TabularData:
    """scikit-learn's digits (1797 images of 8x8 pixels, 0..16) as a one-class task; unpacks as
    ``X_train, X_test, y_test``.

    Protocol (Ruff et al. 2018, MNIST/CIFAR-10 section, on digits): the data is split at random, stratified
    by digit (``test_fraction`` to the test part, seeded by ``seed``, as digits has no fixed split);
    ``X_train`` holds only the training images of ``normal_class``; ``X_test`` all test images, ``y_test`` = 1
    for the nine other digits. ``preprocess="ruff"``: global contrast normalisation with the l1 scale
    (:func:`global_contrast_normalize`), then min-max scaling to [0, 1] with the minimum and maximum over the
    normal training images (scalars), as Ruff et al. do; ``"none"``: the raw pixels. Since the data is
    already scaled, fit detectors with ``normalize=False`` to follow the protocol (per-pixel
    standardisation blows up the near-constant border pixels).
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    if isinstance(normal_class, bool) or not isinstance(normal_class, (int, np.integer)) or \
            not 0 <= normal_class <= 9:
        raise ValueError(f"normal_class must be a digit 0..9, got {normal_class!r}")
    seed = _check_seed(seed)
    test_fraction = _check_fraction("test_fraction", test_fraction)
    if preprocess not in ("ruff", "none"):
        raise ValueError(f"preprocess must be 'ruff' or 'none', got {preprocess!r}")
    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X.astype(np.float64), y, test_size=test_fraction,
                                              stratify=y, random_state=seed)
    train = X_tr[y_tr == normal_class]
    test = X_te
    if preprocess == "ruff":
        train, test = global_contrast_normalize(train), global_contrast_normalize(test)
        lo, hi = train.min(), train.max()
        train, test = (train - lo) / (hi - lo), (test - lo) / (hi - lo)
    labels = (y_te != normal_class).astype(np.int8)
    params = dict(name=f"digits-{int(normal_class)}", normal_class=int(normal_class), seed=seed,
                  test_fraction=test_fraction, preprocess=preprocess, protocol="Ruff et al. 2018 one-class",
                  digit=y_te.astype(np.int64))
    return TabularData(train.astype(dtype), test.astype(dtype), labels, labels * np.int8(ANOMALY_KINDS["labelled"]),
                       params)


def _odds_task(X: np.ndarray, inlier: np.ndarray, n_outliers: int, name: str, seed: int, setting: str,
               train_fraction: float, dtype: type, note: str) -> TabularData:
    seed = _check_seed(seed)
    if setting not in SETTINGS:
        raise ValueError(f"setting must be one of {', '.join(SETTINGS)}, got {setting!r}")
    train_fraction = _check_fraction("train_fraction", train_fraction)
    rng = np.random.default_rng(seed)
    inliers = np.flatnonzero(inlier)
    outliers = rng.choice(np.flatnonzero(~inlier), size=n_outliers, replace=False)
    if setting == "unsupervised":  # ODDS: fit and score the same contaminated set
        rows = rng.permutation(np.concatenate([inliers, outliers]))
        train_rows = test_rows = rows
    else:  # fit on a share of the inliers, score the other inliers and every outlier
        perm = rng.permutation(inliers)
        cut = int(round(train_fraction * len(perm)))
        train_rows = perm[:cut]
        test_rows = rng.permutation(np.concatenate([perm[cut:], outliers]))
    labels = (~inlier[test_rows]).astype(np.int8)
    params = dict(name=name, seed=seed, setting=setting, train_fraction=train_fraction if setting ==
                  "semi-supervised" else None, n_outliers=n_outliers, protocol=note)
    return TabularData(X[train_rows].astype(dtype), X[test_rows].astype(dtype), labels,
                       labels * np.int8(ANOMALY_KINDS["labelled"]), params)


def load_wdbc(seed: int = 0, *, setting: str = "semi-supervised", train_fraction: float = 0.5,
              dtype: type = np.float32) -> TabularData:
    """Wisconsin Diagnostic Breast Cancer as ODDS's ``wdbc`` outlier set: the 357 benign tumours are normal,
    10 of the 212 malignant ones (drawn with ``seed``) are the outliers (2.7 % of 367 rows); 30 features.

    ``setting="unsupervised"`` (ODDS): train and test are the same 367 rows. ``"semi-supervised"`` (default,
    the library's fit-on-normal use): ``train_fraction`` of the benign rows train, the other benign rows and
    the 10 outliers are the test set.
    """
    from sklearn.datasets import load_breast_cancer

    data = load_breast_cancer()
    inlier = data.target == 1  # scikit-learn: 0 = malignant, 1 = benign
    return _odds_task(data.data.astype(np.float64), inlier, 10, "wdbc", seed, setting, train_fraction, dtype,
                      "ODDS wdbc: benign normal, 10 malignant outliers")


def load_wine(seed: int = 0, *, setting: str = "semi-supervised", train_fraction: float = 0.5,
              dtype: type = np.float32) -> TabularData:
    """The UCI wine data as ODDS's ``wine`` outlier set: classes 2 and 3 (119 rows) are normal, 10 rows of
    class 1 (drawn with ``seed``) the outliers (7.7 % of 129); 13 features. ``setting`` as :func:`load_wdbc`."""
    from sklearn.datasets import load_wine as sk_load_wine

    data = sk_load_wine()
    inlier = data.target != 0  # scikit-learn's class 0 is the UCI class 1
    return _odds_task(data.data.astype(np.float64), inlier, 10, "wine", seed, setting, train_fraction, dtype,
                      "ODDS wine: classes 2-3 normal, 10 class-1 outliers")
