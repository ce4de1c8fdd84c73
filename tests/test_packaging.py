"""Dependency pins that protect users (PySide6 6.12.0 crashes CPython 3.11), and the
distribution's name: looptools-health ("looptools" on PyPI is another project)."""

from __future__ import annotations

import re
import sys
from importlib import metadata

import pytest
from helpers import ROOT
from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

import looptools

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


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_distribution_is_looptools_health_and_never_pypis_looptools() -> None:
    project = _project()
    assert project["name"] == "looptools-health"
    # A `looptools[...]` requirement would install PyPI's unrelated "looptools".
    for extra, requirements in project["optional-dependencies"].items():
        for requirement in map(Requirement, requirements):
            assert canonicalize_name(requirement.name) != "looptools", (
                f"extra {extra!r} requires {requirement}: that is PyPI's other looptools")
    # The command and the pytest plugin keep the name users type.
    assert project["scripts"] == {"looptools": "looptools.cli:main"}
    assert project["entry-points"]["pytest11"] == {"looptools": "looptools.pytest_plugin"}
    assert project["license"] == "MIT" and "LICENSE" in project["license-files"]
    assert "MIT License" in (ROOT / "LICENSE").read_text()


def test_nothing_tells_users_to_pip_install_pypis_looptools() -> None:
    command = re.compile(r"pip3? install ([^\n`&;|#]*)")
    files = [ROOT / "README.md", *(ROOT / "docs").glob("*.md"),
             *(ROOT / "looptools").rglob("*.py")]
    found = []
    for path in files:
        for m in command.finditer(path.read_text(encoding="utf-8")):
            for word in m.group(1).replace('"', " ").replace("'", " ").split():
                name = re.match(r"[A-Za-z0-9._-]+", word)
                if not word.startswith("-") and name and \
                        canonicalize_name(name.group(0)) == "looptools":
                    found.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
    assert not found, "\n".join(found)


def test_installed_under_its_name() -> None:
    try:
        version = metadata.version("looptools-health")
    except metadata.PackageNotFoundError:
        pytest.skip("this environment installed the checkout before it was renamed "
                    "looptools-health: pip install -e . again")
    assert version == looptools.__version__


# -- what a fresh install meets first ------------------------------------------------

def test_bare_looptools_prints_help_and_succeeds() -> None:
    from click.testing import CliRunner

    from looptools.cli import cli

    result = CliRunner().invoke(cli, [], prog_name="looptools")
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage: looptools") and "profile" in result.output


def test_profilers_help_does_not_start_a_benchmark() -> None:
    import subprocess

    done = subprocess.run([sys.executable, "-m", "looptools.profilers", "--help"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: python -m looptools.profilers")
    bad = subprocess.run([sys.executable, "-m", "looptools.profilers", "asyncoi"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "unknown loop kind 'asyncoi'" in bad.stderr


@pytest.mark.parametrize(("shell", "marker"), [("bash", "complete -o"), ("zsh", "compdef"),
                                               ("fish", "complete --no-files")])
def test_shell_completion_scripts_as_the_readme_says(shell: str, marker: str) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "_LOOPTOOLS_COMPLETE": f"{shell}_source"}
    done = subprocess.run([sys.executable, "-m", "looptools"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and marker in done.stdout, (done.stdout[:300], done.stderr)
    assert "_LOOPTOOLS_COMPLETE=bash_source looptools" in (ROOT / "README.md").read_text()
