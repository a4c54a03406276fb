"""The quality study of issue #17 (point 4): why the autoencoder, VAE and Deep SVDD trail PCA, one factor at a time.

Runs detectors with library defaults, or with parameters overridden per detector, over several different data
sets (series: the project's multichannel synthetic series with all five anomaly kinds, UCR kdd135, a GutenTAG ECG
series; tabular: wdbc, wine, a 5-feature Gaussian-mixture set), ``--seeds`` seeds each, and prints one markdown
table of AUROC and VUS-PR (tabular: AUPRC) per data set and detector, mean over the seeds. Each run is appended as
one JSON line to ``--out`` (``--tag`` names the variant), so a later ``--compare TAG_A TAG_B`` prints the
before/after table of two variants from the same file.

    .venv/bin/python scripts/quality_study.py --tag defaults --out /tmp/qs.jsonl
    .venv/bin/python scripts/quality_study.py --detectors autoencoder --set autoencoder:reduce=mean \\
        --tag ae-mean --out /tmp/qs.jsonl
    .venv/bin/python scripts/quality_study.py --compare defaults ae-mean --out /tmp/qs.jsonl
    .venv/bin/python scripts/quality_study.py --scoring-grid --out /tmp/qs.jsonl   # scoring factors, one fit each

Every data set is offline and seeded (GutenTAG and aeon ship their generators/data). Series use one window for
every detector: the synthetic series' period (32), kdd135's estimated period, 32 for the ECG series (the window
of the issue's ECG report). Training uses ``--threads`` torch threads (1 by default: a shared machine).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import defaultdict

import numpy as np

DATASETS = ("synthetic", "kdd135", "ecg", "wdbc", "wine", "tab5")
DETECTORS = ("autoencoder", "vae", "deep_svdd", "pca")


# ------------------------------------------------------------------------------------------------ data
def _synthetic(seed: int):
    from genad_fast.data.synthetic import ALL_SERIES_TYPES, make_series

    d = make_series(T=4000, C=8, period=32, anomaly_types=ALL_SERIES_TYPES, seed=seed)
    return d.train, d.test, d.labels, 32


def _kdd135(seed: int):
    from genad_fast.data.ucr import load_kdd_tsad_135
    from genad_fast.evaluation.runner import estimate_period

    d = load_kdd_tsad_135()  # one fixed series: the seed only changes the detectors' seeds
    return d.train, d.test, d.labels, int(np.clip(estimate_period(d.train), 8, 256))


def _ecg(seed: int):
    """Two ECG channels (GutenTAG's ``ecg`` base oscillation, neurokit2's simulator) at different heart rates,
    with an amplitude change, a frequency change, a pattern change and an extremum; a clean training series
    from the same generator."""
    from gutenTAG import GutenTAG

    anomalies = [
        {"position": "beginning", "length": 40, "channel": 0, "kinds": [{"kind": "amplitude",
                                                                         "amplitude_factor": 1.6}]},
        {"position": "middle", "length": 60, "channel": 1, "kinds": [{"kind": "frequency",
                                                                      "frequency_factor": 1.5}]},
        {"position": "end", "length": 40, "channel": 0, "kinds": [{"kind": "pattern", "sinusoid_k": 0.5}]},
        {"position": "middle", "length": 1, "channel": 0, "kinds": [{"kind": "extremum", "min": False,
                                                                     "local": True}]},
    ]
    cfg = {"timeseries": [{"name": "ecg", "length": 3000, "semi-supervised": True, "supervised": False,
                           "base-oscillations": [{"kind": "ecg", "frequency": 2.0, "amplitude": 1.0, "variance": 0.05},
                                                 {"kind": "ecg", "frequency": 1.3, "amplitude": 0.7,
                                                  "variance": 0.05}],
                           "anomalies": anomalies}]}
    gt = GutenTAG(seed=seed)
    gt.load_config_dict(cfg)
    test_ts, train_ts = None, None
    for item in gt.generate(return_timeseries=True):
        kind = str(getattr(item, "training_type", ""))
        if "TEST" in kind.upper():
            test_ts = item.timeseries
        elif "NO_ANOMALIES" in kind.upper() or "NO-ANOMAL" in kind.lower():
            train_ts = item.timeseries
    if test_ts is None or train_ts is None:
        raise RuntimeError("GutenTAG returned no test/train pair")
    cols = [c for c in test_ts.columns if c.startswith("value")]
    return (train_ts[cols].to_numpy(np.float32), test_ts[cols].to_numpy(np.float32),
            test_ts["is_anomaly"].to_numpy().astype(np.int8), 32)


def _tabular(name: str):
    def load(seed: int):
        from genad_fast.data import tabular
        from genad_fast.data.synthetic import make_tabular

        if name == "tab5":
            d = make_tabular(n_train=1000, n_test=500, n_features=5, seed=seed)
        else:
            d = getattr(tabular, f"load_{name}")(seed=seed)
        return d.train, d.test, d.labels, None
    return load


LOADERS = {"synthetic": _synthetic, "kdd135": _kdd135, "ecg": _ecg, "wdbc": _tabular("wdbc"),
           "wine": _tabular("wine"), "tab5": _tabular("tab5")}


# ------------------------------------------------------------------------------------------------ runs
def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text  # a bare string such as mean


def parse_sets(items: list[str]) -> dict[str, dict]:
    """``["vae:reduce=mean", "vae:hidden=[64,32]"]`` -> ``{"vae": {"reduce": "mean", "hidden": [64, 32]}}``."""
    out: dict[str, dict] = defaultdict(dict)
    for item in items:
        det, _, kv = item.partition(":")
        key, eq, val = kv.partition("=")
        if not det or not key or not eq:
            raise SystemExit(f"--set wants DETECTOR:PARAM=VALUE, got {item!r}")
        v = _value(val)
        out[det][key] = tuple(v) if isinstance(v, list) else v
    return dict(out)


def run_one(det_name: str, data, seed: int, params: dict) -> dict:
    from genad_fast.detectors._registry import get_detector
    from genad_fast.metrics import auprc, auroc, vus_pr

    train, test, labels, window = data
    cls = get_detector(det_name)
    kw = dict(params, seed=seed, verbose=False, device="cpu")
    if window is not None:
        kw["window"] = window
    det = cls(**kw)
    t0 = time.perf_counter()
    det.fit(train)
    fit_s = time.perf_counter() - t0
    scores = np.asarray(det.decision_function(test), dtype=np.float64)
    rec = {"auroc": float(auroc(labels, scores)), "fit_s": fit_s}
    rec["vus_pr"] = float(vus_pr(labels, scores)) if window is not None else float(auprc(labels, scores))
    hist = getattr(det, "history_", None)
    if hist is not None:
        rec["epochs_run"] = len(hist.train_loss)
        rec["best_epoch"] = int(hist.best_epoch)
    return rec


#: ``--scoring-grid``: the scoring-only factors, evaluated on one fit of the defaults (tabular data: the first key).
SCORING_GRID = {"autoencoder": {"anomaly_score": ["latent_density", "latent_gaussian", "reconstruction"],
                                "reduce": ["min", "mean", "max"], "per_timestamp": [True, False]},
                "vae": {"anomaly_score": ["recon_prob", "elbo"], "reduce": ["min", "mean"],
                        "per_timestamp": [True, False]},
                "deep_svdd": {"reduce": ["min", "mean", "max"]}}


def scoring_grid(args) -> list[dict]:
    """One fit per (data set, seed, detector) with ``--set``'s parameters, then every combination of the
    detector's :data:`SCORING_GRID` scored from that model (tag ``sf:<param>=<value>,...``)."""
    import itertools

    import torch

    from genad_fast.detectors._registry import get_detector
    from genad_fast.metrics import auprc, auroc, vus_pr

    torch.set_num_threads(args.threads)
    sets = parse_sets(args.set or [])
    records = []
    for ds in args.datasets:
        for seed in range(args.seeds):
            train, test, labels, window = LOADERS[ds](seed)
            for name in args.detectors:
                grid = dict(SCORING_GRID.get(name, {}))
                if window is None:
                    grid = dict(list(grid.items())[:1]) if "anomaly_score" in grid else {}
                kw = dict(sets.get(name, {}), seed=seed, verbose=False, device="cpu")
                if window is not None:
                    kw["window"] = window
                det = get_detector(name)(**kw)
                t0 = time.perf_counter()
                det.fit(train)
                fit_s = time.perf_counter() - t0
                for combo in itertools.product(*grid.values()):
                    params = dict(zip(grid, combo))
                    det.set_params(**params)
                    s = np.asarray(det.decision_function(test), dtype=np.float64)
                    rec = dict(tag="sf:" + ",".join(f"{k}={v}" for k, v in params.items()), dataset=ds,
                               detector=name, seed=seed, status="ok", auroc=float(auroc(labels, s)), fit_s=fit_s,
                               params=params, vus_pr=float(vus_pr(labels, s)) if window else float(auprc(labels, s)))
                    emit(rec, records, args.out)
    return records


