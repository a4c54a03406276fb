"""Parameters declared once (genad_fast._params): the rules and their messages, the class-creation check, the
generated docs, and every registered detector's parameters checked through its specs."""
from __future__ import annotations

import math

import numpy as np
import pytest

from genad_fast._params import Param, Parametrized, odd
from genad_fast.detectors import BaseDetector, detector_names, get_detector
from genad_fast.thresholds import DSPOTThreshold, POTThreshold


# ---------------------------------------------------------------------------------------------- one rule
@pytest.mark.parametrize("spec, good, bad, message", [
    (Param("k", "int", low=1), [1, 7, np.int64(3)], [0, 2.0, True, None, "1"], "k must be an int >= 1, got "),
    (Param("w", "int", low=1, allow_none=True), [None, 4], [0, 1.5], "w must be an int >= 1 or None, got "),
    (Param("n", "int", low=1, high=10), [1, 10], [0, 11], r"n must be an int in [1, 10], got "),
    (Param("c", "number", low=0.0, high=0.5, low_open=True), [0.1, 0.5, np.float32(0.25)],
     [0.0, 0.7, 1, math.nan, False], "c must be a number in (0, 0.5], got "),
    (Param("lr", "number", low=0.0, low_open=True), [1e-9, math.inf], [0.0, -1.0, "x"], "lr must be a number > 0"),
    (Param("f", "number", low=0.0, high=1.0, high_open=True), [0.0, 0.99], [1.0], "f must be a number in [0, 1)"),
    (Param("h", "number", low=0.0, low_open=True, finite=True, choices=("scott", "silverman")),
     ["scott", 0.5], ["median", math.inf, 0.0, None, True], "h must be a finite number > 0 or one of scott, silverman"),
    (Param("b", "bool"), [True, False, np.bool_(True)], [1, 0, None, "yes"], "b must be True or False, got "),
    (Param("r", "choice", choices=("mean", "max")), ["mean", "max"], ["median", None, 1, ["mean"]],
     "r must be one of mean, max, got "),
    (Param("hidden", "widths", allow_none=True), [None, (8,), [4, 2]], [(), (0,), (2.5,), "16", (True,)],
     "hidden must be None or a non-empty sequence of positive ints, got "),
    (Param("k", "int", low=1, check=odd), [1, 5], [4], "k must be odd"),
])
def test_rule_and_message(spec, good, bad, message):
    for value in good:
        spec.validate(value)
    for value in bad:
        with pytest.raises(ValueError) as info:
            spec.validate(value)
        assert str(info.value).startswith(message), str(info.value)


def test_the_docs_state_the_rule():
    assert Param("w", "int", low=1, allow_none=True).type_text() == "int >= 1 or None"
    assert Param("c", "number", low=0.0, high=0.5, low_open=True).type_text() == "float in (0, 0.5]"
    assert Param("r", "choice", choices=("mean", "max", "min")).type_text() == '"mean", "max" or "min"'
    assert Param("h", "number", low=0.0, low_open=True, choices=("scott",)).type_text() == '"scott" or float > 0'
    assert Param("d", "any", type_doc="str").type_text() == "str"
    with pytest.raises(ValueError, match="kind must be one of"):
        Param("x", "float")


# ---------------------------------------------------------------------------------------------- a class
class _Base(Parametrized):
    _param_specs = (Param("a", "int", "The a.", low=0), Param("r", "choice", "The r.", choices=("x", "y"),
                                                                scoring=True))

    def __init__(self, a: int = 1, r: str = "x"):
        self.a = a
        self.r = r


class _Child(_Base):
    """A child.

    Parameters
    ----------

    Notes after the parameters.
    """

    _param_specs = (Param("b", "number", "The b.", low=0.0),)

    def __init__(self, b: float = 0.5, **kwargs):
        super().__init__(**kwargs)
        self.b = b


