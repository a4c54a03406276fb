"""Every Triton kernel compiles for the GPU (frontend to cubin for sm_90; no GPU needed), for float32 and float64
data and int32 and int64 sizes, and its float scalars are float64 — what the interpreter (tests/triton_kernels)
cannot catch: it runs float64 through float32-only intrinsics (sqrt_rn, div_rn) without complaint, and ignores
the argument types that a compiled kernel specialises on (all three seen on an H200)."""
from __future__ import annotations

import importlib.util
import os

import pytest

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed"),
]
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")
needs_compiler = pytest.mark.skipif(INTERPRETED, reason="kernels are interpreted in this process; "
                                                        "tests/triton_kernels covers them")
DATA = [("*fp32", "i32"), ("*fp64", "i64")]  # (pointer type, integer type)
_ADAM_SCALARS = ("lr", "log2_beta1", "log2_beta2", "lerp_coef", "beta2", "one_minus_beta2", "eps")


def _compile(fn, signature: dict, constexprs: dict, options: dict | None = None) -> str:
    """The kernel's PTX, compiled to a cubin for sm_90 with the launch ``options`` the library passes."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    src = ASTSource(fn=fn, signature=signature,
                    constexprs={(fn.arg_names.index(k),): v for k, v in constexprs.items() if k in fn.arg_names})
    compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32), options=options)
    assert len(compiled.asm["cubin"]) > 0
    return compiled.asm["ptx"]


def _no_contractible_float_ops(ptx: str) -> None:
    """Every float32 multiply and add is rounded on its own (``.rn``): ptxas cannot fuse them into FMAs, which it
    would do differently in the stream kernel and in the kernels that draw the stream inside (kernels/philox.py)."""
    import re

    loose = re.findall(r"\b(?:mul|add|sub)\.f32\b", ptx)
    assert not loose, f"{len(loose)} contractible float32 operations, e.g. {loose[0]}"


def _signature(fn, constexprs: dict, ptr: str, ints: str, special: dict | None = None) -> dict:
    """constexpr, a pointer type for *_ptr, a type from ``special``, else the integer type."""
    special = special or {}
    return {name: ("constexpr" if name in constexprs else special[name] if name in special else
                   ptr if name.endswith("_ptr") else ints) for name in fn.arg_names}


def _ints_are_not_specialised(fn, signature: dict, ints: str) -> None:
    # On a GPU an integer argument equal to 1 would become a compile-time constant unless not specialised.
    assert all(p.do_not_specialize for p in fn.params if signature[p.name] == ints)


@needs_compiler
@pytest.mark.parametrize("out,ints", DATA)
def test_philox_kernel_compiles_for_sm90(out, ints):
    from genad_fast.kernels import philox as kernel

    fn = kernel._philox_normal_kernel
    signature = {"out_ptr": out, "n": ints, "q": ints, "seed": ints, "offset": ints, "BLOCK": "constexpr"}
    _no_contractible_float_ops(_compile(fn, signature, {"BLOCK": kernel.BLOCK}, kernel.NO_FP_FUSION))
    assert all(p.do_not_specialize for p in fn.params if p.name in ("n", "q", "seed", "offset"))


@needs_compiler
@pytest.mark.parametrize("kernel_name", ["_combine_philox_kernel", "_combine_noise_kernel", "_recon_kernel"])
@pytest.mark.parametrize("ptr,ints", DATA)
@pytest.mark.parametrize("flag", [False, True])
def test_diffusion_kernels_compile_for_sm90(kernel_name, ptr, ints, flag):
    from genad_fast.kernels import diffusion as kernel

    fn = getattr(kernel, kernel_name)
    constexprs = {"HAS_EPS": flag, "HAS_MASK": flag, "BLOCK": kernel.BLOCK, "BLOCK_R": kernel.BLOCK_R,
                  "BLOCK_C": kernel.BLOCK_C}
    signature = _signature(fn, constexprs, ptr, ints)
    if kernel_name == "_recon_kernel":
        _compile(fn, signature, constexprs)
    else:  # the kernels of the noise stream: launched without FMA contraction (kernels/philox.py)
        _no_contractible_float_ops(_compile(fn, signature, constexprs, kernel.NO_FP_FUSION))
    _ints_are_not_specialised(fn, signature, ints)


@needs_compiler
@pytest.mark.parametrize("kernel_name", ["_kde_kernel", "_knn_kernel"])
@pytest.mark.parametrize("ptr,ints", DATA)
@pytest.mark.parametrize("exclude_self", [False, True])
def test_distance_kernels_compile_for_sm90(kernel_name, ptr, ints, exclude_self):
    from genad_fast.kernels import distance as kernel

    fn = getattr(kernel, kernel_name)
    constexprs = {"EXCLUDE_SELF": exclude_self, "K_PAD": 16, "BLOCK_N": kernel.BLOCK_N, "BLOCK_M": kernel.BLOCK_M}
    _compile(fn, _signature(fn, constexprs, ptr, ints, {"neg_inv_2h2": "fp64", "log_norm": "fp64"}), constexprs)


def test_kde_scalars_are_float64():
    # Rounded to float32 on the GPU, 1/(2h²) and the normalisation would put a relative error of ~6e-8 on every
    # exponent: ~1e-5 in a float64 log-density of D = 64 (seen on an H200). The interpreter does not round them.
    from genad_fast.kernels import distance as kernel

    types = {p.name: p.annotation_type for p in kernel._kde_kernel.params}
    assert types["neg_inv_2h2"] == "fp64" and types["log_norm"] == "fp64"


@needs_compiler
@pytest.mark.parametrize("kernel_name", ["_coupling_kernel", "_coupling_backward_kernel"])
@pytest.mark.parametrize("ptr,ints", DATA)
@pytest.mark.parametrize("row_length", [64, 5])  # tiles 16 x 64 and 128 x 8 (kernels/tiles.py)
@pytest.mark.parametrize("clamp_ptr", [False, True])  # float64 data takes its clamp through a pointer
def test_coupling_kernels_compile_for_sm90(kernel_name, ptr, ints, row_length, clamp_ptr):
    from genad_fast.kernels import coupling as kernel
    from genad_fast.kernels.tiles import tile_shape

    fn = getattr(kernel, kernel_name)
    block_n, block_d = tile_shape(row_length)
    constexprs = {"INVERSE": kernel_name == "_coupling_kernel", "HAS_CLAMP": True, "CLAMP_PTR": clamp_ptr,
                  "BLOCK_N": block_n, "BLOCK_D": block_d}
    _compile(fn, _signature(fn, constexprs, ptr, ints, {"clamp": ptr if clamp_ptr else "fp32"}), constexprs)


@needs_compiler
@pytest.mark.parametrize("kernel_name", ["_residual_kernel", "_masked_adam_kernel"])
@pytest.mark.parametrize("ptr,ints", DATA)
@pytest.mark.parametrize("row_length", [32, 200])  # tiles 32 x 32 and 16 x 64 (kernels/tiles.py)
def test_anogan_kernels_compile_for_sm90(kernel_name, ptr, ints, row_length):
    from genad_fast.kernels import anogan as kernel
    from genad_fast.kernels.tiles import tile_shape

    fn = getattr(kernel, kernel_name)
    block_b, block_k = tile_shape(row_length)
    constexprs = {"LERP_SMALL": True, "BLOCK_B": block_b, "BLOCK_K": block_k}
    special = {"step_ptr": "*i64", "active_ptr": "*u8"} | {name: "fp64" for name in _ADAM_SCALARS + ("w_p", "w_f")}
    _compile(fn, _signature(fn, constexprs, ptr, ints, special), constexprs)


def test_anogan_scalars_are_float64():
    # Quoted annotations under `from __future__ import annotations` reach Triton as '"tl.float64"', which it
    # ignores: λ, lr, β... went in as float32 and float64 results were off by ~1e-8 relative (seen on an H200).
    from genad_fast.kernels import anogan as kernel

    residual = {p.name: p.annotation_type for p in kernel._residual_kernel.params}
    adam = {p.name: p.annotation_type for p in kernel._masked_adam_kernel.params}
    assert residual["w_p"] == residual["w_f"] == "fp64"
    assert all(adam[name] == "fp64" for name in _ADAM_SCALARS)
