"""Model files of every registered detector kind, damaged in every way a file can be: each must be refused with a
ModelFileError that names the file, the field and the problem (never loaded silently, never an AttributeError).

Each kind is fitted once, small (tests/tiny_detectors.py), on a 3-channel series through windows, from a DataFrame
so that ``feature_names_in_`` is stored. A test copies the saved file, changes it and loads the copy. Files whose
fields are changed on purpose are re-sealed with a fresh checksum (:func:`_edit`), so the field checks are tested
on their own and not only through the checksum; the checksum tests change the bytes without re-sealing.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

import genad_fast
from genad_fast.datasets import make_series
from genad_fast.detectors import FORMAT_VERSION, ModelFileError, detector_names
from genad_fast.detectors._io import FITTED_FIELDS, payload_checksum, seal
from tiny_detectors import make_detector

pytestmark = pytest.mark.usefixtures("one_thread")

#: Every registered kind (fitted small: tests/tiny_detectors.py), on a series through windows.
KINDS = detector_names()

#: Per fitted field: a value of the wrong type (every field of the table must be listed).
WRONG_TYPE = {
    "threshold_": "0.5",
    "decision_scores_": [0.1, 0.2],
    "n_features_in_": 3.0,
    "feature_names_in_": "abc",
    "seed_": "0",
    "normalizer": torch.zeros(3),
    "input_stats": [0.0, 1.0],
    "fitted_device": 0,
    "window_": "16",
}


@pytest.fixture(scope="module")
def data():
    series = make_series(T=800, C=3, period=16, seed=1)
    return pd.DataFrame(series.train[:300], columns=["a", "b", "c"]), series.test[:120]


@pytest.fixture(scope="module")
def saved(data, tmp_path_factory):
    """Kind -> (fitted detector, path of its model file). Fitted on first use, once per module."""
    folder = tmp_path_factory.mktemp("models")
    cache = {}

    def get(kind):
        if kind not in cache:
            det = make_detector(kind, "series").fit(data[0])
            path = folder / f"{kind}.pt"
            det.save(path)
            cache[kind] = det, path
        return cache[kind]

    return get


def _edit(src, dst, change):
    """Copy the model file ``src`` to ``dst`` with ``change(payload)`` applied; re-sealed if it was sealed."""
    payload = torch.load(src, weights_only=True)
    change(payload)
    if "checksum" in payload:
        seal(payload)
    torch.save(payload, dst)
    return dst


def _float_tensors(value, path=()):
    """(key path, tensor) of every floating tensor in a nested dict/list."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield path, value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _float_tensors(v, path + (k,))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            yield from _float_tensors(v, path + (i,))


def _largest_state_tensor(payload):
    """Key path and tensor of the biggest floating tensor of the state (a weight matrix, the reference set)."""
    return max(_float_tensors(payload["state"]), key=lambda item: item[1].numel())


def _key_path(path):
    return "state" + "".join(f"[{k!r}]" for k in path)


def _load_fails(path, pattern):
    """Loading ``path`` raises a ModelFileError naming the file and matching ``pattern``."""
    with pytest.raises(ModelFileError, match=re.escape(str(path)) + ".*" + pattern):
        genad_fast.load(path)


# ------------------------------------------------------------------ sound files
def test_every_fitted_field_has_a_wrong_type_case():
    assert sorted(f.key for f in FITTED_FIELDS) == sorted(WRONG_TYPE)


@pytest.mark.parametrize("kind", KINDS)
def test_saved_file_is_sealed_and_loads(kind, saved, data):
    det, path = saved(kind)
    payload = torch.load(path, weights_only=True)
    assert payload["format_version"] == FORMAT_VERSION == 2
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", payload["checksum"])
    assert payload["checksum"] == payload_checksum(payload)
    back = genad_fast.load(path)
    assert type(back) is type(det) and back.threshold_ == det.threshold_
    assert list(back.feature_names_in_) == ["a", "b", "c"] and back.feature_names_in_.dtype == object
    _assert_same_stats(back.input_stats_, getattr(det, "input_stats_", None))
    _assert_same_stats(back.normalizer_, det.normalizer_)
    np.testing.assert_array_equal(back.decision_function(data[1]), det.decision_function(data[1]))


