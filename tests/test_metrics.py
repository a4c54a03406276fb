"""genad_fast.metrics: hand-worked examples, scikit-learn for AUROC/AUPRC, a literal VUS twin."""
from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_score, recall_score, roc_auc_score

from genad_fast import metrics as M


def _random_case(rng, n_lo=30, n_hi=200, max_ranges=6, max_len=12, rounded=False):
    n = int(rng.integers(n_lo, n_hi))
    y = np.zeros(n, dtype=np.int64)
    for _ in range(int(rng.integers(1, max_ranges + 1))):
        a = int(rng.integers(0, n))
        y[a:a + int(rng.integers(1, max_len + 1))] = 1
    if y.all():
        y[0] = 0
    s = rng.normal(size=n) + y * rng.uniform(0.0, 3.0)
    return y, (np.round(s, 1) if rounded else s)


# ---------------------------------------------------------------------------------------------- AUROC / AUPRC
def test_auroc_auprc_hand_worked():
    y = np.array([0, 0, 1, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8])
    # anomaly/normal pairs: 0.35>0.1 yes, 0.35>0.4 no, 0.8>both yes yes -> 3/4
    assert M.auroc(y, s) == pytest.approx(0.75)
    # thresholds 0.8: P=1 R=1/2; 0.4: P=1/2 R=1/2; 0.35: P=2/3 R=1; 0.1: P=1/2 R=1
    # AP = 1/2*1 + 0*1/2 + 1/2*2/3 + 0*1/2 = 5/6
    assert M.auprc(y, s) == pytest.approx(5 / 6)


def test_auroc_ties_count_half():
    y = np.array([0, 1, 0, 1])
    s = np.array([1.0, 1.0, 0.0, 2.0])
    # anomaly 1.0: tie with 1.0 (1/2), beats 0.0 (1); anomaly 2.0 beats both (2) -> 3.5 / 4
    assert M.auroc(y, s) == pytest.approx(0.875)


@pytest.mark.parametrize("seed", range(6))
def test_auroc_auprc_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y, s = _random_case(rng, 50, 500, rounded=bool(seed % 2))  # rounded: many ties
    assert M.auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert M.auprc(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)


def test_auroc_accepts_bool_labels_and_torch_scores():
    torch = pytest.importorskip("torch")
    y = np.array([False, True, False, True])
    s = torch.tensor([0.1, 0.9, 0.2, 0.8])
    assert M.auroc(y, s) == 1.0


# ---------------------------------------------------------------------------------------------- F1
def test_best_f1_hand_worked():
    y = np.array([0, 0, 1, 1, 0])
    s = np.array([0.1, 0.5, 0.9, 0.3, 0.2])
    # F1 = 2tp / (tp + fp + P), P = 2. Cuts: {.9}: 2/3; +.5: 2/4; +.3: 4/5 (best); +.2: 4/6; all: 4/7
    r = M.best_f1(y, s)
    assert r["f1"] == pytest.approx(0.8)
    assert r["precision"] == pytest.approx(2 / 3)
    assert r["recall"] == pytest.approx(1.0)
    assert r["threshold"] == pytest.approx(0.25)  # midway between 0.3 (flagged) and 0.2 (not)
    pred = (s > r["threshold"]).astype(int)
    assert pred.tolist() == [0, 1, 1, 1, 0]


def test_best_f1_all_flagged_threshold_is_below_minimum():
    y = np.array([1, 1, 0, 1])
    s = np.array([0.0, 0.0, 0.0, 0.0])
    r = M.best_f1(y, s)  # only one cut: everything flagged, F1 = 6/7
    assert r["f1"] == pytest.approx(6 / 7)
    assert (s > r["threshold"]).all()