def emit(rec: dict, records: list[dict], out: str | None) -> None:
    """Keep one run's record, echo it to stderr and append it to ``out`` (JSON lines) as it finishes."""
    records.append(rec)
    print(json.dumps(rec), file=sys.stderr, flush=True)
    if out:
        with open(out, "a") as fh:
            fh.write(json.dumps(rec) + "\n")


def study(args) -> list[dict]:
    import torch

    torch.set_num_threads(args.threads)
    sets = parse_sets(args.set or [])
    records = []
    for ds in args.datasets:
        for seed in range(args.seeds):
            data = LOADERS[ds](seed)
            for det in args.detectors:
                params = sets.get(det, {})
                try:
                    rec = run_one(det, data, seed, params)
                    rec["status"] = "ok"
                except Exception as exc:  # reported, not dropped
                    rec = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}"[:300]}
                rec.update(tag=args.tag, dataset=ds, detector=det, seed=seed,
                           params={k: list(v) if isinstance(v, tuple) else v for k, v in params.items()})
                emit(rec, records, args.out)
    return records


# ------------------------------------------------------------------------------------------------ tables
def _means(records: list[dict], tag: str | None = None) -> dict:
    acc: dict = defaultdict(lambda: defaultdict(list))
    for r in records:
        if (tag is None or r["tag"] == tag) and r["status"] == "ok":
            for m in ("auroc", "vus_pr", "fit_s"):
                acc[(r["dataset"], r["detector"])][m].append(r[m])
    return {k: {m: float(np.mean(v)) for m, v in d.items()} | {"n": len(d["auroc"])} for k, d in acc.items()}