def _assert_same_stats(a, b):
    """Two Normalizer-like statistics (or None) hold the same numbers."""
    assert (a is None) == (b is None)
    if a is not None:
        assert torch.equal(a.mean, b.mean) and torch.equal(a.scale, b.scale)


@pytest.mark.parametrize("kind", KINDS)
def test_version_1_file_without_checksum_loads(kind, saved, data, tmp_path):
    det, path = saved(kind)

    def to_version_1(payload):
        payload["format_version"] = 1
        del payload["checksum"]
        payload["fitted"].pop("input_stats", None)  # version 1 predates it

    back = genad_fast.load(_edit(path, tmp_path / "v1.pt", to_version_1))
    assert back.input_stats_ is None
    np.testing.assert_array_equal(back.decision_function(data[1]), det.decision_function(data[1]))


def test_version_1_file_is_still_checked(saved, tmp_path):
    _, path = saved("kde")

    def nan_threshold_v1(payload):
        payload["format_version"] = 1
        del payload["checksum"]
        payload["fitted"]["threshold_"] = math.nan

    _load_fails(_edit(path, tmp_path / "v1.pt", nan_threshold_v1), r"fitted\['threshold_'\] must be finite")


# ------------------------------------------------------------------ checksum
def test_checksum_covers_dtype_shape_and_structure_not_key_order():
    base = {"a": torch.arange(6.0).reshape(2, 3), "b": [1, "x", None], "c": 0.5}
    same = {"c": 0.5, "b": [1, "x", None], "a": torch.arange(6.0).reshape(2, 3)}
    assert payload_checksum(base) == payload_checksum(same) == payload_checksum({**base, "checksum": "old"})
    variants = [
        {**base, "a": torch.arange(6.0).reshape(3, 2)},                    # same bytes, another shape
        {**base, "a": torch.arange(6.0).reshape(2, 3).view(torch.int32)},  # same bytes, another dtype
        {**base, "a": torch.arange(6.0).reshape(2, 3).tolist()},           # a list of the same numbers
        {**base, "b": (1, "x", None)},                                     # a tuple instead of a list
        {**base, "c": 0.5000000000000001},                                 # one ulp
        {**base, "c": "0.5"},                                              # another type
    ]
    digests = {payload_checksum(v) for v in variants}
    assert len(digests) == len(variants) and payload_checksum(base) not in digests


@pytest.mark.parametrize("kind", KINDS)
def test_flipped_bit_in_a_state_tensor(kind, saved, tmp_path):
    _, path = saved(kind)
    key, tensor = _largest_state_tensor(torch.load(path, weights_only=True))
    raw = path.read_bytes()
    at = raw.find(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    assert at >= 0, f"the bytes of {_key_path(key)} are not stored as one run"
    damaged = bytearray(raw)
    damaged[at] ^= 1  # lowest mantissa bit of the first element: a finite, plausible value
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(damaged))
    _, changed = _largest_state_tensor(torch.load(bad, weights_only=True))  # torch itself notices nothing
    assert torch.isfinite(changed).all() and not torch.equal(changed, tensor)
    _load_fails(bad, "checksum mismatch.*changed or damaged after it was written")


def test_flipped_bit_in_the_training_scores(saved, tmp_path):
    _, path = saved("flow")
    scores = torch.load(path, weights_only=True)["fitted"]["decision_scores_"]
    raw = bytearray(path.read_bytes())
    at = bytes(raw).find(scores.numpy().tobytes())
    assert at >= 0
    raw[at + 7] ^= 0x40  # a float64's exponent bit: the first training score changes by orders of magnitude
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(raw))
    _load_fails(bad, "checksum mismatch")


def test_edited_field_without_a_new_checksum(saved, tmp_path):
    _, path = saved("kde")
    payload = torch.load(path, weights_only=True)
    payload["fitted"]["threshold_"] += 1.0  # plausible, finite: only the checksum can tell
    torch.save(payload, tmp_path / "edited.pt")
    _load_fails(tmp_path / "edited.pt", "checksum mismatch")


