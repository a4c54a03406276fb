"""Normalizing flow for vectors: RealNVP / Glow blocks on the fused coupling op.

A flow maps data x to a latent z = f(x) through invertible layers whose log-Jacobian
determinants are cheap, so the exact log-density is

    log p(x) = log N(f(x); 0, I) + Σ_layers log |det ∂f_k/∂f_{k-1}|      (Dinh et al., ICLR 2017)

Each step of the flow is (Kingma & Dhariwal, "Glow", NeurIPS 2018):

    ActNorm  ->  invertible mixing (LU-parametrised linear map, or a fixed permutation)  ->  affine coupling

The coupling splits x into (x_a, x_b), computes h = NN(x_a) with a residual MLP whose last layer starts
at zero (so every step starts as the identity), and maps x_b -> x_b·exp(s) + t through
:func:`genad_fast.ops.coupling_forward`, which also returns Σ s (the log-determinant) in one pass.
Log-determinants are accumulated in float32 or wider.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from genad_fast import ops
from genad_fast.ops import Dispatch
from genad_fast.nn.flow.mlp_function import (bf16_product, conditioner_forward, conditioner_forward_bf16,
                                             conditioner_train, conditioner_train_bf16)
from genad_fast.ops.dispatch import kernel_or_eager, select
from genad_fast._backend import BackendUnavailableError

__all__ = ["LOG_2PI", "ActNorm", "AffineCoupling", "LULinear", "Permutation", "RealNVP", "ResidualMLP",
           "actnorm_permute_split"]

LOG_2PI = math.log(2.0 * math.pi)


def _draw(fn, size, generator: torch.Generator | None, **kwargs) -> torch.Tensor:
    """``fn(size)`` drawn from ``generator`` on the generator's own device (a CUDA generator only draws CUDA
    tensors), returned on the CPU, where the modules are built before they are moved."""
    device = generator.device if generator is not None else None
    return fn(size, generator=generator, device=device, **kwargs).cpu()


class ActNorm(nn.Module):
    """Per-feature affine y = (x + b)·exp(log_scale), initialised from the first batch (Glow §3.1)
    so that the output has zero mean and unit variance; log|det| = Σ log_scale."""

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(dim))
        self.log_scale = nn.Parameter(torch.zeros(dim))
        self.register_buffer("initialized", torch.tensor(False))
        self.eps = eps

    @torch.no_grad()
    def init_parameters_(self, generator: torch.Generator | None = None) -> None:
        """The identity, not yet initialised from data (:func:`genad_fast.nn.init.init_module_`)."""
        self.bias.zero_()
        self.log_scale.zero_()
        self.initialized.fill_(False)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor) -> None:
        std = x.std(dim=0, unbiased=False) if x.shape[0] > 1 else torch.ones_like(x[0])
        self.bias.copy_(-x.mean(dim=0))
        self.log_scale.copy_(-torch.log(std + self.eps))
        self.initialized.fill_(True)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized):
            self.initialize(x)
        y = (x + self.bias) * torch.exp(self.log_scale)
        return y, self.log_scale.sum().expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = y * torch.exp(-self.log_scale) - self.bias
        return x, (-self.log_scale.sum()).expand(y.shape[0])


class LULinear(nn.Module):
    """Invertible linear map W = P·L·(U + diag(sign·exp(log_s))) (Glow §3.2, LU decomposition).

    P is a fixed permutation, L unit lower-triangular, U strictly upper-triangular, so
    log|det W| = Σ log_s costs O(D) instead of O(D³). Initialised from a random rotation.
    """

    def __init__(self, dim: int, generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("perm", torch.empty(dim, dim))
        self.register_buffer("sign_s", torch.empty(dim))
        self.register_buffer("lower_mask", torch.empty(dim, dim))
        self.register_buffer("eye", torch.empty(dim, dim))
        self.lower = nn.Parameter(torch.empty(dim, dim))
        self.upper = nn.Parameter(torch.empty(dim, dim))
        self.log_s = nn.Parameter(torch.empty(dim))
        if not self.lower.is_meta:  # on "meta" (genad_fast.nn.init.build_module) the builder initialises
            self.init_parameters_(generator)

    @torch.no_grad()
    def init_parameters_(self, generator: torch.Generator | None = None) -> None:
        """W = Q, a random rotation: Q from the QR decomposition of a standard normal matrix drawn from
        ``generator`` (None: the global RNG), factorised as Q = P·L·U."""
        dim = self.log_s.shape[0]
        q, _ = torch.linalg.qr(_draw(torch.randn, (dim, dim), generator, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        diag = torch.diagonal(upper)
        self.perm.copy_(p)
        self.sign_s.copy_(torch.sign(diag))
        self.lower_mask.copy_(torch.tril(torch.ones(dim, dim), -1))
        self.eye.copy_(torch.eye(dim))
        self.lower.copy_(lower)
        self.upper.copy_(torch.triu(upper, 1))
        self.log_s.copy_(torch.log(diag.abs()))

    def weight(self) -> torch.Tensor:
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x @ self.weight().T, self.log_s.sum().expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return y @ torch.linalg.inv(self.weight()).T, (-self.log_s.sum()).expand(y.shape[0])


class Permutation(nn.Module):
    """A fixed random permutation of the features (RealNVP's alternation, generalised): log|det| = 0."""

    def __init__(self, dim: int, generator: torch.Generator | None = None):
        super().__init__()
        self.register_buffer("perm", torch.empty(dim, dtype=torch.int64))
        self.register_buffer("inv_perm", torch.empty(dim, dtype=torch.int64))
        if not self.perm.is_meta:  # on "meta" (genad_fast.nn.init.build_module) the builder initialises
            self.init_parameters_(generator)

    @torch.no_grad()
    def init_parameters_(self, generator: torch.Generator | None = None) -> None:
        """A uniformly random permutation drawn from ``generator`` (None: the global RNG), and its inverse."""
        perm = _draw(torch.randperm, self.perm.shape[0], generator)
        self.perm.copy_(perm)
        self.inv_perm.copy_(torch.argsort(perm))

    # index_select, not x[:, perm]: the same values, but advanced indexing's gather and its index_put backward
    # cost 4.5 ms for 256 x 1,544 against 1.4 ms (forward and backward, one Xeon thread; ~12 % of a training step)
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.index_select(1, self.perm), x.new_zeros(x.shape[0])

    def inverse(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return y.index_select(1, self.inv_perm), y.new_zeros(y.shape[0])


def actnorm_permute_split(halves: tuple[torch.Tensor, torch.Tensor], actnorm: ActNorm, permutation: Permutation,
                          d: int, backend: str | Dispatch | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The halves (x_a, x_b) that ``actnorm``, then ``permutation``, then a coupling's split at ``d`` give for the
    input ``[halves[0], halves[1]]`` (columns), in one :func:`genad_fast.ops.permute_affine` call: the same values
    as the modules, bit for bit, without concatenating the halves. The modules' own log-determinants are the
    caller's (ActNorm's Σ log_scale, the permutation's 0)."""
    if actnorm.training and not bool(actnorm.initialized):
        actnorm.initialize(torch.cat(halves, dim=1))
    return ops.permute_affine(halves[0], halves[1], actnorm.bias, actnorm.log_scale, permutation.perm, d,
                              backend=backend)


class ResidualMLP(nn.Module):
    """x -> Linear -> [x + Linear(GELU(Linear(GELU(x))))] × n_blocks -> GELU -> Linear (zero-initialised).

    ``forward(x, backend=)``: with ``"eager"`` (the default) the modules, the reference; with a backend that has the
    ``bias_gelu`` kernel (cpu, cuda, or a call's :class:`~genad_fast.ops.Dispatch` that runs it) the same function
    in fewer passes: each Linear before a GELU is a product without its bias, and the GELU takes the bias
    (:func:`genad_fast.ops.bias_gelu`, one pass each way). The residual stream is carried without its biases,
    h = h̃ + B with B = b_in + Σ b_2 of the blocks so far, so a block's update is one ``addmm`` into h̃ and every
    GELU of h is ``bias_gelu(h̃, B)``: no broadcast bias is copied into a product, and the bias gradients come out of
    the GELU's backward pass. Equal to the modules to float rounding (the sums are grouped differently). With
    gradients on, the whole fused conditioner is one autograd node with a hand-written backward
    (:mod:`genad_fast.nn.flow.mlp_function`: the same calls, so the same values, and far fewer nodes a step).
    """

    def __init__(self, d_in: int, d_out: int, hidden: int, n_blocks: int):
        super().__init__()
        self.inp = nn.Linear(d_in, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, hidden))
            for _ in range(n_blocks))
        self.out = nn.Linear(hidden, d_out)
        self.init_parameters_()

    @torch.no_grad()
    def init_parameters_(self, generator: torch.Generator | None = None) -> None:
        """The last layer at zero, so that every coupling starts as the identity map (the others keep
        PyTorch's default initialisation, :func:`genad_fast.nn.init.init_module_`)."""
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, backend: str | Dispatch | None = "eager") -> torch.Tensor:
        backend = kernel_or_eager("bias_gelu", backend)
        if backend != "eager":
            return self._forward_fused(x, backend)
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(nn.functional.gelu(h))

    def forward_low_precision(self, x: torch.Tensor, dtype: torch.dtype,
                              backend: str | Dispatch | None = "eager") -> torch.Tensor:
        """The conditioner with bfloat16 products: each product's operands (and in the backward its incoming
        gradient) rounded to ``dtype``, the products, GELUs, sums and the output float32
        (:mod:`genad_fast.nn.flow.mlp_function`, "bfloat16 products"). ``"eager"``: these modules' composite with
        :func:`~genad_fast.nn.flow.mlp_function.bf16_product`, the reference; a backend with the fused conditioner
        on the CPU: one C++ autograd node on MKL's bfloat16 GEMM. Other devices and dtypes: an error naming them."""
        if dtype != torch.bfloat16 or x.dtype != torch.float32:
            raise ValueError(f"the flow conditioner's low-precision products are bfloat16 on float32 inputs, got "
                             f"{dtype} products on {x.dtype}")
        backend = kernel_or_eager("bias_gelu", backend)
        if backend == "eager":
            return self._forward_bf16_products_eager(x)
        self._check_fused(x, backend)
        if x.device.type != "cpu":
            raise BackendUnavailableError(f"the fused conditioner's bfloat16 products run on the CPU (MKL), not on "
                                          f"{x.device.type}: use backend='eager' there")
        run = conditioner_train_bf16 if torch.is_grad_enabled() else conditioner_forward_bf16
        return run(x, len(self.blocks), self._fused_parameters())

    def _forward_bf16_products_eager(self, x: torch.Tensor) -> torch.Tensor:
        def linear(layer: nn.Linear, v: torch.Tensor) -> torch.Tensor:
            return bf16_product(v, layer.weight.T) + layer.bias

        gelu = nn.functional.gelu
        h = linear(self.inp, x)
        for block in self.blocks:
            h = h + linear(block[3], gelu(linear(block[1], gelu(h))))
        return linear(self.out, gelu(h))

    @staticmethod
    def _check_fused(x: torch.Tensor, backend: str | Dispatch | None) -> None:
        chosen = select("bias_gelu", backend, x.device)  # one that cannot run on x's device: an error, not a fallback
        if chosen not in ("cpu", "cuda"):  # the C++ conditioner calls the C++ ops' bias_gelu: no other backend's
            raise BackendUnavailableError(f"the fused flow conditioner runs the cpu and cuda kernels of bias_gelu, "
                                          f"not {chosen!r}'s")

    def _forward_fused(self, x: torch.Tensor, backend: str | Dispatch | None) -> torch.Tensor:
        self._check_fused(x, backend)
        if torch.is_grad_enabled():  # training: one C++ autograd node for the whole conditioner, the same calls
            return conditioner_train(x, len(self.blocks), self._fused_parameters())
        return conditioner_forward(x, len(self.blocks), self._fused_parameters())

    def _fused_parameters(self) -> list[nn.Parameter]:
        """The parameters in the fused conditioner's order (:mod:`genad_fast.nn.flow.mlp_function`)."""
        params = [self.inp.weight, self.inp.bias]
        for block in self.blocks:
            params += [block[1].weight, block[1].bias, block[3].weight, block[3].bias]
        return params + [self.out.weight, self.out.bias]