def table(records: list[dict]) -> str:
    lines = ["| data set | detector | variant | AUROC | VUS-PR (tabular: AUPRC) | fit s | seeds |",
             "|---|---|---|---|---|---|---|"]
    rows = []
    for tag in dict.fromkeys(r["tag"] for r in records):
        for (ds, det), m in _means(records, tag).items():
            rows.append((DATASETS.index(ds), det, tag, ds, m))
    for _, det, tag, ds, m in sorted(rows, key=lambda r: r[:3]):
        lines.append(f"| {ds} | {det} | {tag} | {m['auroc']:.3f} | {m['vus_pr']:.3f} | {m['fit_s']:.1f} | {m['n']} |")
    return "\n".join(lines)


def compare(records: list[dict], before: str, after: str, detectors=None) -> str:
    """Before/after per (data set, detector), and the count of sets improved/kept and the worst drop."""
    a, b = _means(records, before), _means(records, after)
    lines = [f"| data set | detector | AUROC {before} | AUROC {after} | Δ | VUS-PR {before} | VUS-PR {after} | Δ |",
             "|---|---|---|---|---|---|---|---|"]
    deltas = []
    for key in sorted(set(a) & set(b), key=lambda k: (DATASETS.index(k[0]), k[1])):
        if detectors and key[1] not in detectors:
            continue
        x, y = a[key], b[key]
        d1, d2 = y["auroc"] - x["auroc"], y["vus_pr"] - x["vus_pr"]
        deltas.append(d1)
        lines.append(f"| {key[0]} | {key[1]} | {x['auroc']:.3f} | {y['auroc']:.3f} | {d1:+.3f} | {x['vus_pr']:.3f} "
                     f"| {y['vus_pr']:.3f} | {d2:+.3f} |")
    if deltas:
        d = np.asarray(deltas)
        lines.append(f"\nAUROC: {int((d >= -0.005).sum())}/{d.size} improved or kept (within 0.005), "
                     f"mean Δ {d.mean():+.3f}, worst Δ {d.min():+.3f}")
    return "\n".join(lines)


def pivot(records: list[dict], detector: str, tags: list[str]) -> str:
    """One row per data set, one column per tag: ``AUROC / VUS-PR`` (tabular: AUPRC), means over the seeds; a tag
    ``A|B`` takes A's records where it has them, else B's (e.g. a series tag and its tabular twin)."""
    cols = []
    for tag in tags:
        merged: dict = {}
        for part in reversed(tag.split("|")):
            merged.update(_means([r for r in records if r["detector"] == detector], part))
        cols.append(merged)
    lines = ["| data set | " + " | ".join(tags) + " |", "|---|" + "---|" * len(tags)]
    for ds in DATASETS:
        cells = [f"{c[(ds, detector)]['auroc']:.3f} / {c[(ds, detector)]['vus_pr']:.3f}" if (ds, detector) in c
                 else "—" for c in cols]
        if any(cell != "—" for cell in cells):
            lines.append(f"| {ds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", type=lambda s: s.split(","), default=list(DATASETS))
    p.add_argument("--detectors", type=lambda s: s.split(","), default=list(DETECTORS))
    p.add_argument("--set", action="append", help="DETECTOR:PARAM=VALUE (JSON value), repeatable")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tag", default="run")
    p.add_argument("--out", help="JSON-lines file the runs are appended to")
    p.add_argument("--scoring-grid", action="store_true", help="one fit each, then every scoring-only factor "
                   "(SCORING_GRID) from it")
    p.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="print a before/after table from --out")
    p.add_argument("--pivot", nargs="+", metavar="TAG", help="print AUROC / VUS-PR per data set (rows) and tag "
                   "(columns) for the first of --detectors, from --out")
    args = p.parse_args(argv)
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    if args.pivot:
        with open(args.out) as fh:
            records = [json.loads(line) for line in fh if line.strip()]
        print(pivot(records, args.detectors[0], args.pivot))
        return 0
    if args.compare:
        with open(args.out) as fh:
            records = [json.loads(line) for line in fh if line.strip()]
        print(compare(records, *args.compare, detectors=args.detectors))
        return 0
    for ds in args.datasets:
        if ds not in LOADERS:
            raise SystemExit(f"unknown data set {ds!r}; known: {', '.join(DATASETS)}")
    print(table(scoring_grid(args) if args.scoring_grid else study(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
