"""One FlowDetector fit on the reference series (make_series(T=20000, C=8, seed=0), window 193) or table
(make_tabular(20000, 2000, 32, seed=0)) with the seed argv[2] and JSON parameter overrides argv[3]: one JSON line
with the fit's CPU seconds, epochs, best epoch, best held-out loss and the test AUROC. Run from the repository root:
    python docs/benchmark_defaults_runs/flow_series_batch64/fit_seed.py series 0 '{"batch_size": 256}'
"""
import json
import sys
import time

import torch
from sklearn.metrics import roc_auc_score

from genad_fast.data.synthetic import make_series, make_tabular
from genad_fast.detectors.flow import FlowDetector

task, seed = sys.argv[1], int(sys.argv[2])
extra = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
torch.set_num_threads(1)
if task == "series":
    train, test, labels = make_series(T=20000, C=8, seed=0)
    params = {"window": 193}
else:
    train, test, labels = make_tabular(n_train=20000, n_test=2000, n_features=32, seed=0)
    params = {}
det = FlowDetector(verbose=False, seed=seed, **params, **extra)
cpu = time.process_time()
det.fit(train)
cpu = time.process_time() - cpu
auroc = roc_auc_score(labels, det.decision_function(test))
print(json.dumps({"task": task, "seed": seed, "extra": extra, "cpu_s": round(cpu, 2),
                  "epochs": len(det.history_.train_loss), "best": det.history_.best_epoch,
                  "best_val": round(min(det.history_.val_loss), 5), "auroc": round(float(auroc), 5)}), flush=True)
