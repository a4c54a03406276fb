"""Constructor parameters declared once: a :class:`Param` spec per parameter (kind, range, choices, doc) from
which the checks, the docs' Parameters section and the scikit-learn parameter API follow.

scikit-learn's estimator rules hold (detectors and threshold rules alike): ``__init__`` names every
parameter with its default and only stores the arguments; the signature is the list of parameters, which
``get_params``, ``set_params``, ``clone`` and ``repr`` read. A class lists its specs in ``_param_specs``
(a mixin's specs count for the classes that inherit it; the first spec of a name along the MRO wins), and
:class:`Parametrized` then

- checks at class creation that every parameter of the signature has a spec, and every own spec a parameter
  (a parameter cannot be added without its rule and its doc);
- writes the class docstring's Parameters section from the specs and the signature's defaults;
- checks the values in :meth:`Parametrized._check_params` with one message per rule:
  ``"<name> must be <rule>, got <value>"``, the rule as the docs state it.

A class that declares no specs (a user's detector) keeps the API; its own parameters are then its own
business. The shared machinery lives here, below both :mod:`genad_fast.thresholds` and
:mod:`genad_fast.detectors`, which both use it.
"""
from __future__ import annotations

import dataclasses
import inspect
import numbers
import textwrap
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np

__all__ = ["Param", "Parametrized", "odd"]

KINDS = ("int", "number", "bool", "choice", "widths", "any")