def test_point_adjusted_f1_hand_worked():
    y = np.array([0, 1, 1, 1, 0, 0, 1, 1, 0])
    s = np.array([0.0, 0.2, 0.9, 0.1, 0.3, 0.1, 0.4, 0.1, 0.0])
    # plain, P = 5, F1 = 2tp/(tp+fp+5): {.9}: 2/6; +.4: 4/7; +.3: 4/8; +.2: 6/9; +.1 (two anomalies, one
    # normal): 10/12 (best); all: 10/14
    plain = M.best_f1(y, s)
    assert plain["f1"] == pytest.approx(10 / 12)
    assert plain["threshold"] == pytest.approx(0.05)
    # adjusted scores: [0, .9, .9, .9, .3, .1, .4, .4, 0]; cut at .4: tp = 5, fp = 0 -> F1 = 1
    pa = M.point_adjusted_f1(y, s)
    assert pa["f1"] == pytest.approx(1.0)
    assert pa["precision"] == pytest.approx(1.0) and pa["recall"] == pytest.approx(1.0)
    assert pa["threshold"] == pytest.approx(0.35)
    np.testing.assert_allclose(M.point_adjust(y, s), [0, .9, .9, .9, .3, .1, .4, .4, 0])


@pytest.mark.parametrize("seed", range(8))
def test_point_adjusted_f1_never_below_plain(seed):
    rng = np.random.default_rng(100 + seed)
    y, s = _random_case(rng, 50, 400, max_len=30, rounded=bool(seed % 2))
    assert M.point_adjusted_f1(y, s)["f1"] >= M.best_f1(y, s)["f1"] - 1e-12


def test_point_adjusted_f1_is_optimistic_for_random_scores_on_long_ranges():
    rng = np.random.default_rng(7)
    y = np.zeros(5000, dtype=int)
    for a in range(200, 5000, 1000):
        y[a:a + 200] = 1  # five ranges of 200: 20% anomalous
    s = rng.random(5000)  # no information at all
    assert M.best_f1(y, s)["f1"] < 0.40  # about 2p/(1+p) = 0.33 for p = 0.2
    assert M.point_adjusted_f1(y, s)["f1"] > 0.9  # one lucky point per range buys the whole range


# ---------------------------------------------------------------------------------------------- range-based
def test_range_prf_partial_overlap_hand_worked():
    y = np.zeros(10, dtype=int)
    y[2:6] = 1  # real range R = [2, 5], length 4
    p = np.zeros(10, dtype=int)
    p[4:8] = 1  # predicted range P = [4, 7], covers positions 3 and 4 of R
    r = M.range_prf(y, p)  # flat: omega(R) = 2/4, omega(P) = 2/4
    assert r == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5})
    # existence reward: alpha Existence + (1 - alpha) omega
    assert M.range_prf(y, p, alpha=1.0)["recall"] == pytest.approx(1.0)
    assert M.range_prf(y, p, alpha=0.5)["recall"] == pytest.approx(0.75)
    # front-end bias, delta(i) = l - i + 1 = 4, 3, 2, 1 over R; covered positions 3, 4 -> (2 + 1) / 10
    front = M.range_prf(y, p, bias="front")
    assert front["recall"] == pytest.approx(0.3)
    # P's covered positions are its first two: (4 + 3) / 10
    assert front["precision"] == pytest.approx(0.7)
    # back-end, delta(i) = i: recall (3 + 4) / 10, precision (1 + 2) / 10
    back = M.range_prf(y, p, bias="back")
    assert back["recall"] == pytest.approx(0.7) and back["precision"] == pytest.approx(0.3)
    # middle, l = 4: delta = 1, 2, 2, 1 -> recall (2 + 1) / 6, precision (1 + 2) / 6
    mid = M.range_prf(y, p, bias="middle")
    assert mid["recall"] == pytest.approx(0.5) and mid["precision"] == pytest.approx(0.5)


def test_range_prf_middle_bias_odd_length():
    y = np.array([0, 1, 1, 1, 1, 1, 0])  # l = 5: delta = 1, 2, 3, 2, 1 (i <= 2.5 -> i, else l - i + 1)
    p = np.array([0, 0, 0, 1, 0, 0, 0])  # covers the middle position 3 -> 3 / 9
    assert M.range_prf(y, p, bias="middle")["recall"] == pytest.approx(3 / 9)


