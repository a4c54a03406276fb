"""The Triton KDE log-density and k-nearest-distance kernels (kernels/distance.py) in the interpreter: the spec's
checks (tests/op_specs/distance.py) on the triton backend with CPU tensors — odd shapes (tiles of 32 queries x 64
refs cut anywhere), exclude_self, strides and layouts, float32/float64, NaN/inf, huge bandwidths, opcheck. Small
shapes: the interpreter runs every tile in numpy."""
from __future__ import annotations

import pytest

from op_specs import distance as spec
from op_specs.targets import DTYPES, INTERPRETER, SMALL, run_opcheck, upto

pytestmark = pytest.mark.triton
T = INTERPRETER
NUMPY_NAN = "ignore:(invalid value|overflow) encountered:RuntimeWarning"  # numpy: inf − inf, 1e154², on purpose


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, m, d", upto(spec.SHAPES, SMALL))
def test_kde_matches_reference(dtype, n, m, d):
    spec.check_kde_matches_truth(T, dtype, n, m, d)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, m, d", upto(spec.SHAPES, SMALL))
def test_knn_matches_reference(dtype, n, m, d):
    spec.check_knn_matches_truth(T, dtype, n, m, d)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n, d", upto(spec.EXCLUDE_SELF, SMALL))
def test_exclude_self(dtype, n, d):
    spec.check_exclude_self(T, dtype, n, d)


@pytest.mark.parametrize("dtype", DTYPES)
def test_exclude_self_keeps_duplicates_of_a_point(dtype):
    spec.check_exclude_self_keeps_duplicates(T, dtype)


def test_values_by_hand():
    spec.check_values_by_hand(T)


@pytest.mark.parametrize("dtype", DTYPES)
def test_column_slices_are_read_in_place(dtype):
    spec.check_column_slices(T, dtype)


def test_leading_batch_shape():
    spec.check_leading_batch_shape(T)


def test_far_from_everything():
    spec.check_far_from_everything(T)


@pytest.mark.parametrize("dtype", DTYPES)
def test_far_queries_and_large_offsets(dtype):
    spec.check_far_queries_and_large_offsets(T, dtype)


def test_large_offset_in_float32():
    spec.check_large_offset_in_float32(T)


@pytest.mark.filterwarnings(NUMPY_NAN)
@pytest.mark.parametrize("dtype", DTYPES)
def test_nonfinite_values_follow_the_reference(dtype):
    spec.check_nonfinite_values(T, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_reference_ranks_last(dtype):
    spec.check_nan_reference(T, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("h", [1e23, 1e160, 1e300])
def test_huge_bandwidths_give_the_normaliser(dtype, h):
    spec.check_huge_bandwidth(T, dtype, h)


def test_any_input_layout_equals_the_reference():
    spec.check_any_layout(T)


@pytest.mark.parametrize("name", spec.OPCHECK)
def test_opcheck(name):
    run_opcheck(T, spec.opcheck_samples, [name])