class AffineCoupling(nn.Module):
    """(x_a, x_b) -> (x_a, x_b·exp(s) + t), (s_raw, t) = NN(x_a), s = clamp·tanh(s_raw/clamp).

    The transformed half is a column slice of x, passed to the fused op in place (no copy).
    ``matmul_dtype=torch.bfloat16`` runs the conditioner's products on bfloat16 operands with float32 results
    (:meth:`ResidualMLP.forward_low_precision`); the coupling itself and its log-determinant stay in the input dtype.

    ``backend`` (a name, None, or the :class:`~genad_fast.ops.Dispatch` of the caller's call) and
    ``matmul_dtype`` are defaults: ``forward``/``inverse`` take both per call, so a caller that shares the
    module between threads passes them and never sets the attributes.
    """

    def __init__(self, dim: int, hidden: int, n_blocks: int, clamp: float, backend: str | Dispatch | None = None):
        super().__init__()
        if dim < 2:
            raise ValueError(f"an affine coupling needs at least 2 features, got {dim}")
        self.d_cond = dim // 2
        self.d_trans = dim - self.d_cond
        self.clamp = float(clamp)
        self.backend = backend
        self.matmul_dtype: torch.dtype | None = None
        self.conditioner = ResidualMLP(self.d_cond, 2 * self.d_trans, hidden, n_blocks)

    def _conditioner(self, x_a: torch.Tensor, matmul_dtype: torch.dtype | None,
                     backend: str | Dispatch | None) -> torch.Tensor:
        dtype = self.matmul_dtype if matmul_dtype is None else matmul_dtype
        if dtype is None or dtype == x_a.dtype:
            return self.conditioner(x_a, backend)
        return self.conditioner.forward_low_precision(x_a, dtype, backend)

    def forward(self, x: torch.Tensor, *, backend: str | Dispatch | None = None,
                matmul_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_a, x_b·exp(s) + t) and Σ s; ``backend``/``matmul_dtype`` None: the module's own."""
        x_a = x[:, : self.d_cond]
        y_b, logdet = self.forward_halves(x_a, x[:, self.d_cond:], backend=backend, matmul_dtype=matmul_dtype)
        return torch.cat([x_a, y_b], dim=1), logdet

    def forward_halves(self, x_a: torch.Tensor, x_b: torch.Tensor, *, backend: str | Dispatch | None = None,
                       matmul_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_b·exp(s) + t, Σ s) for x = [x_a, x_b] given as its two halves: the transformed half alone (the
        output is [x_a, it])."""
        backend = self.backend if backend is None else backend
        return ops.coupling_forward(x_b, self._conditioner(x_a, matmul_dtype, backend), self.clamp, backend=backend)

    def inverse(self, y: torch.Tensor, *, backend: str | Dispatch | None = None,
                matmul_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        y_a, y_b = y[:, : self.d_cond], y[:, self.d_cond:]
        backend = self.backend if backend is None else backend
        x_b, logdet = ops.coupling_inverse(y_b, self._conditioner(y_a, matmul_dtype, backend), self.clamp,
                                           backend=backend)
        return torch.cat([y_a, x_b], dim=1), logdet


class RealNVP(nn.Module):
    """A stack of ``n_steps`` (ActNorm, mixing, affine coupling) steps over D features, base N(0, I).

    ``log_prob(x)`` is exact; ``forward(x)`` returns (z, Σ log|det|) and ``inverse(z)`` returns x. All three take
    the couplings' ``backend`` (a name, or the :class:`~genad_fast.ops.Dispatch` of the caller's fit or scoring
    call) and ``matmul_dtype`` per call (None: the constructor's ``backend``, and what ``set_matmul_dtype``
    set); code that shares one flow between threads passes them instead of setting them.
    ``mixing``: "lu" (LU-parametrised linear, Glow) or "permutation" (fixed, free) — "auto" takes LU up
    to 256 features, where its D² products stay small next to the conditioners, and permutations above.
    """

    def __init__(self, dim: int, n_steps: int = 8, hidden: int = 128, n_blocks: int = 2, clamp: float = 2.0,
                 mixing: str = "auto", backend: str | Dispatch | None = None,
                 generator: torch.Generator | None = None):
        super().__init__()
        if mixing == "auto":
            mixing = "lu" if dim <= 256 else "permutation"
        if mixing not in ("lu", "permutation"):
            raise ValueError(f"mixing must be 'lu', 'permutation' or 'auto', got {mixing!r}")
        self.dim = dim
        layers: list[nn.Module] = []
        for _ in range(n_steps):
            layers.append(ActNorm(dim))
            layers.append(LULinear(dim, generator) if mixing == "lu" else Permutation(dim, generator))
            layers.append(AffineCoupling(dim, hidden, n_blocks, clamp, backend))
        self.layers = nn.ModuleList(layers)

    def set_matmul_dtype(self, dtype: torch.dtype | None) -> None:
        for layer in self.layers:
            if isinstance(layer, AffineCoupling):
                layer.matmul_dtype = dtype

    def forward(self, x: torch.Tensor, *, backend: str | Dispatch | None = None,
                matmul_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        # float64 accumulation for float64 data, float32 otherwise (never narrower)
        logdet = torch.zeros(x.shape[0], dtype=torch.promote_types(x.dtype, torch.float32), device=x.device)
        step_backend = self._halves_backend(x, backend)
        if step_backend is not None:
            return self._forward_halves(x, logdet, backend, step_backend, matmul_dtype)
        for layer in self.layers:
            if isinstance(layer, AffineCoupling):
                x, ld = layer(x, backend=backend, matmul_dtype=matmul_dtype)
            else:
                x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def _halves_backend(self, x: torch.Tensor, backend: str | Dispatch | None) -> str | None:
        """The backend of :func:`genad_fast.ops.permute_affine` where the forward runs on halves: training
        (gradients on), permutation mixing, and a backend with its kernel (CPU, CUDA); else None, the modules one by
        one (scoring, LU mixing, the Triton backend, and the eager backend, the reference)."""
        if not (torch.is_grad_enabled() and self.layers and isinstance(self.layers[1], Permutation)):
            return None
        requested = self.layers[2].backend if backend is None else backend
        chosen = select("permute_affine", kernel_or_eager("permute_affine", requested), x.device)
        return None if chosen == "eager" else chosen

    def _forward_halves(self, x: torch.Tensor, logdet: torch.Tensor, backend: str | Dispatch | None,
                        step_backend: str, matmul_dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` with each step's input made from the previous coupling's two halves (x_a, y_b) by one
        :func:`actnorm_permute_split`: the halves are concatenated once, into z. The same values as the modules."""
        halves = (x, x[:, x.shape[1]:])  # [x, nothing]
        for k in range(0, len(self.layers), 3):
            actnorm, permutation, coupling = self.layers[k:k + 3]
            x_a, x_b = actnorm_permute_split(halves, actnorm, permutation, coupling.d_cond, step_backend)
            y_b, ld = coupling.forward_halves(x_a, x_b, backend=backend, matmul_dtype=matmul_dtype)
            halves = (x_a, y_b)
            logdet = logdet + actnorm.log_scale.sum() + ld
        return torch.cat(halves, dim=1), logdet

    def inverse(self, z: torch.Tensor, *, backend: str | Dispatch | None = None,
                matmul_dtype: torch.dtype | None = None) -> torch.Tensor:
        for layer in reversed(self.layers):
            if isinstance(layer, AffineCoupling):
                z, _ = layer.inverse(z, backend=backend, matmul_dtype=matmul_dtype)
            else:
                z, _ = layer.inverse(z)
        return z

    def log_prob(self, x: torch.Tensor, *, backend: str | Dispatch | None = None,
                 matmul_dtype: torch.dtype | None = None) -> torch.Tensor:
        """Exact log-density log p(x) in nats, one value per row."""
        z, logdet = self(x, backend=backend, matmul_dtype=matmul_dtype)
        return -0.5 * (z.pow(2).sum(dim=1) + self.dim * LOG_2PI) + logdet
