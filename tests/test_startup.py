"""A fresh process's first fit: what it imports. Every CLI call is a fresh process, so an import the fit does not
need is paid on each: torch._dynamo (with sympy) is ~1.2 s of CPU, more than a small fit's training."""
from __future__ import annotations

import subprocess
import sys

# the deep detectors, each fitted for a step or two on a small table or series, then scored
_FITS = """
import sys, numpy as np
from genad_fast.detectors._registry import get_detector
x = np.random.default_rng(0).normal(size=(300, 3)).astype(np.float32)
for name in ("flow", "autoencoder", "vae", "deep_svdd", "diffusion", "anogan", "fanogan", "dte"):
    det = get_detector(name)()
    params = det.get_params()
    det.set_params(**{k: v for k, v in dict(epochs=1, verbose=False, min_steps=0, n_iter=2, steps=2).items()
                      if k in params}, **({"window": 16} if "window" in params else {}))
    det.fit(x).decision_function(x[:20])
print(sorted(m for m in ("torch._dynamo", "sympy") if m in sys.modules))
"""


def test_the_first_fits_of_a_fresh_process_import_neither_dynamo_nor_sympy():
    # Three things used to import them: building a network on the meta device (to_empty's empty_like and random
    # draws on meta tensors run torch's Python references), and any torch.optim optimiser (genad_fast.nn.adam).
    out = subprocess.run([sys.executable, "-c", _FITS], capture_output=True, text=True, timeout=600, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