def test_range_prf_cardinality():
    y = np.zeros(12, dtype=int)
    y[0:10] = 1  # one real range of 10
    p = np.zeros(12, dtype=int)
    p[1:3] = 1
    p[5:7] = 1  # two predicted ranges inside it: fragmented detection
    one = M.range_prf(y, p, cardinality="one")
    rec = M.range_prf(y, p, cardinality="reciprocal")
    assert one["recall"] == pytest.approx(0.4)  # 4 of 10 points
    assert rec["recall"] == pytest.approx(0.2)  # gamma = 1/2
    assert one["precision"] == pytest.approx(1.0) and rec["precision"] == pytest.approx(1.0)


def test_range_prf_reduces_to_classical_for_single_points():
    rng = np.random.default_rng(3)
    y = np.zeros(400, dtype=int)
    p = np.zeros(400, dtype=int)
    y[0::2] = rng.random(200) < 0.2  # only even indices: every range is a single point
    p[0::2] = rng.random(200) < 0.3
    r = M.range_prf(y, p)
    assert r["precision"] == pytest.approx(precision_score(y, p))
    assert r["recall"] == pytest.approx(recall_score(y, p))


def test_range_prf_no_predictions():
    y = np.array([0, 1, 1, 0])
    assert M.range_prf(y, np.zeros(4, dtype=int)) == {"precision": 0.0, "recall": 0.0, "f1": 0.0}


def test_range_prf_bad_arguments():
    y = np.array([0, 1, 1, 0])
    p = np.array([0, 1, 0, 0])
    with pytest.raises(ValueError, match="predictions must hold only 0 and 1"):
        M.range_prf(y, np.array([0, 0.5, 0, 0]))
    with pytest.raises(ValueError, match="alpha"):
        M.range_prf(y, p, alpha=1.5)
    with pytest.raises(ValueError, match="cardinality"):
        M.range_prf(y, p, cardinality="two")
    with pytest.raises(ValueError, match="bias"):
        M.range_prf(y, p, bias="front-end")
    with pytest.raises(ValueError, match="all 0"):
        M.range_prf(np.zeros(4, dtype=int), p)


# ---------------------------------------------------------------------------------------------- VUS
def _vus_literal(y, s, L, K=250):
    """The definition (TSB-AD's RangeAUC_volume_opt) as plain loops over buffer lengths, thresholds, points."""
    n, P = len(y), int(np.sum(y))
    runs, t = [], 0
    while t < n:
        if y[t]:
            a = t
            while t < n and y[t]:
                t += 1
            runs.append((a, t - 1))
        else:
            t += 1
    desc = sorted(s, reverse=True)
    taus = [desc[int(i)] for i in np.linspace(0, n - 1, K).astype(int)]
    aucs, aps = [], []
    for w in range(2 * L + 1):
        h = w // 2
        ext = [float(v) for v in y]
        for a, e in runs:
            for d in range(1, h + 1):
                if e + d < n:
                    ext[e + d] += math.sqrt(1 - d / w)
                if a - d >= 0:
                    ext[a - d] += math.sqrt(1 - d / w)
        ext = [min(1.0, v) for v in ext]
        segs, cur = [], [max(runs[0][0] - h, 0), runs[0][1] + h]
        for a, e in runs[1:]:
            if cur[1] < a - h:
                segs.append(cur)
                cur = [a - h, e + h]
            else:
                cur[1] = e + h
        cur[1] = min(cur[1], n - 1)
        segs.append(cur)
        pts, precs = [(0.0, 0.0)], []
        for tau in taus:
            pred = [1 if v >= tau else 0 for v in s]
            lab = [1.0 if y[i] else ext[i] * pred[i] for i in range(n)]
            tp = sum(lab[i] * pred[i] for i in range(n))
            p_new = (P + sum(lab)) / 2
            hit = sum(1 for a, e in segs if any(pred[a:e + 1]))
            pts.append((min(tp / p_new, 1) * hit / len(segs), (sum(pred) - tp) / (n - p_new)))
            precs.append(tp / sum(pred))
        pts.append((1.0, 1.0))
        aucs.append(sum((pts[i + 1][1] - pts[i][1]) * (pts[i + 1][0] + pts[i][0]) / 2 for i in range(len(pts) - 1)))
        aps.append(sum((pts[i + 1][0] - pts[i][0]) * precs[i] for i in range(len(precs))))
    return float(np.mean(aucs)), float(np.mean(aps))


