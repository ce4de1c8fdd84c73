"""Dependency pins that protect users: PySide6 6.12.0 crashes CPython 3.11."""

from __future__ import annotations

import sys
from importlib import metadata

from helpers import ROOT
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.version import Version

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _qt_requirements() -> list[Requirement]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [Requirement(r) for r in data["project"]["optional-dependencies"]["qt"]]


def _allowed(version: str, python: str) -> bool:
    env = {"python_version": python}
    applicable = [r for r in _qt_requirements() if r.name.lower().startswith("pyside6")
                  and (r.marker is None or r.marker.evaluate(env))]
    assert applicable, f"no PySide6 requirement applies on Python {python}"
    return all(r.specifier.contains(version) for r in applicable)


def test_pyside6_612_is_never_allowed_on_311() -> None:
    assert not _allowed("6.12.0", "3.11")
    assert not _allowed("6.12.1", "3.11")
    assert _allowed("6.11.3", "3.11")
    assert _allowed("6.12.0", "3.12")


def test_installed_pyside6_is_not_the_crashing_combination() -> None:
    version = Version(metadata.version("PySide6-Essentials"))
    if sys.version_info[:2] == (3, 11):
        assert version < Version("6.12"), f"PySide6 {version} crashes CPython 3.11"
    assert Marker("python_version < '3.12'").evaluate() == (sys.version_info < (3, 12))
