"""The online log-sum-exp with its exponentials in float (genad/distance.h, OnlineLse<double, float>: what the CUDA
KDE kernel folds float32 terms with, instead of a software double exp per pair), run on the host against the
all-double one: within 1e-6 nats over sequences of up to 20,000 terms spread over 0.01 to 400 nats, pushed into
up to 16 parts and merged as the kernel's threads merge, and the same NaN / −inf / empty results."""
from __future__ import annotations

from host_cpp import run_host_check


def test_float_exponentials_keep_the_log_sum_within_1e_6(tmp_path):
    words = run_host_check("online_lse_check.cpp", tmp_path).split()
    assert words[0] == "ok" and int(words[1]) == 100, words
    assert float(words[2]) <= 1e-6, words
