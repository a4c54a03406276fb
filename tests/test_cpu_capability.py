"""The CPU kernels' runtime dispatch (csrc/include/genad/cpu_dispatch.h): one build holds a variant per capability
(DEFAULT, AVX2, AVX512 on x86-64), and the process runs the one ATen's capability names (ATEN_CPU_CAPABILITY, or
cpuinfo), capped by what the CPU supports.

For each compiled capability this CPU runs, a fresh interpreter started with ``ATEN_CPU_CAPABILITY=<cap>`` must
report that capability in use and give the eager reference's results for every op (this file's ``__main__``
does the checks in the child). The full op test files under each override are the ``slow`` test below.
"""
from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import genad_fast

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
ORDER = ("DEFAULT", "AVX2", "AVX512")
INFO = genad_fast.build_info()
LOADED = bool(INFO.get("loaded"))
needs_ext = pytest.mark.skipif(not LOADED, reason="genad_fast._C is not built")


def runnable() -> list[str]:
    """The compiled capabilities this CPU runs: every one up to the best it supports."""
    if not LOADED:
        return []
    best = ORDER.index(INFO["cpu_capability_supported"])
    return [c for c in INFO["cpu_capabilities"] if ORDER.index(c) <= best]


def run_child(capability: str, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability.lower(), "PYTHONPATH": str(TESTS)}
    return subprocess.run([sys.executable, str(Path(__file__)), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


@needs_ext
def test_build_info_names_the_variants_and_the_one_in_use():
    compiled = INFO["cpu_capabilities"]
    assert compiled[0] == "DEFAULT" and compiled == [c for c in ORDER if c in compiled]
    if platform.machine() in ("x86_64", "AMD64"):
        assert compiled == list(ORDER)  # one build, every x86-64 variant
    assert INFO["cpu_capability"] in compiled
    assert INFO["cpu_capability"] == genad_fast._ext._C.build_info()["cpu_capability"]
    in_use = ORDER.index(INFO["cpu_capability"])
    assert in_use <= ORDER.index(INFO["cpu_capability_supported"])
    assert in_use <= ORDER.index(INFO["cpu_capability_requested"])
    # `genad-fast info` prints the build facts, the capability among them
    out = subprocess.run([sys.executable, "-m", "genad_fast.cli", "info"], capture_output=True, text=True,
                         cwd=REPO, timeout=300)
    assert f"cpu_capability={INFO['cpu_capability']}" in out.stdout, out.stdout + out.stderr


@needs_ext
@pytest.mark.parametrize("requested, supported, compiled, expected", [
    ("AVX512", "AVX512", ORDER, "AVX512"),
    ("AVX2", "AVX512", ORDER, "AVX2"),          # ATEN_CPU_CAPABILITY=avx2 on an AVX-512 machine
    ("DEFAULT", "AVX512", ORDER, "DEFAULT"),
    ("AVX512", "AVX2", ORDER, "AVX2"),          # an override beyond the CPU: the best the CPU runs, not a crash
    ("AVX512", "DEFAULT", ORDER, "DEFAULT"),
    ("AVX512", "AVX512", ("DEFAULT", "AVX2"), "AVX2"),   # a variant the compiler could not build: the next one down
    ("AVX2", "AVX512", ("DEFAULT",), "DEFAULT"),
])
def test_the_choice_rule(requested, supported, compiled, expected):
    assert genad_fast._ext._C._choose_cpu_capability(requested, supported, list(compiled)) == expected


@needs_ext
def test_an_override_beyond_the_cpu_runs_the_best_it_supports():
    """Checked on this CPU where it lacks a compiled capability (on an AVX-512 machine there is none to ask for:
    the rule itself is test_the_choice_rule)."""
    beyond = [c for c in INFO["cpu_capabilities"] if ORDER.index(c) > ORDER.index(INFO["cpu_capability_supported"])]
    if not beyond:
        pytest.skip(f"this CPU supports {INFO['cpu_capability_supported']}, the best variant compiled")
    res = run_child(beyond[-1], "--report")
    assert res.returncode == 0, res.stderr
    assert res.stdout.split()[-1] == INFO["cpu_capability_supported"]
    assert "only supports" in res.stderr  # the warning says what ran instead


@needs_ext
@pytest.mark.parametrize("capability", runnable())
def test_each_capability_matches_the_eager_reference(capability):
    res = run_child(capability)
    assert res.returncode == 0, f"ATEN_CPU_CAPABILITY={capability.lower()}:\n{res.stdout}\n{res.stderr}"
    assert f"capability {capability}: every op matches eager" in res.stdout


@needs_ext
@pytest.mark.slow
@pytest.mark.parametrize("capability", runnable())
def test_op_test_files_pass_under_each_capability(capability, tmp_path):
    files = ["test_coupling.py", "test_philox.py", "test_diffusion_ops.py", "test_distance_ops.py",
             "test_anogan_ops.py", "test_linear_act.py", "test_conv1d_act.py", "test_gated_tanh.py",
             "test_bias_gelu.py", "test_permute_affine.py"]
    # A private inductor cache: torch.compile's code cache does not key on ATEN_CPU_CAPABILITY, and a kernel cached
    # by a process of another capability gave wrong sums here (torch 2.14; a fresh cache is right for every one).
    env = {**os.environ, "ATEN_CPU_CAPABILITY": capability.lower(), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path)}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider",
                          *[str(TESTS / f) for f in files]], env=env, capture_output=True, text=True, cwd=REPO,
                         timeout=3600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


