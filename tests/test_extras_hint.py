"""genad_fast._extras: the install hint for an optional extra (issue #16, point 4).

genad_fast is not on a package index, so no message may say ``pip install genad-fast[...]``; every hint names the
extra's real PyPI packages and the clone form. The table must match pyproject.toml's optional dependencies.
"""
from __future__ import annotations

import pathlib
import tomllib

import pytest

from genad_fast._extras import EXTRAS, install_hint

ROOT = pathlib.Path(__file__).resolve().parents[1]
UNPUBLISHED = "genad-fast" + "["  # split so that this file does not match a grep for it


def _pyproject_extras() -> dict[str, list[str]]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return tomllib.load(fh)["project"]["optional-dependencies"]


def test_every_pyproject_extra_has_a_hint_and_vice_versa():
    declared = _pyproject_extras()
    assert set(EXTRAS) == set(declared)
    for extra, requirements in declared.items():
        assert list(EXTRAS[extra]) == requirements, extra


@pytest.mark.parametrize("extra", sorted(EXTRAS))
def test_the_hint_names_the_real_packages_and_the_clone_form(extra):
    hint = install_hint(extra)
    assert hint.startswith("pip install ")
    for requirement in EXTRAS[extra]:
        assert f"'{requirement}'" in hint
    assert hint.endswith(f"pip install --no-build-isolation -e '.[{extra}]'")
    assert UNPUBLISHED not in hint


def test_the_ray_hint_exactly():
    assert install_hint("ray") == ("pip install 'ray>=2.9'; or, from a clone of genad_fast: "
                                   "pip install --no-build-isolation -e '.[ray]'")


def test_an_unknown_extra_is_rejected():
    with pytest.raises(ValueError, match="unknown extra 'spark'; known extras: triton, plot"):
        install_hint("spark")


def test_no_module_names_the_unpublished_package():
    offenders = [str(p.relative_to(ROOT)) for p in sorted((ROOT / "genad_fast").rglob("*.py"))
                 if UNPUBLISHED in p.read_text(encoding="utf-8")]
    assert offenders == []
