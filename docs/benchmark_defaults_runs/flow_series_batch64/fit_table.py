"""One FlowDetector fit on make_tabular(n_train, 4,000 test rows, D features, shift, seed) with JSON parameter
overrides: one JSON line with the fit's CPU seconds, epochs, best epoch, best held-out loss and the test AUROC.
    python docs/benchmark_defaults_runs/flow_series_batch64/fit_table.py 20000 32 2 0 '{"batch_size": 64}'
"""
import json
import sys
import time

import torch
from sklearn.metrics import roc_auc_score

from genad_fast.data.synthetic import make_tabular
from genad_fast.detectors.flow import FlowDetector

n, dim, shift, seed = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
torch.set_num_threads(1)
train, test, labels = make_tabular(n_train=n, n_test=4000, n_features=dim, shift=shift, seed=seed)
det = FlowDetector(verbose=False, seed=seed, **extra)
cpu = time.process_time()
det.fit(train)
cpu = time.process_time() - cpu
auroc = roc_auc_score(labels, det.decision_function(test))
print(json.dumps({"n": n, "D": dim, "shift": shift, "seed": seed, "extra": extra, "cpu_s": round(cpu, 2),
                  "epochs": len(det.history_.train_loss), "best": det.history_.best_epoch,
                  "best_val": round(min(det.history_.val_loss), 5), "auroc": round(float(auroc), 5)}), flush=True)