@needs_ext
def test_the_vector_variants_draw_the_same_normals():
    """AVX2 and AVX512 compute the same Philox words (AVX2 through its own multiply chains and round-2 shortcut)
    and the same Box-Muller operations, so their normals are the same bits, at offsets whose blocks of counters
    cross a 2^32 boundary too."""
    vector = [c for c in runnable() if c != "DEFAULT"]
    if len(vector) < 2:
        pytest.skip(f"this CPU runs one vector variant ({vector})")
    digests = {}
    for capability in vector:
        res = run_child(capability, "--randn-digest")
        assert res.returncode == 0, res.stderr
        digests[capability] = res.stdout.split()[-1]
    assert len(set(digests.values())) == 1, digests


@needs_ext
@pytest.mark.parametrize("capability", runnable())
def test_knn_ranks_by_exact_distances(capability):
    """Every variant's kNN keeps the references within a bound on its filter's error of the k-th (the float
    expansion's; on AVX2 the int16 copies', csrc/cpu/knn_quantized.h) and ranks them by direct distances in
    double (knn_candidates.h), so its float32 distances are the float64 reference's, bit for bit after the cast,
    on data built to trip a filter: near-ties on a sphere, exact ties on an integer grid, duplicates that overflow
    the candidate lists, column scales 10^7 apart (a float32 expansion that ranks alone is off by ~0.5 there),
    odd and wide rows, a large k, references off the expansion path, exclude_self, a held set, and four threads
    sharing one held set whose packed form the first of them builds."""
    res = run_child(capability, "--knn-exact")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "knn exact: 12 cases" in res.stdout, res.stdout


