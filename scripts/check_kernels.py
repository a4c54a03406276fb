"""Check that every genad_fast op has a kernel registered for each expected dispatch key.

Run after a build: `python scripts/check_kernels.py --expect CPU,CUDA` (the CUDA build) or
`--expect CPU` (a CPU-only build). Exits non-zero, naming the ops, if any kernel is missing.
No GPU is needed: registration happens when genad_fast._C is loaded.
"""
from __future__ import annotations

import argparse
import sys

import torch

import genad_fast


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--expect", default="CPU", help="comma-separated dispatch keys, e.g. CPU,CUDA")
    args = parser.parse_args()
    info = genad_fast.build_info()
    if not info.get("loaded"):
        print(f"genad_fast._C is not loaded: {info.get('error')}")
        return 1
    ops = sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("genad_fast::"))
    if not ops:
        print("no genad_fast ops are registered")
        return 1
    keys = [k.strip() for k in args.expect.split(",") if k.strip()]
    missing = [(op, key) for op in ops for key in keys
               if not torch._C._dispatch_has_kernel_for_dispatch_key(op, key)]
    for op in ops:
        have = [k for k in keys if (op, k) not in missing]
        print(f"  {op:40s} {' '.join(have)}")
    if missing:
        print("missing kernels: " + ", ".join(f"{op} [{key}]" for op, key in missing))
        return 1
    print(f"all {len(ops)} genad_fast ops have {', '.join(keys)} kernels (build: {info['backends']}, "
          f"archs {info['cuda_archs'] or '-'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