@pytest.mark.parametrize("seed", range(6))
def test_vus_matches_literal_definition(seed):
    rng = np.random.default_rng(200 + seed)
    y, s = _random_case(rng, 30, 150, rounded=bool(seed % 2))
    L = int(rng.integers(0, 7))
    K = [250, 7, 40][seed % 3]  # fewer thresholds than points too
    roc, pr = _vus_literal(y, s, L, K)
    got = M.vus(y, s, L, n_thresholds=K)
    assert got["vus_roc"] == pytest.approx(roc, abs=1e-12)
    assert got["vus_pr"] == pytest.approx(pr, abs=1e-12)


def test_vus_ranges_touching_both_ends():
    y = np.array([1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 1, 1])
    s = np.arange(12, dtype=float)[::-1] % 5
    roc, pr = _vus_literal(y, s, 3)
    assert M.vus_roc(y, s, 3) == pytest.approx(roc, abs=1e-12)
    assert M.vus_pr(y, s, 3) == pytest.approx(pr, abs=1e-12)


@pytest.mark.parametrize("L", [0, 1, 5, 40])
def test_vus_perfect_scores_give_one(L):
    y = np.zeros(300, dtype=int)
    y[50:60] = 1
    y[200:203] = 1
    assert M.vus_roc(y, y.astype(float), L) == pytest.approx(1.0)
    assert M.vus_pr(y, y.astype(float), L) == pytest.approx(1.0)


def test_vus_constant_scores_hand_worked():
    y = np.zeros(10, dtype=int)
    y[3:5] = 1  # P = 2, n = 10
    s = np.full(10, 0.3)  # every threshold flags everything: one curve point (FPR, TPR = 1)
    # w = 0: no buffer: FPR = 1 -> AUC 1/2, AP = precision = 2/10
    assert M.vus_roc(y, s, 0) == pytest.approx(0.5)
    assert M.vus_pr(y, s, 0) == pytest.approx(0.2)
    # L = 1: w = 0, 1, 2. w = 1 has half-width 0, the same as w = 0. w = 2: margin sqrt(1 - 1/2) at
    # indices 2 and 5: TP = 2 + 2m, P' = 2 + m, FPR = (10 - TP) / (10 - P'), AUC = 1 - FPR/2, AP = TP/10
    m = math.sqrt(0.5)
    tp, p_new = 2 + 2 * m, 2 + m
    fpr = (10 - tp) / (10 - p_new)
    assert M.vus_roc(y, s, 1) == pytest.approx((0.5 + 0.5 + (1 - fpr / 2)) / 3)
    assert M.vus_pr(y, s, 1) == pytest.approx((0.2 + 0.2 + tp / 10) / 3)


def test_vus_invariant_to_monotone_transform_and_rewards_lag_tolerance():
    rng = np.random.default_rng(11)
    n = 2000
    y = np.zeros(n, dtype=int)
    for a in (300, 900, 1500):
        y[a:a + 20] = 1
    s = rng.normal(size=n) * 0.3
    lagged = np.roll(y, 8).astype(float) + s  # a detector that fires 8 steps late
    v = M.vus(y, lagged, 10)
    assert M.vus(y, np.exp(lagged), 10) == pytest.approx(v)
    assert v["vus_pr"] > M.auprc(y, lagged)  # the buffer credits the late part
    assert M.vus_pr(y, lagged, 10) > M.vus_pr(y, lagged, 0)