def _knn_exact_checks() -> None:
    from genad_fast import ops
    from genad_fast.ops.distance import hold_refs
    from genad_fast.reference import distance as ref

    g = torch.Generator().manual_seed(3)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    wide = randn(4000, 12)
    wide[:, 0] *= 1e4
    wide[:, 1:] *= 1e-3
    centre = randn(60, 32)
    dirs = randn(60, 150, 32)
    sphere = (centre[:, None] + dirs / dirs.norm(dim=-1, keepdim=True)
              * (1 + 1e-6 * torch.rand(60, 150, 1, generator=g))).reshape(-1, 32)
    grid = torch.randint(0, 4, (3000, 6), generator=g).float()
    dup = randn(50, 8).repeat(100, 1)
    odd = randn(2000, 7)
    off_path = randn(2000, 6)
    off_path[5, 2], off_path[7, 1], off_path[9, 0] = float("inf"), float("nan"), 3e19
    cases = [("gaussian", randn(300, 32), randn(4000, 32), 10, False),
             ("exclude_self", odd, odd, 7, True),
             ("duplicates", randn(200, 8), dup, 15, False),
             ("duplicates, exclude_self", dup, dup, 5, True),
             ("column scales 1e4 and 1e-3", wide[:200] + 1e-4 * randn(200, 12), wide, 5, False),
             ("near-ties on a sphere", centre, sphere, 10, False),
             ("integer grid, exclude_self", grid, grid, 20, True),
             ("D = 1", randn(300, 1), randn(3000, 1), 4, False),
             ("D = 300", randn(60, 300), randn(800, 300), 4, False),
             ("k = 100", randn(60, 16), randn(4000, 16), 100, False),
             ("refs off the expansion path", randn(100, 6), off_path, 5, False),
             ("held refs", randn(150, 32), randn(3000, 32), 10, False)]
    for name, q, r, k, exclude_self in cases:
        hold = hold_refs(r) if name == "held refs" else None
        try:
            for _ in range(2 if hold is not None else 1):  # a held set: packed (and quantized) once, used twice
                got = ops.knn_distance(q, r, k, exclude_self, backend="cpu")
                want = ref.knn_distance(q.double(), r.double(), k, exclude_self).float()
                assert torch.equal(got, want), (name, (got - want).abs().nan_to_num().max())
        finally:
            if hold is not None:
                hold.release()
    # threads sharing one held set: its packed form (and, on AVX2, the int16 copy) is built by whichever call comes
    # first, once, while the others wait for it
    from concurrent.futures import ThreadPoolExecutor

    q, r = randn(400, 32), randn(6000, 32)
    want = ref.knn_distance(q.double(), r.double(), 10).float()
    with hold_refs(r):
        with ThreadPoolExecutor(4) as pool:
            outs = list(pool.map(lambda part: ops.knn_distance(q[part::4], r, 10, backend="cpu"), range(4)))
    for part, got in enumerate(outs):
        assert torch.equal(got, want[part::4]), ("threads sharing a held set", part)
    print(f"knn exact: {len(cases)} cases")


def _randn_digest() -> str:
    import hashlib

    from genad_fast import ops

    h = hashlib.sha256()
    for seed, offset, n in ((5, 2**32 - 1000, 300_000), (2**40 + 1, 2**35 + 7, 100_003), (0, 0, 65_536 * 4 + 13)):
        h.update(ops.randn((n,), seed, offset, backend="cpu").numpy().tobytes())
    return h.hexdigest()


def _unstripped_library() -> Path | None:
    """The newest extension in a build folder (the installed copy is stripped of the symbols the check reads)."""
    built = sorted(REPO.glob("build/*/_C*.so"), key=lambda p: p.stat().st_mtime)
    return built[-1] if built else None


@needs_ext
@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="the check reads x86-64 code")
def test_no_wide_instruction_outside_its_variant():
    import shutil

    lib = _unstripped_library()
    if lib is None or shutil.which("objdump") is None:
        pytest.skip("no build folder with the unstripped library, or no objdump")
    res = subprocess.run([sys.executable, str(REPO / "scripts" / "check_cpu_isa.py"), str(lib)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]


# ---- the child: every op on the variant in use against eager ----------------------------------------------------

def _close(name, got, want, rtol, atol):
    for i, (g, w) in enumerate(zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple)
                                   else (want,))):
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol, equal_nan=True, msg=lambda m: f"{name}[{i}]: {m}")