@pytest.mark.parametrize("checksum, problem", [
    (None, "lacks its checksum"),
    (12345, r"checksum must be a string 'sha256:<hex>', got a int \(12345\)"),
    ("md5:abc", "checksum must be a string 'sha256:<hex>'"),
])
def test_missing_or_malformed_checksum(saved, tmp_path, checksum, problem):
    _, path = saved("knn")
    payload = torch.load(path, weights_only=True)
    if checksum is None:
        del payload["checksum"]
    else:
        payload["checksum"] = checksum
    torch.save(payload, tmp_path / "m.pt")
    _load_fails(tmp_path / "m.pt", problem)


# ------------------------------------------------------------------ fitted fields
@pytest.mark.parametrize("field", sorted(WRONG_TYPE))
@pytest.mark.parametrize("kind", KINDS)
def test_fitted_field_of_wrong_type(kind, field, saved, tmp_path):
    _, path = saved(kind)
    bad = _edit(path, tmp_path / "m.pt", lambda p: p["fitted"].__setitem__(field, WRONG_TYPE[field]))
    _load_fails(bad, rf"fitted\['{field}'\] must be .*, got a {type(WRONG_TYPE[field]).__name__}")


@pytest.mark.parametrize("kind", KINDS)
def test_nan_threshold(kind, saved, tmp_path):
    _, path = saved(kind)
    bad = _edit(path, tmp_path / "m.pt", lambda p: p["fitted"].__setitem__("threshold_", math.nan))
    _load_fails(bad, r"fitted\['threshold_'\] must be finite, got nan")


def _nan_at(index):
    def change(t):
        t = t.clone()
        t.view(-1)[index] = math.nan
        return t
    return change


def _set_in(key, transform):
    """A payload change: ``fitted[key] = transform(fitted[key])``."""
    return lambda p: p["fitted"].__setitem__(key, transform(p["fitted"][key]))


BAD_VALUES = [
    ("inf threshold", _set_in("threshold_", lambda _: math.inf), r"fitted\['threshold_'\] must be finite, got inf"),
    ("NaN training score", _set_in("decision_scores_", _nan_at(3)),
     r"fitted\['decision_scores_'\] holds 1 NaN/inf value\(s\) \(the first at index 3\)"),
    ("2-D training scores", _set_in("decision_scores_", lambda s: s.reshape(-1, 1)),
     r"fitted\['decision_scores_'\] must have shape 1-D and non-empty"),
    ("empty training scores", _set_in("decision_scores_", lambda s: s[:0]), r"fitted\['decision_scores_'\] must have"),
    ("integer training scores", _set_in("decision_scores_", lambda s: s.long()),
     r"fitted\['decision_scores_'\] must be a floating tensor"),
    ("zero features", _set_in("n_features_in_", lambda _: 0), r"fitted\['n_features_in_'\] must be a positive int"),
    ("bool features", _set_in("n_features_in_", lambda _: True), r"fitted\['n_features_in_'\] must be a positive int"),
    ("features against names", _set_in("n_features_in_", lambda _: 4),
     r"fitted\['feature_names_in_'\] has 3 names for n_features_in_=4"),
    ("too few names", _set_in("feature_names_in_", lambda n: n[:2]), r"fitted\['feature_names_in_'\] has 2 names"),
    ("a name that is no str", _set_in("feature_names_in_", lambda n: [n[0], 1, n[2]]),
     r"fitted\['feature_names_in_'\] must be None or a list of str"),
    ("bool seed", _set_in("seed_", lambda _: False), r"fitted\['seed_'\] must be an int"),
    ("NaN normalizer mean", _set_in("normalizer", lambda n: {**n, "mean": _nan_at(1)(n["mean"])}),
     r"fitted\['normalizer'\]\['mean'\] holds 1 NaN/inf value\(s\) \(the first at index 1\)"),
    ("inf normalizer scale", _set_in("normalizer", lambda n: {**n, "scale": n["scale"] * math.inf}),
     r"fitted\['normalizer'\]\['scale'\] holds 3 NaN/inf"),
    ("zero normalizer scale", _set_in("normalizer", lambda n: {**n, "scale": n["scale"] * 0}),
     r"fitted\['normalizer'\]\['scale'\] must be > 0, got 0.0"),
    ("normalizer of another width", _set_in("normalizer", lambda n: {k: v[:2] for k, v in n.items()}),
     r"fitted\['normalizer'\]\['mean'\] must have shape \[3\], got \(2,\)"),
    ("normalizer without scale", _set_in("normalizer", lambda n: {"mean": n["mean"]}),
     r"fitted\['normalizer'\] must be None or a dict of 'mean' and 'scale'"),
    ("NaN input statistics", _set_in("input_stats", lambda _: {"mean": torch.full((3,), math.nan),
                                                               "scale": torch.ones(3)}),
     r"fitted\['input_stats'\]\['mean'\] holds 3 NaN/inf"),
    ("device name", _set_in("fitted_device", lambda _: "gpu:x"), r"fitted\['fitted_device'\] is not a device name"),
    ("missing field", lambda p: p["fitted"].pop("seed_"), r"fitted lacks the field 'seed_'"),
    ("unknown field", lambda p: p["fitted"].__setitem__("offset_", 1.0), r"fitted holds unknown field\(s\) offset_"),
]


