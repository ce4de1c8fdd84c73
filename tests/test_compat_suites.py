"""looptools leaves other projects' test suites unchanged.

qasync 0.25.0's (under each of PySide6, PyQt6 and PyQt5) and pytest-asyncio 1.5.0's own
suites, their sdists fetched from PyPI into the test cache at run time by
tests/compat/run_suites.py (never kept here), run plain, with ``LOOPTOOLS=1`` and with
``pytest --looptools``; any test whose outcome differs from the plain run fails its case
here, with the test ids and their failure text.  A case skips only when the package index
cannot be reached.  About 6 minutes in all, nearly all of it pytest-asyncio's suite
(~80 s a run); run them with ``pytest -m compat tests/test_compat_suites.py``.
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.compat


def _load_harness() -> Any:
    name = "run_suites"
    if name in sys.modules:
        return sys.modules[name]
    path = Path(__file__).resolve().parent / "compat" / "run_suites.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


rs = _load_harness()

CASES = [
    *[pytest.param("qasync", api, mode, id=f"qasync-{api}-{mode}")
      for api in rs.QT_APIS for mode in rs.MODES],
    *[pytest.param("pytest-asyncio", None, mode, id=f"pytest-asyncio-{mode}")
      for mode in rs.MODES],
]


@functools.cache
def _tree(suite: str) -> Any:
    try:
        return rs.prepare(rs.SUITES[suite], rs.default_cache())
    except rs.FetchError as exc:
        return exc


@functools.cache
def _plain(suite: str, qt_api: str | None) -> Any:
    return rs.run_suite(rs.SUITES[suite], _tree(suite), "plain", qt_api)


@pytest.mark.parametrize(("suite", "qt_api", "mode"), CASES)
def test_suite_outcomes_unchanged(suite: str, qt_api: str | None, mode: str) -> None:
    tree = _tree(suite)
    if isinstance(tree, rs.FetchError):
        if tree.unreachable:
            pytest.skip(" ".join(str(tree).split()))  # one line
        pytest.fail(f"{suite}: {tree}", pytrace=False)
    try:
        rs.check_installed(rs.SUITES[suite])
    except rs.FetchError as exc:
        pytest.fail(str(exc), pytrace=False)
    plain = _plain(suite, qt_api)
    label = rs._label(suite, qt_api)
    assert not plain.note, f"{label}: the plain run broke: {plain.note}\n{plain.stdout_tail}"
    assert plain.outcomes, f"{label}: the plain run ran no test\n{plain.stdout_tail}"

    monitored = rs.run_suite(rs.SUITES[suite], tree, mode, qt_api)
    diffs, _expected = rs.compare(plain, monitored)
    problem = rs.run_problem(plain, monitored)
    lines = []
    if problem:
        lines.append(problem)
    if diffs:
        lines.append(f"{len(diffs)} of {len(plain.outcomes)} tests differ from the plain run:")
        lines.extend(rs.describe_diffs(diffs))
    if lines:
        pytest.fail(f"{label}, {mode} ({monitored.seconds:.0f} s):\n" + "\n".join(lines),
                    pytrace=False)