def test_params_from_the_signature_along_the_mro():
    c = _Child(b=2.0, a=3)
    assert c.get_params() == {"a": 3, "b": 2.0, "r": "x"}
    assert repr(c) == "_Child(a=3, b=2.0)"
    assert c.set_params(r="y") is c and c.r == "y"
    with pytest.raises(ValueError, match="invalid parameter 'z' for _Child"):
        c.set_params(z=1)
    assert _Child.param_spec("a").doc == "The a." and _Child.param_spec("nope") is None


def test_checks_all_at_fit_and_the_scoring_ones_at_scoring():
    c = _Child(a=-1, r="z")
    with pytest.raises(ValueError, match="a must be an int >= 0, got -1"):
        c._check_params()
    with pytest.raises(ValueError, match="r must be one of x, y, got 'z'"):
        c._check_params(scoring=True)  # a is read at fit only
    _Child(a=-1)._check_params(scoring=True)


def test_generated_parameters_section():
    doc = _Child.__doc__
    assert "    b : float >= 0, default 0.5\n        The b.\n" in doc
    assert "**kwargs\n        The parameters of _Base: a, r." in doc
    assert doc.index("The b.") < doc.index("Notes after the parameters.")
    assert "a : int >= 0, default 1" in _Base.__doc__


def test_a_parameter_without_its_spec_is_an_error_at_class_creation():
    with pytest.raises(TypeError, match=r"parameters without a Param spec: \['c'\]"):
        class _Missing(_Base):
            _param_specs = ()

            def __init__(self, c=1, **kwargs):
                super().__init__(**kwargs)
                self.c = c
    with pytest.raises(TypeError, match=r"specs of no parameter of __init__: \['d'\]"):
        class _Stray(_Base):
            _param_specs = (Param("d", "int"),)


def test_a_class_without_specs_keeps_the_api():
    class _Plain(_Base):
        def __init__(self, free=None, **kwargs):
            super().__init__(**kwargs)
            self.free = free

    p = _Plain(free=object())
    assert set(p.get_params()) == {"a", "r", "free"}
    p._check_params()  # its own parameter has no rule here


def test_thresholds_use_the_same_machinery():
    assert repr(POTThreshold()) == "POTThreshold(q=0.0001, level=0.98)"  # threshold rules show every parameter
    assert DSPOTThreshold.param_spec("q") is POTThreshold.param_spec("q")
    assert "depth : int >= 1, default 10" in DSPOTThreshold.__doc__
    with pytest.raises(ValueError, match=r"level must be a number in \(0, 1\), got 1.5"):
        POTThreshold(level=1.5).fit(np.arange(100.0))


# ---------------------------------------------------------------------------------------------- every detector
DETECTORS = [get_detector(name) for name in detector_names()]


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.__name__)
def test_every_detector_declares_and_documents_every_parameter(cls):
    names = set(cls._get_param_names())
    assert set(cls._spec_table) == names
    own, _ = cls._init_signature_params()
    for p in own:
        assert f"    {p.name} : " in cls.__doc__, p.name
    for name in names:
        assert cls.param_spec(name).doc, name
    cls()._check_params()  # the defaults pass their own rules


def _bad_value(spec: Param):
    if spec.kind == "int":
        return spec.low - 1 if spec.low is not None else 0.5
    if spec.kind == "number":
        return spec.low - 1.0 if spec.low is not None else "x"
    return {"bool": "yes", "choice": "nope", "widths": (0,)}.get(spec.kind)


@pytest.mark.parametrize("cls", DETECTORS, ids=lambda c: c.__name__)
def test_every_rule_rejects_with_the_uniform_message(cls):
    for name, spec in cls._spec_table.items():
        bad = _bad_value(spec)
        if bad is None:
            continue  # "any": checked by a function or by scikit-learn
        det = cls(**{name: bad})
        with pytest.raises(ValueError, match=f"^{name} must be "):
            det._check_params()


def test_base_detector_documents_the_shared_parameters():
    for name in BaseDetector._get_param_names():
        assert f"    {name} : " in BaseDetector.__doc__
