"""Copy bandwidth of the machine, measured in the same run as the cases it is the yardstick for.

``dst.copy_(src)`` on float32 buffers much bigger than the last-level cache: a copy of B bytes
reads B and writes B, so it moves 2B bytes. A memory-bound case that moves ``bytes_moved`` bytes
in ``t`` seconds reaches ``bytes_moved / t / copy_bandwidth`` of what the memory system delivers to
torch's own copy kernel (with the same thread count), which is the bar a fused kernel aims at.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass

import torch

from bench.timing import TimingConfig, first_call, measure


@dataclass(frozen=True)
class CopyBandwidth:
    device: str
    buffer_bytes: int            # size of each of src and dst
    median_ms: float
    gb_per_s: float              # 2 * buffer_bytes / median time, in 1e9 bytes per second

    def as_dict(self) -> dict:
        return asdict(self)


def last_level_cache_bytes() -> int | None:
    """Size of the largest CPU cache level reported by sysfs (Linux), else None."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    best = None
    try:
        for entry in os.listdir(base):
            if not entry.startswith("index"):
                continue
            with open(os.path.join(base, entry, "size")) as f:
                text = f.read().strip().upper()
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
            value = int(text.rstrip("KMG")) * mult
            best = value if best is None else max(best, value)
    except (OSError, ValueError):
        return None
    return best


def default_buffer_bytes(device: torch.device) -> int:
    """At least 8x the last-level cache (CPU) or 1 GiB (GPU), and never under 256 MiB."""
    if device.type == "cuda":
        return 1 << 30
    llc = last_level_cache_bytes() or (32 << 20)
    return min(max(256 << 20, 8 * llc), 1 << 30)


def copy_bandwidth(device: torch.device, nbytes: int | None = None,
                   cfg: TimingConfig | None = None) -> CopyBandwidth:
    nbytes = nbytes or default_buffer_bytes(device)
    numel = max(nbytes // 4, 1)
    src = torch.ones(numel, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    call = lambda: dst.copy_(src)  # noqa: E731
    first_call(call, device)        # touch every page of dst before timing
    stats = measure(call, cfg or TimingConfig(budget_s=0.5, min_repeats=5, warmup=1, warmup_s=0.0), device)
    moved = 2 * numel * 4
    return CopyBandwidth(str(device), numel * 4, stats.median_ms, moved / (stats.median_ms * 1e-3) / 1e9)