@pytest.mark.parametrize("change, problem", [case[1:] for case in BAD_VALUES], ids=[case[0] for case in BAD_VALUES])
@pytest.mark.parametrize("kind", ["kde", "vae"])
def test_fitted_field_of_bad_value(kind, change, problem, saved, tmp_path):
    _, path = saved(kind)
    _load_fails(_edit(path, tmp_path / "m.pt", change), problem)


def test_input_statistics_are_restored(saved, tmp_path):
    _, path = saved("kde")
    stats = {"mean": torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), "scale": torch.full((3,), 2.0,
                                                                                         dtype=torch.float64)}
    back = genad_fast.load(_edit(path, tmp_path / "m.pt", _set_in("input_stats", lambda _: stats)))
    assert torch.equal(back.input_stats_.mean, stats["mean"]) and torch.equal(back.input_stats_.scale, stats["scale"])


# ------------------------------------------------------------------ state
@pytest.mark.parametrize("kind", KINDS)
def test_nan_in_the_state(kind, saved, tmp_path):
    """A NaN weight (networks) or reference row (kNN, KDE, ...) would make scores NaN: predict says all normal."""
    _, path = saved(kind)
    key, _ = _largest_state_tensor(torch.load(path, weights_only=True))

    def poison(payload):
        _, tensor = _largest_state_tensor(payload)
        tensor.view(-1)[0] = math.nan

    bad = _edit(path, tmp_path / "m.pt", poison)
    _load_fails(bad, re.escape(_key_path(key)) + r" \(a Tensor of dtype torch.float\d+ and shape .*\) holds NaN/inf")


def test_nan_float_in_the_state(saved, tmp_path):
    _, path = saved("flow")
    bad = _edit(path, tmp_path / "m.pt", lambda p: p["state"].__setitem__("train_nll_mean", math.nan))
    _load_fails(bad, r"state\['train_nll_mean'\] \(= nan\) holds NaN/inf values")


@pytest.mark.parametrize("kind", ["anogan", "autoencoder", "deep_svdd", "diffusion", "fanogan", "flow", "vae"])
def test_state_that_does_not_fit_the_network(kind, saved, tmp_path):
    _, path = saved(kind)
    cls = type(saved(kind)[0]).__name__

    def reshape(payload):
        key, tensor = _largest_state_tensor(payload)
        node = payload["state"]
        for k in key[:-1]:
            node = node[k]
        node[key[-1]] = torch.zeros(tensor.numel() + 1)

    _load_fails(_edit(path, tmp_path / "m.pt", reshape), f"cannot restore the {cls}: RuntimeError")