@dataclasses.dataclass(frozen=True)
class Param:
    """The rule and doc of one constructor parameter.

    ``kind``: ``"int"`` (an integral number, not a bool), ``"number"`` (a real number, not a bool; NaN never
    passes a bound), ``"bool"``, ``"choice"`` (one of ``choices``), ``"widths"`` (None or a non-empty sequence
    of positive ints: layer widths), ``"any"`` (no rule of its own: ``check`` or another library checks it).
    ``low``/``high`` bound ints and numbers (``*_open``: strict); an int or a number may also be one of
    ``choices`` (e.g. a bandwidth rule's name, ``window="auto"``). ``allow_none``: None passes.
    ``check(name, value)``: a further rule the kind cannot say, raising ValueError (run on values that passed
    the kind). ``scoring``: read when scoring too, so checked again before every scoring call (``set_params``
    may change it after fit). ``type_doc`` replaces the type the docs derive from the rule.
    """

    name: str
    kind: str
    doc: str = ""
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    allow_none: bool = False
    finite: bool = False
    check: Callable[[str, Any], None] | None = None
    scoring: bool = False
    type_doc: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"Param {self.name!r}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")

    def but(self, **changes: Any) -> "Param":
        """This spec with some fields changed (a detector's own doc or default range for a shared parameter)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ the rule, in words
    def _bounds(self) -> str:
        lo, hi = self.low, self.high
        if hi is None:
            return f"{'>' if self.low_open else '>='} {lo:g}" if lo is not None else ""
        if lo is None:
            return f"{'<' if self.high_open else '<='} {hi:g}"
        return f"in {'(' if self.low_open else '['}{lo:g}, {hi:g}{')' if self.high_open else ']'}"

    def rule(self) -> str:
        """What a valid value is, as the error message says it: ``an int >= 1 or None``."""
        names = ", ".join(str(c) for c in self.choices)
        if self.kind == "widths":
            return "None or a non-empty sequence of positive ints"
        if self.kind == "bool":
            text = "True or False"
        elif self.kind == "choice":
            text = f"one of {names}"
        elif self.kind in ("int", "number"):
            text = ("an int" if self.kind == "int" else "a finite number" if self.finite else "a number")
            text += f" {self._bounds()}" if self._bounds() else ""
            text += f" or one of {names}" if self.choices else ""
        else:
            text = self.type_doc or "any value"
        return text + (" or None" if self.allow_none else "")

    def type_text(self) -> str:
        """The type the docs show: ``int >= 1 or None``, ``"mean", "max" or "min"``, ``bool``."""
        if self.type_doc is not None:
            return self.type_doc
        quoted = [f'"{c}"' if isinstance(c, str) else repr(c) for c in self.choices]
        alternatives = ", ".join(quoted[:-1]) + f" or {quoted[-1]}" if len(quoted) > 1 else "".join(quoted)
        none = " or None" if self.allow_none else ""
        if self.kind == "widths":
            return "tuple of int or None"
        if self.kind == "bool":
            return "bool" + none
        if self.kind == "choice":
            return alternatives + none
        if self.kind in ("int", "number"):
            text = ("int" if self.kind == "int" else "float") + (f" {self._bounds()}" if self._bounds() else "")
            return (f"{alternatives} or {text}" if self.choices else text) + none
        return "object" + none

    # ------------------------------------------------------------------ the check
    def passes(self, value: Any) -> bool:
        """Whether ``value`` passes the kind, bounds and choices (``check`` aside)."""
        if value is None and self.allow_none:
            return True
        if self.kind == "widths":
            return value is None or (not isinstance(value, (str, bytes)) and hasattr(value, "__iter__")
                                     and len(tuple(value)) > 0 and all(_is_int(w) and w >= 1 for w in value))
        if self.kind == "bool":
            return isinstance(value, (bool, np.bool_))
        if self.kind in ("choice", "number", "int") and any(_same(value, c) for c in self.choices):
            return True
        if self.kind in ("int", "number"):
            if not (_is_int(value) if self.kind == "int" else _is_real(value)):
                return False
            v = float(value)
            if self.finite and not np.isfinite(v):
                return False
            lo_ok = self.low is None or (v > self.low if self.low_open else v >= self.low)
            hi_ok = self.high is None or (v < self.high if self.high_open else v <= self.high)
            return lo_ok and hi_ok
        return self.kind == "any"

    def validate(self, value: Any) -> None:
        """ValueError ``"<name> must be <rule>, got <value>"`` unless ``value`` passes; then ``check``, if any."""
        if not self.passes(value):
            raise ValueError(f"{self.name} must be {self.rule()}, got {value!r}")
        if self.check is not None and value is not None:
            self.check(self.name, value)


def _is_int(v: Any) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, (bool, np.bool_))


def _is_real(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


def _same(value: Any, choice: Any) -> bool:
    return value is choice or (isinstance(value, type(choice)) and not isinstance(value, np.ndarray)
                               and bool(value == choice))


def odd(name: str, value: int) -> None:
    """A ``check`` for kernel lengths: a 'same' convolution keeps the length only with an odd kernel."""
    if value % 2 == 0:
        raise ValueError(f"{name} must be odd (a 'same' convolution keeps the window length), got {value}")


# ---------------------------------------------------------------------------------------------- the API
class Parametrized:
    """``get_params``/``set_params``/``repr`` from the ``__init__`` signature, checks and docs from ``_param_specs``
    (see the module docstring). A subclass whose ``__init__`` forwards ``**kwargs`` also has the parameters of
    the next ``__init__`` up the MRO (scikit-learn requires explicit signatures; genad_fast's detectors forward
    the shared ones)."""

    #: This class's specs (mixins may declare some too); see :class:`Param`.
    _param_specs: ClassVar[tuple[Param, ...]] = ()
    #: repr shows only the parameters that differ from their defaults (scikit-learn's print_changed_only).
    _repr_changed_only: ClassVar[bool] = True
    #: What the generated docs call the parameters a ``**kwargs`` forwards.
    _shared_params_doc: ClassVar[str] = "The parameters of {parent}"

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[str, Param] = {}
        for klass in cls.__mro__:  # the first spec of a name along the MRO wins
            for spec in klass.__dict__.get("_param_specs", ()):
                table.setdefault(spec.name, spec)
        names = cls._param_defaults()
        cls._spec_table = {n: s for n, s in table.items() if n in names}
        if "_param_specs" in cls.__dict__:  # a class that declares its parameters: complete, and documented
            missing = [n for n in names if n not in table]
            stray = [s.name for s in cls.__dict__["_param_specs"] if s.name not in names]
            if missing or stray:
                raise TypeError(f"{cls.__name__}: parameters without a Param spec: {missing}; specs of no "
                                f"parameter of __init__: {stray}")
            cls.__doc__ = _with_parameters_doc(cls)

    # ------------------------------------------------------------------ names and defaults
    @classmethod
    def _init_signature_params(cls) -> tuple[list[inspect.Parameter], bool]:
        params, var_kw = [], False
        init = next((k.__dict__["__init__"] for k in cls.__mro__[:cls.__mro__.index(Parametrized)]
                     if "__init__" in k.__dict__), None)
        if init is None:  # no __init__ below Parametrized: no parameters
            return params, var_kw
        for p in inspect.signature(init).parameters.values():
            if p.name == "self":
                continue
            if p.kind == p.VAR_POSITIONAL:
                raise TypeError(f"{cls.__name__}.__init__ takes *{p.name}; estimators must name their "
                                f"parameters (scikit-learn convention)")
            if p.kind == p.VAR_KEYWORD:
                var_kw = True
                continue
            params.append(p)
        return params, var_kw

    @classmethod
    def _param_defaults(cls) -> dict[str, Any]:
        """Every parameter name with its default: the class's own __init__, plus the parents' when it forwards
        ``**kwargs``."""
        out: dict[str, Any] = {}
        for klass in cls.__mro__:
            if not (isinstance(klass, type) and issubclass(klass, Parametrized)) or klass is Parametrized:
                continue
            if klass is not cls and "__init__" not in klass.__dict__:
                continue
            params, var_kw = klass._init_signature_params()
            for p in params:
                out.setdefault(p.name, p.default)
            if not var_kw:
                break
        return out

    @classmethod
    def _get_param_names(cls) -> list[str]:
        return sorted(cls._param_defaults())

    @classmethod
    def param_spec(cls, name: str) -> Param | None:
        """The spec of parameter ``name`` (None for a parameter the class declares none for)."""
        return cls._spec_table.get(name)

    # ------------------------------------------------------------------ scikit-learn's parameter API
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Constructor parameters, as ``sklearn.base.BaseEstimator.get_params`` (``deep``: nested ones too)."""
        out: dict[str, Any] = {}
        for key in self._get_param_names():
            value = getattr(self, key)
            if deep and hasattr(value, "get_params") and not isinstance(value, type):
                out.update((f"{key}__{k}", v) for k, v in value.get_params().items())
            out[key] = value
        return out

    def _canonical_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` as ``set_params`` applies them (a subclass maps renamed parameters here)."""
        return params

    def set_params(self, **params: Any):
        """Set constructor parameters (``nested__param`` for nested estimators); returns self."""
        if not params:
            return self
        params = self._canonical_params(params)
        valid = self.get_params(deep=True)
        nested: dict[str, dict[str, Any]] = {}
        for key, value in params.items():
            key, delim, sub = key.partition("__")
            if key not in valid:
                raise ValueError(f"invalid parameter {key!r} for {type(self).__name__}; valid parameters: "
                                 f"{', '.join(self._get_param_names())}")
            if delim:
                nested.setdefault(key, {})[sub] = value
            else:
                setattr(self, key, value)
                valid[key] = value
        for key, sub_params in nested.items():
            valid[key].set_params(**sub_params)
        return self

    def __repr__(self) -> str:
        defaults = self._param_defaults()
        shown = []
        for key in self._get_param_names() if self._repr_changed_only else defaults:
            value = getattr(self, key, None)
            default = defaults.get(key, inspect.Parameter.empty)
            try:
                same = value is default or (type(value) is type(default) and bool(value == default))
            except Exception:  # arrays and the like: show them
                same = False
            if not (same and self._repr_changed_only):
                shown.append(f"{key}={value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    # ------------------------------------------------------------------ checks
    def _check_params(self, scoring: bool = False) -> None:
        """Check every parameter against its spec (``scoring=True``: those read at scoring); a subclass adds
        rules between parameters after ``super()._check_params(scoring)``."""
        for spec in self._spec_table.values():
            if spec.scoring or not scoring:
                spec.validate(getattr(self, spec.name))


def _with_parameters_doc(cls: type) -> str:
    """``cls.__doc__`` with a numpydoc Parameters section written from its specs and defaults, inserted under its
    ``Parameters`` heading (appended with one if it has none)."""
    doc = cls.__dict__.get("__doc__") or ""
    params, var_kw = cls._init_signature_params()
    entries = []
    for p in params:
        spec = cls._spec_table[p.name]
        default = f'"{p.default}"' if isinstance(p.default, str) else repr(p.default)
        entries.append((f"{p.name} : {spec.type_text()}, default {default}", spec.doc))
    if var_kw:
        parent = next(k for k in cls.__mro__[1:] if "__init__" in k.__dict__ and issubclass(k, Parametrized))
        shared = [n for n in parent._param_defaults() if n not in {p.name for p in params}]
        entries.append(("**kwargs", cls._shared_params_doc.format(parent=parent.__name__) + ": "
                        + ", ".join(shared) + "."))
    lines = doc.splitlines()
    heading = next((i for i in range(len(lines) - 1) if lines[i].strip() == "Parameters"
                    and set(lines[i + 1].strip()) == {"-"}), None)
    if heading is None:
        indent = "    " if len(lines) > 1 and lines[1].startswith("    ") else ""
        lines += ["", f"{indent}Parameters", f"{indent}----------"]
        heading = len(lines) - 2
    indent = lines[heading][: len(lines[heading]) - len(lines[heading].lstrip())]
    body = []
    for head, text in entries:
        body.append(indent + head)
        for para in text.split("\n\n") if text else []:
            body += textwrap.wrap(" ".join(para.split()), width=100, initial_indent=indent + "    ",
                                  subsequent_indent=indent + "    ", break_on_hyphens=False)
    return "\n".join(lines[:heading + 2] + body + lines[heading + 2:])
