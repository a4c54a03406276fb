"""``genad-fast export`` end to end (fit, save, export, onnxruntime), and the serving code of docs/serve.md run as
it is written: in a child process where genad_fast and torch cannot be imported."""
from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tiny_detectors import TINY

ort = pytest.importorskip("onnxruntime", reason="the export extra (onnx, onnxscript, onnxruntime) is not installed")
pytest.importorskip("onnxscript", reason="the export extra (onnx, onnxscript, onnxruntime) is not installed")

import genad_fast  # noqa: E402
from genad_fast.cli import main  # noqa: E402
from genad_fast.data import make_series  # noqa: E402
from genad_fast.detectors import get_detector  # noqa: E402

SERVE_MD = Path(__file__).resolve().parent.parent / "docs" / "serve.md"
#: Run a script in a clean interpreter (-I: no user site, no working directory on sys.path) where importing
#: genad_fast or torch fails: what the docs promise needs neither.
WITHOUT_PACKAGE = ("import sys; sys.modules.update(genad_fast=None, torch=None); "
                   "path = sys.argv[1]; exec(compile(open(path).read(), path, 'exec'), {'__name__': '__main__'})")


def _python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", SERVE_MD.read_text(), flags=re.S)


def _serve_example() -> str:
    text = SERVE_MD.read_text()
    marker = text.index("<!-- serve-example")
    return re.search(r"```python\n(.*?)```", text[marker:], flags=re.S).group(1)


def _rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)) @ rng.normal(size=(4, 4))
    return pd.DataFrame(x.astype(np.float32), columns=["a", "b", "c", "d"])


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    """A flow fitted by `genad-fast fit` on a CSV, exported by `genad-fast export`: (dir, model.pt, model.onnx)."""
    root = tmp_path_factory.mktemp("cli")
    _rows(300, 0).to_csv(root / "train.csv", index=False)
    params = [f"--param={k}={v}" for k, v in TINY["flow"].items()]
    assert main(["fit", "--detector", "flow", "--input", str(root / "train.csv"), "--out", str(root / "model.pt"),
                 "--quiet", *params]) == 0
    assert main(["export", "--model", str(root / "model.pt"), "--out", str(root / "model.onnx")]) == 0
    return root, root / "model.pt", root / "model.onnx"


def test_cli_export_runs_in_onnxruntime(cli_model, capsys):
    root, model, onnx_path = cli_model
    test = _rows(50, 1)
    det = genad_fast.load(str(model))
    want = det.decision_function(test)
    got = ort.InferenceSession(str(onnx_path)).run(["score"], {"x": test.to_numpy(np.float32)})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4)
    assert main(["export", "--model", str(model), "--format", "torch", "--out", str(root / "model.pt2")]) == 0
    assert "as torch ->" in capsys.readouterr().out


def test_serve_example_runs_without_genad_fast(cli_model):
    root, model, _ = cli_model
    test = _rows(7, 2)
    test.to_csv(root / "rows.csv", index=False)
    (root / "serve.py").write_text(_serve_example())
    done = subprocess.run([sys.executable, "-I", "-c", WITHOUT_PACKAGE, "serve.py"], cwd=root, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    printed = np.array([[float(v) for v in line.strip(" []").split()] for line in done.stdout.strip().splitlines()])
    det = genad_fast.load(str(model))
    want = det.decision_function(test)
    np.testing.assert_allclose(printed[:, 0], want, rtol=1e-4)
    np.testing.assert_array_equal(printed[:, 1], want > det.threshold_)
    assert len(_serve_example().strip().splitlines()) <= 10


def test_the_example_really_lacks_genad_fast(tmp_path):
    (tmp_path / "probe.py").write_text("import genad_fast\n")
    done = subprocess.run([sys.executable, "-I", "-c", WITHOUT_PACKAGE, "probe.py"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "import of genad_fast halted" in done.stderr


def test_torch_format_loads_with_torch_alone(cli_model, tmp_path):
    root, model, _ = cli_model
    test = _rows(5, 3).to_numpy(np.float32)
    np.save(tmp_path / "x.npy", test)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["genad_fast"] = None
        import numpy as np, torch
        program = torch.export.load({str(root / 'model.pt2')!r})
        with torch.no_grad():
            print(" ".join(repr(float(v)) for v in program.module()(torch.from_numpy(np.load("x.npy")))))
    """)
    done = subprocess.run([sys.executable, "-I", "-c", script], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    got = np.array([float(v) for v in done.stdout.split()])
    np.testing.assert_allclose(got, genad_fast.load(str(model)).decision_function(test), rtol=1e-4)


@pytest.mark.parametrize("name, extra", [("autoencoder", {"reduce": "mean"}), ("knn", {"reduce": "min"})])
def test_docs_timestamp_recipe_matches_decision_function(tmp_path, name, extra):
    """docs/serve.md's numpy reduction of window scores to timestamps (end-aligned tail window included)."""
    data = make_series(T=700, C=2, seed=0)
    det = get_detector(name)(window=8, stride=3, verbose=False, **{**TINY.get(name, {}), **extra}).fit(data.train)
    det.export(tmp_path / "m.onnx")
    namespace = {"np": np}
    exec(next(b for b in _python_blocks() if "def timestamp_scores" in b), namespace)
    series = data.test[:301]  # (301 - 8) % 3 != 0: an end-aligned window off the grid
    got = namespace["timestamp_scores"](ort.InferenceSession(str(tmp_path / "m.onnx")), series, 8, 3, det.reduce)
    np.testing.assert_allclose(got, det.decision_function(series), rtol=1e-4)


@pytest.mark.parametrize("argv, says", [
    (["--model", "{root}/missing.pt"], "missing.pt"),
    (["--model", "{root}/anogan.pt"], "AnoGANDetector cannot be exported"),
    (["--model", "{root}/model.pt", "--format", "tflite"], None),
])
def test_cli_export_errors(cli_model, capsys, argv, says):
    root, _, _ = cli_model
    if "anogan" in argv[1] and not (root / "anogan.pt").exists():
        get_detector("anogan")(verbose=False, **TINY["anogan"]).fit(_rows(64, 4)).save(str(root / "anogan.pt"))
    code = main(["export", *[a.format(root=root) for a in argv], "--out", str(root / "bad.onnx")])
    err = capsys.readouterr().err
    if says is None:  # an argparse usage error
        assert code == 2 and "invalid choice: 'tflite'" in err
    else:
        assert code == 1 and says in err and err.startswith("genad-fast: error:")
    assert not (root / "bad.onnx").exists()


def test_cli_export_without_onnx_names_the_extra(cli_model, capsys, monkeypatch):
    root, model, _ = cli_model
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", "--model", str(model), "--out", str(root / "no.onnx")]) == 1
    err = capsys.readouterr().err
    assert "pip install 'onnx>=1.18' 'onnxscript>=0.5'" in err and "-e '.[export]'" in err
    assert not (root / "no.onnx").exists()