def test_default_sliding_window_is_median_anomaly_length():
    y = np.zeros(100, dtype=int)
    y[5:8] = 1  # 3
    y[20:30] = 1  # 10
    y[50:54] = 1  # 4
    assert M.default_sliding_window(y) == 4
    s = np.linspace(0, 1, 100)
    assert M.vus_pr(y, s) == M.vus_pr(y, s, 4)
    assert M.default_sliding_window(np.array([0, 1, 0])) == 1


# ---------------------------------------------------------------------------------------------- evaluate
def test_evaluate_keys_and_values():
    rng = np.random.default_rng(5)
    y, s = _random_case(rng, 200, 300)
    out = M.evaluate(y, s, sliding_window=3)
    assert set(out) == {"auroc", "auprc", "vus_roc", "vus_pr", "f1_best", "f1_pa_best"}
    assert all(isinstance(v, float) for v in out.values())
    assert out["auroc"] == pytest.approx(roc_auc_score(y, s))
    assert out["vus_pr"] == pytest.approx(M.vus_pr(y, s, 3))
    assert out["f1_pa_best"] >= out["f1_best"]
    thr = float(np.quantile(s, 0.9))
    out = M.evaluate(y, s, threshold=thr, sliding_window=3)
    pred = (s > thr).astype(int)
    assert out["precision"] == pytest.approx(precision_score(y, pred))
    assert out["recall"] == pytest.approx(recall_score(y, pred))
    assert out["range_f1"] == pytest.approx(M.range_prf(y, pred)["f1"])
    assert {"f1", "range_precision", "range_recall"} <= set(out)
    tab = M.evaluate(y, s, threshold=thr, series=False)
    assert math.isnan(tab["vus_pr"]) and math.isnan(tab["f1_pa_best"]) and math.isnan(tab["range_f1"])
    assert tab["auroc"] == out["auroc"] and tab["f1"] == out["f1"]
    with pytest.raises(ValueError, match="series"):
        M.evaluate(y, s, series="no")