# ------------------------------------------------------------------ header and params
@pytest.mark.parametrize("key, value, problem", [
    ("class", 5, r"'class' must be a string 'module:QualName', got a int \(5\)"),
    ("class", "genad_fast.detectors.kde.KDEDetector", r"'class' must be a string 'module:QualName'"),
    ("detector", 5, r"'detector' must be a registry name \(str\) or None, got a int"),
    ("params", [1], r"'params' must be a dict, got a list"),
    ("fitted", None, r"'fitted' must be a dict, got a NoneType"),
    ("state", "weights", r"'state' must be a dict, got a str"),
])
def test_header_field_of_wrong_type(key, value, problem, saved, tmp_path):
    _, path = saved("kde")
    _load_fails(_edit(path, tmp_path / "m.pt", lambda p: p.__setitem__(key, value)), problem)


def test_params_with_an_int_key(saved, tmp_path):
    _, path = saved("kde")
    _load_fails(_edit(path, tmp_path / "m.pt", lambda p: p["params"].__setitem__(3, 1)),
                r"'params' must have str keys, got 3")


@pytest.mark.parametrize("kind", KINDS)
def test_unknown_and_bad_parameters(kind, saved, tmp_path):
    _, path = saved(kind)
    cls = type(saved(kind)[0]).__name__
    _load_fails(_edit(path, tmp_path / "a.pt", lambda p: p["params"].__setitem__("bogus", 1)),
                rf"unknown parameter\(s\) 'bogus' for {cls}")
    _load_fails(_edit(path, tmp_path / "b.pt", lambda p: p["params"].__setitem__("window", "16")),
                rf"parameters do not fit {cls}: window must be an int")
    _load_fails(_edit(path, tmp_path / "c.pt", lambda p: p["params"].__setitem__("contamination", math.nan)),
                rf"parameters do not fit {cls}: contamination must be a number in \(0, 0.5\]")


def test_detector_parameter_checked_on_load(saved, tmp_path):
    _, path = saved("flow")
    _load_fails(_edit(path, tmp_path / "m.pt", lambda p: p["params"].__setitem__("hidden", 0)),
                "parameters do not fit FlowDetector: hidden must be")


# ------------------------------------------------------------------ whole-file damage
@pytest.mark.parametrize("kind", KINDS)
def test_damaged_and_foreign_files(kind, saved, tmp_path):
    _, path = saved(kind)
    raw = path.read_bytes()
    bad = tmp_path / "m.pt"
    bad.write_bytes(raw[: len(raw) * 2 // 3])
    _load_fails(bad, "truncated, corrupt or not a model file")
    bad.write_bytes(b"\x00" * 64 + raw[64:])  # the zip directory is intact, the first record is not
    _load_fails(bad, "corrupt or not a torch file")
    bad.write_bytes(b"genad_fast model, honest")
    _load_fails(bad, "truncated, corrupt or not a model file")
    _load_fails(_edit(path, bad, lambda p: p.__setitem__("format", "genad_fast.detektor")),
                "is not a genad_fast model file")
    _load_fails(_edit(path, bad, lambda p: p.__setitem__("format_version", FORMAT_VERSION + 1)),
                rf"format version {FORMAT_VERSION + 1} .*upgrade genad_fast")


# ---- a state complete in form but not in substance: caught by the probe at load -------------------------
@pytest.mark.parametrize("kind", ["kde", "knn", "pca", "iforest", "ocsvm", "lof"])
def test_a_state_with_a_missing_key_fails_at_load_not_at_scoring(saved, tmp_path, kind):
    _, path = saved(kind)
    payload = torch.load(path, weights_only=True)
    key = max(payload["state"], key=lambda k: payload["state"][k].numel()
              if isinstance(payload["state"][k], torch.Tensor) else 0)
    bad = _edit(path, tmp_path / "missing.pt", lambda p: p["state"].pop(key))
    _load_fails(bad, "cannot")


@pytest.mark.parametrize("kind", ["kde", "knn"])
def test_a_reference_set_of_the_wrong_width_fails_at_load(saved, tmp_path, kind):
    _, path = saved(kind)

    def widen(p):
        ref = p["state"]["reference"]
        p["state"]["reference"] = torch.cat([ref, ref[:, :1]], dim=1)

    _load_fails(_edit(path, tmp_path / "wide.pt", widen), "cannot score")