def child_checks() -> None:
    from genad_fast import ops
    from genad_fast.reference import bias_gelu as gelu_reference

    expected = os.environ["ATEN_CPU_CAPABILITY"].upper()
    info = genad_fast.build_info()
    assert info["cpu_capability"] == expected, (info, expected)
    g = torch.Generator().manual_seed(0)
    tols = {torch.float32: (2e-5, 2e-5), torch.float64: (1e-12, 1e-12)}

    def rand(*shape, dtype):
        return torch.randn(*shape, generator=g, dtype=dtype)

    def both(name, fn, rtol, atol):
        _close(name, fn("cpu"), fn("eager"), rtol, atol)

    for dtype in (torch.float32, torch.float64):
        rtol, atol = tols[dtype]
        # odd widths: whole registers of every width (8, 16 float lanes) and scalar tails
        for n, d in ((37, 1), (64, 13), (100, 40), (9, 70)):
            x, h = rand(n, d, dtype=dtype), rand(n, 2 * d, dtype=dtype)
            x[3, 0] = float("nan")
            for clamp in (0.0, 2.0):
                both("coupling_forward", lambda b: ops.coupling_forward(x, h, clamp, backend=b), rtol, atol)
                both("coupling_inverse", lambda b: ops.coupling_inverse(x, h, clamp, backend=b), rtol, atol)
            xg = x.clone().requires_grad_(True)
            hg = h.clone().requires_grad_(True)

            def grads(b):
                y, ld = ops.coupling_forward(xg, hg, 2.0, backend=b)
                return torch.autograd.grad((y.nan_to_num() * 0.5).sum() + ld.nan_to_num().sum(), (xg, hg))
            both("coupling_backward", grads, rtol, atol)

        for n, offset in ((1, 5), (7, 5), (1000, 5), (4099, 5), (1001, 2**32 - 100)):
            # 2^32 - 100: blocks of counters whose high word changes inside them (the AVX2 round-2 shortcut's
            # other path)
            both(f"randn({n}, offset={offset})", lambda b: ops.randn((n,), 1234, offset, dtype, backend=b),
                 1e-5 if dtype == torch.float32 else 1e-6, 1e-5)
        B, M = 5, 203
        x0, eps = rand(B, M, dtype=dtype), rand(B, M, dtype=dtype)
        a, bb, c = rand(B, dtype=dtype), rand(B, dtype=dtype), rand(B, dtype=dtype)
        both("add_noise", lambda b: ops.add_noise(x0, a, bb, 7, 3, backend=b), 1e-5, 1e-5)
        both("diffusion_step", lambda b: ops.diffusion_step(x0, eps, a, bb, c, 7, 3, backend=b), 1e-5, 1e-5)
        both("diffusion_step(noise)", lambda b: ops.diffusion_step(x0, eps, a, bb, c, 0, 0, eps, backend=b),
             rtol, atol)
        xs, xh = rand(3, 50, 9, dtype=dtype), rand(3, 50, 9, dtype=dtype)
        mask = (rand(3, 50, 9, dtype=dtype) > 0).to(dtype)
        both("recon_error", lambda b: ops.recon_error_accumulate_(torch.zeros(3, 50, dtype=dtype), xs, xh, mask,
                                                                  0.25, backend=b), rtol, atol)
        both("recon_error(strided)", lambda b: ops.recon_error_accumulate_(
            torch.zeros(3, 50, dtype=dtype), xs.transpose(1, 2).contiguous().transpose(1, 2), xh, None, 1.0,
            backend=b), rtol, atol)
        xa, ga, fa, fga = rand(11, 37, dtype=dtype), rand(11, 37, dtype=dtype), rand(11, 19, dtype=dtype), \
            rand(11, 19, dtype=dtype)
        both("anogan_residual", lambda b: ops.anogan_residual(xa, ga, fa, fga, 0.1, backend=b), rtol, atol)

        z0, grad = rand(13, 21, dtype=dtype), rand(13, 21, dtype=dtype)

        def adam(b):
            z, m, v = z0.clone(), torch.zeros(13, 21, dtype=dtype), torch.zeros(13, 21, dtype=dtype)
            step = torch.zeros(13, dtype=torch.int64)
            active = torch.arange(13) % 3 != 0
            for _ in range(3):
                ops.masked_adam_(z, grad, m, v, step, active, 1e-2, backend=b)
            return z, m, v, step
        both("masked_adam", adam, rtol, atol)

        q, r = rand(61, 7, dtype=dtype), rand(203, 7, dtype=dtype)
        ktol = (1e-4, 1e-4) if dtype == torch.float32 else (1e-10, 1e-10)
        both("kde_logpdf", lambda b: ops.kde_logpdf(q, r, 0.7, backend=b), *ktol)
        both("kde_logpdf(self)", lambda b: ops.kde_logpdf(r, r, 0.7, exclude_self=True, backend=b), *ktol)
        # huge bandwidths, every kernel term 1: with padding lanes (M not a multiple of any lane count) the
        # masked lanes once came out as c2·inf = 0·inf = NaN and their lane sums were dropped
        for m_refs, hh in ((9, 1e160 if dtype == torch.float64 else 1e30), (23, 1e30)):
            rq, rr = rand(4, 3, dtype=dtype), rand(m_refs, 3, dtype=dtype)
            want = torch.full((4,), -1.5 * (math.log(2.0 * math.pi) + 2.0 * math.log(hh)), dtype=dtype)
            _close(f"kde_logpdf(h={hh:g}, M={m_refs})", ops.kde_logpdf(rq, rr, hh, backend="cpu"), want, 1e-6, 0.0)
        both("knn_distance", lambda b: ops.knn_distance(q, r, 5, backend=b), *ktol)
        both("knn_distance(self)", lambda b: ops.knn_distance(r, r, 3, True, backend=b), *ktol)

        # conv1d_act on [N, L, C] windows transposed: output channels no multiple of the 4- or 8-channel register
        # block, lengths no multiple of a vector (both block shapes: L_c within one vector, and over two), odd
        # upsampling, an even kernel, a NaN; weights scaled by 1/sqrt(C_in·k) so an output is O(1)
        for n, c_in, c_out, l_in, k, length in ((3, 5, 13, 33, 5, 67), (17, 8, 9, 5, 4, 11), (2, 1, 70, 64, 3, 64)):
            xc = rand(n, l_in, c_in, dtype=dtype).transpose(1, 2)
            xc[0, 0, 1] = float("nan")
            wc, bc = rand(c_out, c_in, k, dtype=dtype) / math.sqrt(c_in * k), rand(c_out, dtype=dtype)
            for slope, pool in ((0.1, True), (None, False)):
                both(f"conv1d_act({n}, {c_in}, {c_out}, {l_in}, k={k}, length={length}, pool={pool})",
                     lambda b: ops.conv1d_act(xc, wc, bc, length=length, slope=slope, pool=pool, backend=b),
                     rtol, atol)

        # gated_tanh forward and backward: spans of 1, of 37 (a tail after 2 AVX-512 / 4 AVX2 float registers) and
        # 5·17 = 85; x transposed, a NaN, magnitudes to ~25 (saturated sigmoids); the backward through autograd
        for shape, d in (((6, 2), 1), ((9, 74), -1), ((3, 10, 17), 1), ((4, 6, 33), 0)):
            xg = (rand(*reversed(shape), dtype=dtype) * 6).permute(*reversed(range(len(shape))))
            xg[(0,) * len(shape)] = float("nan")
            gg = rand(*[s // 2 if i == d % len(shape) else s for i, s in enumerate(shape)], dtype=dtype)
            both(f"gated_tanh({list(shape)}, dim={d})", lambda b: ops.gated_tanh(xg, d, backend=b), rtol, atol)

            def gated_grad(b):
                leaf = xg.detach().clone().requires_grad_(True)
                ops.gated_tanh(leaf, d, backend=b).backward(gg)
                return leaf.grad
            # the eager composite's sigmoid backward, out·(1 - out), cancels at |x| ~ 25: ~1e-6 absolute in float32
            gtol = (rtol, 1e-5) if dtype == torch.float32 else (rtol, atol)
            both(f"gated_tanh_backward({list(shape)}, dim={d})", gated_grad, *gtol)

        # bias_gelu forward and backward (∂/∂z and ∂/∂bias): rows of 1, 17 (a tail of 1 after an AVX-512 register),
        # 37 (2 registers and 5) and 129 columns, M across one to several 64-row blocks of the bias gradient; z
        # transposed, magnitudes to ~16 (both tails), a NaN and a -inf (+inf differs by capability: test_bias_gelu)
        for m, n in ((3, 1), (70, 17), (130, 37), (9, 129)):
            zb = (rand(n, m, dtype=dtype) * 4).t()
            zb[0, 0] = float("nan")
            zb[-1, -1] = -float("inf")
            bb, gb = rand(n, dtype=dtype), rand(m, n, dtype=dtype)
            both(f"bias_gelu([{m}, {n}])", lambda b: ops.bias_gelu(zb, bb, backend=b), rtol, atol)

            def gelu_grads(b):
                leaves = zb.detach().clone().requires_grad_(True), bb.detach().clone().requires_grad_(True)
                ops.bias_gelu(*leaves, backend=b).backward(gb)
                return leaves[0].grad, leaves[1].grad
            both(f"bias_gelu_backward([{m}, {n}])", gelu_grads, rtol, atol)

            def kept_pair(b):  # the pair the conditioner node trains with; its eager twin is the reference's
                if b == "eager":
                    out, derivative = gelu_reference.bias_gelu_keep(zb, bb)
                    return (out, *gelu_reference.bias_gelu_backward_kept(gb, derivative))
                out, derivative = torch.ops.genad_fast.bias_gelu_keep(zb, bb)
                return (out, *torch.ops.genad_fast.bias_gelu_backward_kept(gb, derivative))
            both(f"bias_gelu_keep and bias_gelu_backward_kept([{m}, {n}])", kept_pair, rtol, atol)

        # permute_affine forward (bit for bit: the same two roundings and ATen's exp on every variant) and backward
        # (∂/∂x bit for bit, the column sums to rounding): widths D of 1, 7, 17 and 37 (gathers of whole AVX2 and
        # AVX-512 registers and scalar tails), either half empty, split at 0, inside and at D; the halves column
        # windows of one wider matrix (row strides), a NaN and a -inf; N across one to several 64-row blocks
        for n_rows, da, db, split in ((3, 1, 0, 1), (70, 3, 4, 0), (130, 9, 8, 11), (65, 0, 37, 37), (9, 20, 17, 5)):
            wide = rand(n_rows, da + db + 3, dtype=dtype) * 3
            xa, xb = wide[:, :da], wide[:, da + 3:]
            if da:
                xa[0, 0] = float("nan")
            if db:
                xb[-1, -1] = -float("inf")
            pb, pls = rand(da + db, dtype=dtype), rand(da + db, dtype=dtype) * 0.5
            pp = torch.randperm(da + db, generator=g)
            case = f"[{n_rows}, {da}|{db}], split={split}"
            both(f"permute_affine({case})", lambda b: ops.permute_affine(xa, xb, pb, pls, pp, split, backend=b),
                 0.0, 0.0)
            pg = rand(n_rows, da + db, dtype=dtype)

            def permute_grads(b):
                leaves = [t.detach().requires_grad_(True) for t in (xa, xb, pb, pls)]
                outs = ops.permute_affine(*leaves, pp, split, backend=b)
                torch.autograd.backward(list(outs), [pg[:, :split], pg[:, split:]])
                return tuple(t.grad for t in leaves)
            both(f"permute_affine_backward({case})", lambda b: permute_grads(b)[:2], 0.0, 0.0)
            both(f"permute_affine_backward({case}) sums", lambda b: permute_grads(b)[2:], rtol, atol)

    # gated_tanh in bfloat16: the float32 kernel's result on the upcast input, rounded once, bit for bit
    xb = (rand(5, 2 * 37, 13, dtype=torch.float32) * 4).to(torch.bfloat16)
    _close("gated_tanh(bfloat16)", ops.gated_tanh(xb, 1, backend="cpu"),
           ops.gated_tanh(xb.float(), 1, backend="cpu").to(torch.bfloat16), 0.0, 0.0)
    gb = rand(5, 37, 13, dtype=torch.float32).to(torch.bfloat16)
    _close("gated_tanh_backward(bfloat16)", torch.ops.genad_fast.gated_tanh_backward(gb, xb, 1),
           torch.ops.genad_fast.gated_tanh_backward(gb.float(), xb.float(), 1).to(torch.bfloat16), 0.0, 0.0)

    for wdtype in (torch.float32, torch.bfloat16):
        x, w = rand(130, 37, dtype=torch.float32), rand(29, 37, dtype=torch.float32)
        bias = rand(29, dtype=torch.float32)
        gate, add = rand(130, 37, dtype=torch.float32), rand(130, 29, dtype=torch.float32)
        wt = w.to(wdtype)
        ltol = (1e-5, 1e-5) if wdtype == torch.float32 else (1e-2, 1e-2)
        both("linear_act", lambda b: ops.linear_act(x, wt, bias.to(wdtype), gate=gate, gate_slope=0.2, addend=add,
                                                    slope=0.1, out_dtype=torch.float32, backend=b), *ltol)
    print(f"capability {expected}: every op matches eager")


if __name__ == "__main__":
    if "--report" in sys.argv:
        print(genad_fast.build_info()["cpu_capability"])
    elif "--randn-digest" in sys.argv:
        print(_randn_digest())
    elif "--knn-exact" in sys.argv:
        _knn_exact_checks()
    else:
        child_checks()
