"""The Triton AnoGAN kernels (kernels/anogan.py) in the interpreter: the spec's checks
(tests/op_specs/anogan_residual.py, masked_adam.py: the eager reference and torch.optim.Adam row by row, strides,
layouts, NaN/inf, gradients, opcheck) on the triton backend with CPU tensors, at the interpreter's sizes."""
from __future__ import annotations

import pytest

from op_specs import anogan_residual as residual_spec
from op_specs import masked_adam as adam_spec
from op_specs.targets import DTYPES, INTERPRETER, SMALL, run_opcheck, upto

pytestmark = pytest.mark.triton
T = INTERPRETER
NUMPY_NAN = "ignore:invalid value encountered:RuntimeWarning"  # the interpreter's numpy: inf − inf, on purpose


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lead, p, f", upto(residual_spec.SHAPES, SMALL))
@pytest.mark.parametrize("lam", residual_spec.LAMBDAS)
def test_residual_matches_reference(dtype, lead, p, f, lam):
    residual_spec.check_matches_reference(T, dtype, lead, p, f, lam)


def test_residual_values_by_hand():
    residual_spec.check_values_by_hand(T)


def test_residual_float64_weights_are_not_rounded_to_float32():
    residual_spec.check_float64_weights_are_not_rounded(T)


def test_residual_column_slices():
    residual_spec.check_column_slices(T)


def test_residual_any_input_layout_equals_the_reference():
    residual_spec.check_any_layout(T)


@pytest.mark.filterwarnings(NUMPY_NAN)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("width", [6, 40, 70])
def test_residual_nan_and_inf_propagate(dtype, width):
    residual_spec.check_nan_and_inf_propagate(T, dtype, width)


def test_residual_ties_give_zero_gradient():
    residual_spec.check_ties_give_zero_gradient(T)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("lam", residual_spec.LAMBDAS)
def test_residual_gradients_are_autograd_of_the_eager_loss(dtype, lam):
    residual_spec.check_gradients_are_autograd_of_the_loss(T, dtype, lam)


def test_residual_loss_backward_matches_reference_autograd():
    residual_spec.check_loss_backward_matches_reference(T)


@pytest.mark.parametrize("lead, p, f", upto(residual_spec.GRADCHECK, SMALL))
def test_residual_gradcheck_float64(lead, p, f):
    residual_spec.check_gradcheck(T, lead, p, f)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("beta1", adam_spec.BETA1)
def test_masked_adam_matches_torch_adam_row_by_row(dtype, beta1):
    adam_spec.check_matches_torch_adam_row_by_row(T, dtype, beta1)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", upto(adam_spec.SHAPES, SMALL))
@pytest.mark.parametrize("beta1", adam_spec.BETA1)
def test_masked_adam_matches_reference(dtype, shape, beta1):
    adam_spec.check_matches_reference(T, dtype, shape, beta1)


def test_masked_adam_slices_and_inactive_rows():
    adam_spec.check_column_slices(T)


def test_masked_adam_takes_disjoint_column_slices_of_one_buffer():
    adam_spec.check_disjoint_column_slices_of_one_buffer(T)


def test_masked_adam_leaves_inactive_rows_untouched():
    adam_spec.check_inactive_rows_untouched(T)


@pytest.mark.filterwarnings(NUMPY_NAN)
@pytest.mark.parametrize("width", [6, 40])
def test_masked_adam_nan_propagates(width):
    adam_spec.check_nan_propagates(T, width)


def test_masked_adam_zero_lr_only_moves_the_state():
    adam_spec.check_zero_lr_only_moves_the_state(T)


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")  # eps = 0: 0/0 where
@pytest.mark.parametrize("name", residual_spec.OPCHECK + adam_spec.OPCHECK)              # lanes are masked out
def test_opcheck_triton_ops(name):
    samples = residual_spec.opcheck_samples if name in residual_spec.OPCHECK else adam_spec.opcheck_samples
    run_opcheck(T, samples, [name])
