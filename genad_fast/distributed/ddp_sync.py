"""The process group of a ``torchrun`` job and what a data-parallel fit asks of it.

:func:`join_process_group` uses the group the caller initialised, or initialises one from torchrun's
environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``): gloo for a model on the CPU, NCCL for
one on a GPU (each process on ``cuda:LOCAL_RANK``). Outside torchrun and without a group it is an error that
says how to launch.

:class:`DDPSync` is the :class:`~genad_fast.nn.training.GradientSync` of the training loops: it wraps a loss
module in ``torch.nn.parallel.DistributedDataParallel`` (gradients averaged over the processes in buckets,
overlapped with the backward pass) and sums small tensors over the processes.

Everything a process may fail at alone (reading its shards, checking them) runs inside :func:`agreed`: the
processes then compare notes, and every one of them raises (the one that failed with its own error, the others
naming it) instead of the others waiting forever in the next collective.
"""
from __future__ import annotations

import contextlib
import inspect
import os
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["DDPSync", "agreed", "all_max", "all_min", "broadcast", "gather_to_main", "join_process_group",
           "kth_smallest", "rank_device"]

_TORCHRUN_ENV = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def rank_device(requested: torch.device) -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` (modulo the visible GPUs) when ``requested`` is a GPU, else
    the CPU. One process per GPU is what NCCL and DistributedDataParallel expect."""
    if requested.type != "cuda":
        return torch.device("cpu")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local % torch.cuda.device_count())
    torch.cuda.set_device(device)
    return device


def join_process_group(device: torch.device) -> bool:
    """Make sure a default process group exists for a model on ``device``; True if this call created it."""
    if not dist.is_available():
        raise RuntimeError("this build of torch has no torch.distributed: data-parallel training needs it")
    if dist.is_initialized():
        backend = str(dist.get_backend())
        if device.type == "cpu" and "gloo" not in backend:
            raise ValueError(f"the process group's backend is {backend!r}, which cannot reduce CPU tensors, and the "
                             f"model trains on the CPU: initialise the group with backend='gloo' (or "
                             f"'cpu:gloo,cuda:nccl'), or train on the GPUs (device='cuda')")
        return False
    missing = [v for v in _TORCHRUN_ENV if v not in os.environ]
    if missing:
        raise RuntimeError("data-parallel training runs in a torch.distributed process group, and there is none: "
                           "launch the program with torchrun (e.g. torchrun --nproc_per_node=2 -m "
                           "genad_fast.distributed.ddp ..., or torchrun --nproc_per_node=2 your_script.py), or call "
                           f"torch.distributed.init_process_group first ({', '.join(missing)} not set)")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return True


def _no_buffer_sync() -> dict[str, bool]:
    """DistributedDataParallel's switch for not broadcasting rank 0's buffers at every forward (the buffers are
    the same on every process: built from one seed, changed only by the same computation); the name changed in
    torch 2.14."""
    names = inspect.signature(nn.parallel.DistributedDataParallel.__init__).parameters
    return {"forward_sync_buffers": False} if "forward_sync_buffers" in names else {"broadcast_buffers": False}


class _Pending:
    def __init__(self, work: Any, buf: torch.Tensor, out: torch.Tensor):
        self.work, self.buf, self.out = work, buf, out

    def wait(self) -> torch.Tensor:
        self.work.wait()
        if self.buf is not self.out:
            self.out.copy_(self.buf)
        return self.out


class DDPSync:
    """:class:`~genad_fast.nn.training.GradientSync` over the default process group, for a model on ``device``."""

    def __init__(self, num_shards: int, device: torch.device):
        self.rank = dist.get_rank()
        self.world_size = dist.get_world_size()
        self.is_main = self.rank == 0
        self.num_shards = int(num_shards)
        self.device = device
        # NCCL reduces GPU tensors only; gloo reduces CPU tensors (it could GPU ones, through host copies)
        backend = str(dist.get_backend())
        self.comm_device = device if device.type == "cuda" and "nccl" in backend else torch.device("cpu")

    def wrap(self, module: nn.Module) -> nn.Module:
        norms = [type(m).__name__ for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if norms:
            raise ValueError(f"the network has batch normalisation ({norms[0]}): under data parallelism each "
                             f"process would keep running statistics of its own shards, and the saved model would "
                             f"hold rank 0's; use batch_norm=False")
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids, **_no_buffer_sync())

    def no_sync(self, wrapped: nn.Module) -> contextlib.AbstractContextManager:
        return wrapped.no_sync()

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        return self.sum_async(t).wait()

    def sum_async(self, t: torch.Tensor) -> _Pending:
        buf = t.to(self.comm_device)
        return _Pending(dist.all_reduce(buf, async_op=True), buf, t)


def _reduce(t: torch.Tensor, op: Any, comm_device: torch.device) -> torch.Tensor:
    buf = t.to(comm_device)
    dist.all_reduce(buf, op=op)
    return buf.to(t.device)


def all_max(t: torch.Tensor, sync: DDPSync) -> torch.Tensor:
    """Elementwise maximum of ``t`` over the processes (a new tensor on ``t``'s device)."""
    return _reduce(t, dist.ReduceOp.MAX, sync.comm_device)


def all_min(t: torch.Tensor, sync: DDPSync) -> torch.Tensor:
    """Elementwise minimum of ``t`` over the processes."""
    return _reduce(t, dist.ReduceOp.MIN, sync.comm_device)


def broadcast(obj: Any, sync: DDPSync, src: int = 0) -> Any:
    """``obj`` of process ``src``, on every process (pickled)."""
    box = [obj if sync.rank == src else None]
    dist.broadcast_object_list(box, src=src, device=sync.comm_device)
    return box[0]


def gather_to_main(obj: Any, sync: DDPSync) -> list | None:
    """Every process's ``obj``, in rank order, on rank 0 (None elsewhere)."""
    out = [None] * sync.world_size if sync.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def decided_on_main(decide: Callable[[], Any], sync: DDPSync) -> Any:
    """``decide()`` run on rank 0 only (over what the processes gathered there), its value on every process; a
    ValueError or TypeError it raises is raised on every process with the same message (the others would otherwise
    wait in the next collective)."""
    result: dict[str, Any] = {}
    if sync.is_main:
        try:
            result["value"] = decide()
        except (ValueError, TypeError) as exc:
            result["error"] = (isinstance(exc, TypeError), str(exc))
    result = broadcast(result, sync)
    if "error" in result:
        is_type, message = result["error"]
        raise (TypeError if is_type else ValueError)(message)
    return result["value"]


@contextlib.contextmanager
def agreed(what: str, sync: DDPSync) -> Iterator[None]:
    """Run the block on every process, then agree: if it raised on any process, it raises on all of them (the
    failing process its own exception; the others a ValueError/TypeError/RuntimeError, as the first failure was,
    naming its rank and message). Without this, the processes that succeeded would wait forever in the next
    collective for the one that failed."""
    error: BaseException | None = None
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - every failure is shared, then raised again
        error = exc
    notes = [None] * sync.world_size
    dist.all_gather_object(notes, None if error is None else (type(error).__name__, str(error),
                                                              isinstance(error, ValueError),
                                                              isinstance(error, TypeError)))
    failed = [(r, n) for r, n in enumerate(notes) if n is not None]
    if not failed:
        return
    if error is not None:
        raise error
    rank, (name, message, is_value, is_type) = failed[0]
    kind = ValueError if is_value else TypeError if is_type else RuntimeError
    raise kind(f"{what} failed on rank {rank} of {sync.world_size}: {name}: {message}")


def kth_smallest(values: torch.Tensor, k: int, sync: DDPSync) -> float:
    """The ``k``-th smallest (1-based) of the non-negative float64 ``values`` of all processes together, exactly,
    without gathering them: a bisection over the values' bit patterns (ordered like the values for non-negative
    doubles), one all-reduced count per bit."""
    bits = values.detach().to(torch.float64).clamp_min(0).contiguous().view(torch.int64).flatten()
    lo, hi = 0, 0x7FF0000000000000  # +0.0 .. +inf
    while lo < hi:
        mid = (lo + hi) // 2
        count = sync.sum_(torch.tensor([int((bits <= mid).sum())], dtype=torch.int64))
        if int(count[0]) >= k:
            hi = mid
        else:
            lo = mid + 1
    return float(torch.tensor([lo], dtype=torch.int64).view(torch.float64)[0])