# ---------------------------------------------------------------------------------------------- validation
@pytest.mark.parametrize("fn", [M.auroc, M.auprc, M.vus_roc, M.vus_pr, M.best_f1, M.point_adjusted_f1, M.evaluate])
def test_validation_errors(fn):
    y = np.array([0, 1, 0, 1])
    s = np.array([0.1, 0.9, 0.2, 0.8])
    with pytest.raises(ValueError, match="same length"):
        fn(y, s[:3])
    with pytest.raises(ValueError, match="empty"):
        fn(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="scores hold 1 NaN value.*index 1"):
        fn(y, np.array([0.1, np.nan, 0.2, 0.8]))
    with pytest.raises(ValueError, match="scores hold 2 -inf value.*index 0"):
        fn(y, np.array([-np.inf, 0.9, -np.inf, 0.8]))
    with pytest.raises(ValueError, match="only 0 and 1"):
        fn(np.array([0, 2, 0, 1]), s)
    with pytest.raises(ValueError, match="1-D"):
        fn(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(ValueError, match="all 0"):
        fn(np.zeros(4, dtype=int), s)


@pytest.mark.parametrize("fn", [M.auroc, M.auprc, M.vus_roc, M.vus_pr, M.evaluate])
def test_both_classes_needed(fn):
    with pytest.raises(ValueError, match="all 1"):
        fn(np.ones(4, dtype=int), np.array([0.1, 0.9, 0.2, 0.8]))


def test_bad_window_and_threshold():
    y = np.array([0, 1, 0, 1])
    s = np.array([0.1, 0.9, 0.2, 0.8])
    with pytest.raises(ValueError, match="sliding_window"):
        M.vus_roc(y, s, -1)
    with pytest.raises(ValueError, match="sliding_window"):
        M.vus_pr(y, s, 2.5)
    with pytest.raises(ValueError, match="n_thresholds"):
        M.vus(y, s, 1, n_thresholds=0)
    with pytest.raises(ValueError, match="threshold"):
        M.evaluate(y, s, threshold=float("nan"))


# ---------------------------------------------------------------------------------------------- +inf scores
def _with_infs(rng, n_inf):
    """A random case with ``n_inf`` scores set to +inf (some inside anomaly ranges, some outside, some
    adjacent so they tie), and the same case with +inf replaced by a finite value above every score."""
    y, s = _random_case(rng, 150, 300, rounded=True)  # rounded: ties among the finite scores too
    idx = rng.choice(s.size, size=n_inf, replace=False)
    idx = np.concatenate((idx, np.flatnonzero(y)[:2]))  # at least two +inf inside the ranges
    s_inf, s_big = s.copy(), s.copy()
    s_inf[idx] = np.inf
    s_big[idx] = 2.0 * np.abs(s).max() + 1.0
    return y, s_inf, s_big


@pytest.mark.parametrize("seed", range(6))
def test_plus_inf_ranks_above_every_finite_score(seed):
    """+inf scores are the highest, tied with each other: every ranking metric equals its value with
    +inf replaced by a finite score above the rest (the old code rejected +inf; inf - inf in the
    precision-recall steps would have split tied +inf scores)."""
    rng = np.random.default_rng(seed)
    y, s_inf, s_big = _with_infs(rng, int(rng.integers(1, 20)))
    for fn in (M.auroc, M.auprc, lambda y, s: M.vus_roc(y, s, 3), lambda y, s: M.vus_pr(y, s, 3)):
        got, want = fn(y, s_inf), fn(y, s_big)
        assert math.isfinite(got) and got == pytest.approx(want, abs=1e-12), fn.__name__
    for fn in (M.best_f1, M.point_adjusted_f1):
        got, want = fn(y, s_inf), fn(y, s_big)
        for key in ("f1", "precision", "recall"):
            assert got[key] == pytest.approx(want[key], abs=1e-12), (fn.__name__, key)
        assert math.isfinite(got["threshold"])
    got, want = M.evaluate(y, s_inf, threshold=0.5, sliding_window=3), M.evaluate(y, s_big, threshold=0.5,
                                                                                 sliding_window=3)
    assert got == pytest.approx(want, abs=1e-12)
    assert roc_auc_score(y, s_big) == pytest.approx(M.auroc(y, s_inf))


def test_tied_plus_inf_scores_are_one_threshold_step():
    """Two anomalies and one normal point at +inf form one step of the PR curve (precision 2/3 there);
    the old ``np.diff`` run detection gave inf - inf = NaN != 0 and split them into three steps."""
    y = np.array([1, 0, 1, 0, 0, 1])
    s = np.array([np.inf, np.inf, np.inf, 0.1, 0.2, 0.3])
    # steps: +inf -> tp 2, fp 1 (P 2/3, R 2/3); 0.3 -> tp 3 fp 1 (P 3/4, R 1); then only fp
    assert M.auprc(y, s) == pytest.approx(2 / 3 * 2 / 3 + 1 / 3 * 3 / 4)
    assert M.auprc(y, s) == pytest.approx(average_precision_score(y, np.where(np.isinf(s), 9.0, s)))
    r = M.best_f1(y, s)
    assert r["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1))  # cut at 0.3: tp 3, fp 1, fn 0
    assert r["threshold"] == pytest.approx(0.25)


def test_best_f1_threshold_below_plus_inf_is_finite_and_reproduces_f1():
    """The best cut separates the +inf scores from the rest: no midpoint exists, the threshold is the
    highest unflagged score, and ``score > threshold`` gives the F1 reported."""
    y = np.array([1, 1, 0, 0, 0, 0])
    s = np.array([np.inf, np.inf, 3.0, 2.0, 1.0, 0.0])
    r = M.best_f1(y, s)
    assert r == {"f1": 1.0, "precision": 1.0, "recall": 1.0, "threshold": 3.0}
    all_inf = M.best_f1(y, np.full(6, np.inf))
    assert math.isfinite(all_inf["threshold"]) and np.all(np.full(6, np.inf) > all_inf["threshold"])
    assert all_inf["recall"] == 1.0
