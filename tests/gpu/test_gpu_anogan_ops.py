"""AnoGAN's fused ops (anogan_residual, masked_adam_) on the device against the eager reference on the same device:
the spec's checks (tests/op_specs/anogan_residual.py, masked_adam.py) at the GPU runner's sizes — values over odd
and large shapes, column slices and layouts, NaN/inf, ties, the loss's autograd (gradcheck in float64), Adam row by
row against torch.optim.Adam, inactive rows untouched, opcheck — and the refusal of overlapping in-place state."""
from __future__ import annotations

import pytest
import torch

import gpu_support as gs
from genad_fast import ops
from op_specs import anogan_residual as residual_spec
from op_specs import masked_adam as adam_spec
from op_specs.targets import LARGE, run_opcheck, upto


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("lead, p, f", upto(residual_spec.SHAPES, LARGE))
@pytest.mark.parametrize("lam", residual_spec.LAMBDAS)
def test_residual_matches_eager(pair, dtype, lead, p, f, lam):
    residual_spec.check_matches_reference(pair, dtype, lead, p, f, lam)


def test_residual_values_by_hand(pair):
    residual_spec.check_values_by_hand(pair)


def test_residual_float64_weights_are_not_rounded_to_float32(pair):
    residual_spec.check_float64_weights_are_not_rounded(pair)


def test_residual_column_slices(pair):
    residual_spec.check_column_slices(pair)


def test_residual_any_input_layout_equals_eager(pair):
    residual_spec.check_any_layout(pair)


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("width", [6, 40, 70])
def test_residual_nan_and_inf_propagate(pair, dtype, width):
    residual_spec.check_nan_and_inf_propagate(pair, dtype, width)


def test_residual_ties_give_zero_gradient(pair):
    residual_spec.check_ties_give_zero_gradient(pair)


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("lam", residual_spec.LAMBDAS)
def test_residual_gradients_are_autograd_of_the_eager_loss(pair, dtype, lam):
    residual_spec.check_gradients_are_autograd_of_the_loss(pair, dtype, lam)


def test_residual_loss_backward_matches_eager_autograd(pair):
    residual_spec.check_loss_backward_matches_reference(pair)


@pytest.mark.parametrize("lead, p, f", upto(residual_spec.GRADCHECK, LARGE))
def test_residual_loss_gradcheck_float64(pair, lead, p, f):
    residual_spec.check_gradcheck(pair, lead, p, f)


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("beta1", adam_spec.BETA1)
def test_masked_adam_matches_torch_adam_row_by_row(pair, dtype, beta1):
    adam_spec.check_matches_torch_adam_row_by_row(pair, dtype, beta1)


@pytest.mark.parametrize("dtype", gs.DTYPES)
@pytest.mark.parametrize("shape", upto(adam_spec.SHAPES, LARGE))
@pytest.mark.parametrize("beta1", adam_spec.BETA1)
def test_masked_adam_matches_eager(pair, dtype, shape, beta1):
    adam_spec.check_matches_reference(pair, dtype, shape, beta1)


def test_masked_adam_column_slices(pair):
    adam_spec.check_column_slices(pair)


def test_masked_adam_takes_disjoint_column_slices_of_one_buffer(pair):
    adam_spec.check_disjoint_column_slices_of_one_buffer(pair)


def test_masked_adam_leaves_inactive_rows_untouched(pair):
    adam_spec.check_inactive_rows_untouched(pair)


@pytest.mark.parametrize("width", [6, 40])
def test_masked_adam_nan_propagates(pair, width):
    adam_spec.check_nan_propagates(pair, width)


def test_masked_adam_zero_lr_only_moves_the_state(pair):
    adam_spec.check_zero_lr_only_moves_the_state(pair)


@pytest.mark.parametrize("name", residual_spec.OPCHECK + adam_spec.OPCHECK)
def test_opcheck(pair, name):
    run_opcheck(pair, residual_spec.opcheck_samples if name in residual_spec.OPCHECK else adam_spec.opcheck_samples,
                [name])


def test_masked_adam_refuses_overlapping_state(pair):
    # Issue #12: one check before the backend is chosen, so every device refuses with the same message. (Bad
    # step counts are a device-side assertion on a GPU, which would end the CUDA context: not tested here.)
    z, m = torch.zeros(4, 5, device=pair.dev), torch.zeros(4, 5, device=pair.dev)
    step, active = torch.zeros(4, dtype=torch.int64, device=pair.dev), torch.ones(4, dtype=torch.bool, device=pair.dev)
    with pytest.raises(ValueError, match="z is written in place but several of its elements share"):
        ops.masked_adam_(z[:1].expand(4, 5), z, m, m.clone(), step, active, backend=pair.backend)
    with pytest.raises(ValueError, match="m is written in place and overlaps v"):
        ops.masked_adam_(z, z.clone(), m, m, step, active, backend=pair.backend)

