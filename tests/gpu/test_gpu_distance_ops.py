"""KDE log-density and k-nearest distances (kde_logpdf, knn_distance) on the device: the spec's checks
(tests/op_specs/distance.py) at the GPU runner's sizes — against a float64 truth computed by the eager reference
on the same device, within the error budget of the eager float32 result (at most 2x its error, plus the spec's
tolerances); exclude_self, column slices, layouts, batch shapes, non-finite values, huge bandwidths, opcheck.
Shapes up to 3000 x 4000 x 25 (many tiles of 64 queries x 64 references); errors of the large ones are recorded."""
from __future__ import annotations

import pytest

import gpu_support as gs
from op_specs import distance as spec
from op_specs.targets import LARGE, run_opcheck, upto


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("n, m, d", upto(spec.SHAPES, LARGE))
def test_kde_matches_float64_truth(pair, dtype, n, m, d):
    err, eager_err = spec.check_kde_matches_truth(pair, dtype, n, m, d)
    if n >= 1000:
        gs.record(f"kde[{pair}] {str(dtype)[6:]} {n}x{m}x{d}", max_abs_err=err, eager_max_abs_err=eager_err)


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("n, m, d", upto(spec.SHAPES, LARGE))
def test_knn_matches_float64_truth(pair, dtype, n, m, d):
    errors = spec.check_knn_matches_truth(pair, dtype, n, m, d)
    for k, (err, eager_err) in errors.items():
        if n >= 1000:
            gs.record(f"knn[{pair}] {str(dtype)[6:]} {n}x{m}x{d} k={k}", max_abs_err=err, eager_max_abs_err=eager_err)


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("n, d", upto(spec.EXCLUDE_SELF, LARGE))
def test_exclude_self_leaves_each_point_out(pair, dtype, n, d):
    spec.check_exclude_self(pair, dtype, n, d)


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_exclude_self_keeps_duplicates_of_a_point(pair, dtype):
    spec.check_exclude_self_keeps_duplicates(pair, dtype)


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_knn_ties_over_many_cuts(pair, dtype):
    spec.check_knn_ties_over_many_cuts(pair, dtype)


def test_values_by_hand(pair):
    spec.check_values_by_hand(pair)


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_column_slices_are_read_in_place(pair, dtype):
    spec.check_column_slices(pair, dtype)


def test_leading_batch_shape(pair):
    spec.check_leading_batch_shape(pair)


def test_far_from_everything(pair):
    spec.check_far_from_everything(pair)


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_far_queries_and_a_large_offset(pair, dtype):
    spec.check_far_queries_and_large_offsets(pair, dtype)


def test_large_offset_in_float32(pair):
    spec.check_large_offset_in_float32(pair)


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_nonfinite_values_follow_the_reference(pair, dtype):
    spec.check_nonfinite_values(pair, dtype)


@pytest.mark.parametrize("dtype", gs.DTYPES)
def test_nan_reference(pair, dtype):
    spec.check_nan_reference(pair, dtype)


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("h", [1e23, 1e160, 1e300])
def test_huge_bandwidths_give_the_normaliser(pair, dtype, h):
    spec.check_huge_bandwidth(pair, dtype, h)


def test_any_input_layout_equals_eager(pair):
    spec.check_any_layout(pair)


@pytest.mark.parametrize("name", spec.OPCHECK)
def test_opcheck(pair, name):
    run_opcheck(pair, spec.opcheck_samples, [name])
