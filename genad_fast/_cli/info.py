"""``genad-fast info``: version, build, backends, torch/CUDA/triton, threads, registered detectors."""
from __future__ import annotations

import argparse
import importlib.util
import os


def cmd_info(args: argparse.Namespace) -> int:
    import platform

    import torch

    import genad_fast
    from genad_fast.detectors import detector_names

    print(f"genad_fast {genad_fast.__version__}  (python {platform.python_version()}, {platform.machine()})")
    info = genad_fast.build_info()
    if info.get("loaded"):
        facts = ", ".join(f"{k}={v}" for k, v in info.items() if k != "loaded")
        print(f"extension: loaded ({facts})")
        if "cpu_capabilities" in info:
            print(f"CPU kernels: {info['cpu_capability']} in use (compiled: {', '.join(info['cpu_capabilities'])}; "
                  f"this CPU supports {info['cpu_capability_supported']}; ATEN_CPU_CAPABILITY overrides)")
    else:
        print(f"extension: not loaded ({info.get('error')}); {info.get('hint')}")
    print("backends:")
    for b in genad_fast.backends():
        print(f"  {b}")
    cuda = torch.version.cuda or "none (CPU build)"
    gpu = (f"{torch.cuda.device_count()} visible: {torch.cuda.get_device_name(0)}"
           if torch.cuda.is_available() else "no visible device")
    print(f"torch {torch.__version__}, CUDA {cuda}, GPU: {gpu}")
    spec = importlib.util.find_spec("triton")
    if spec is None:
        print("triton: not installed")
    else:
        try:
            import triton

            print(f"triton {triton.__version__}")
        except Exception as exc:  # a broken install is worth a line, not a crash
            print(f"triton: installed but fails to import ({type(exc).__name__}: {exc})")
    print(f"threads: torch intra-op {torch.get_num_threads()}, inter-op {torch.get_num_interop_threads()}, "
          f"cpus {os.cpu_count()}")
    print(f"detectors: {', '.join(detector_names()) or 'none'}")
    return 0
