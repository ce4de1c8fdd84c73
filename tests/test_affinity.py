"""Thread-affinity violations, with real Qt, real threads and real loops.

``tests/apps/affinity_app.py``: a ``threading.Thread`` named "worker" starts a GUI-thread
``QTimer``, makes a child of a GUI-thread ``QObject`` (directly and through a subclass's
``__init__``), calls ``QLabel.setText`` and ``loop.call_soon``, three times each (``bad``),
or does the same through a queued signal and ``call_soon_threadsafe`` (``healthy``).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import ROOT, env, validate

APP = ROOT / "tests" / "apps" / "affinity_app.py"


def _line(marker: str) -> int:
    for number, line in enumerate(APP.read_text().splitlines(), 1):
        if f"# SITE: {marker}" in line:
            return number
    raise AssertionError(marker)


def _run(binding: str, kind: str, mode: str, tmp_path: Path, monitored: bool,
         **settings: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    report = tmp_path / f"{binding}-{kind}-{mode}-{int(monitored)}.json"
    extra = {"QT_API": binding}
    if monitored:
        extra.update(LOOPTOOLS="1", LOOPTOOLS_REPORT=str(report))
        extra.update({f"LOOPTOOLS_{k.upper()}": v for k, v in settings.items()})
    done = subprocess.run([sys.executable, str(APP), kind, mode], capture_output=True,
                          text=True, timeout=60, env=env(**extra), cwd=tmp_path)
    return done, (__import__("json").loads(report.read_text()) if report.exists() else None)


def _by_call(report: dict[str, Any]) -> dict[tuple[str, int], dict[str, Any]]:
    validate(report)
    rows = report["affinity"]["violations"]
    return {(row["call"], row["site"]["line"]): row for row in rows}


CASES = [("pyside6", "qt"), ("pyside6", "qasync"), ("pyside6", "qtasyncio"),
         ("pyqt6", "qt"), ("pyqt6", "qasync"), ("pyqt5", "qt")]


@pytest.mark.parametrize(("binding", "kind"), CASES)
def test_each_violation_is_reported_once_at_its_call_site(binding: str, kind: str,
                                                          tmp_path: Path) -> None:
    done, report = _run(binding, kind, "bad", tmp_path, True, thread_checks="1")
    assert done.returncode == 0, done.stderr
    assert report is not None
    rows = _by_call(report)
    timer = rows[("QObject::startTimer", _line("timer"))]
    # Named by the child and the parent (its class and objectName), not Qt's "QObject".
    child = rows[("QObject created as a child of Gui 'hub'", _line("child"))]
    # A subclass's super().__init__(parent): its class, at the line that made it.
    poller = rows[("Poller created as a child of Gui 'hub'", _line("subclass-child"))]
    label = rows[("QLabel.setText", _line("label"))]
    for row in (timer, child, poller, label):
        assert row["count"] == 3, row
        assert row["site"]["function"] == "worker"
        assert row["site"]["file"] == str(APP)
        assert row["calling_thread"]["name"] == "worker"
    assert timer["source"] == child["source"] == poller["source"] == "qt_warning"
    assert timer["message"] == "QObject::startTimer: Timers cannot be started from another thread"
    for row in (child, poller):
        assert row["object"] == {"class": "Gui", "object_name": "hub"}
        assert row["owner_thread"]["name"] == "MainThread"
        assert row["message"].startswith("QObject: Cannot create children for a parent")
    assert label["source"] == "widget_call"
    assert label["object"] == {"class": "QLabel", "object_name": "status"}
    assert label["owner_thread"]["name"] == "MainThread"
    assert label["owner_thread"]["ident"] != label["calling_thread"]["ident"]
    if kind != "qt":
        soon = rows[("loop.call_soon", _line("call_soon"))]
        assert soon["source"] == "asyncio" and soon["count"] == 3
        assert soon["owner_thread"]["name"] == "MainThread"
        assert soon["calling_thread"]["name"] == "worker"
    assert "thread-affinity violations:" in done.stderr


def test_asyncio_call_soon_from_a_worker(tmp_path: Path) -> None:
    done, report = _run("pyside6", "asyncio", "bad", tmp_path, True, thread_checks="1")
    assert done.returncode == 0, done.stderr
    assert report is not None
    rows = _by_call(report)
    assert list(rows) == [("loop.call_soon", _line("call_soon"))]
    row = rows[("loop.call_soon", _line("call_soon"))]
    assert row["count"] == 3 and row["calling_thread"]["name"] == "worker"
    assert row["owner_thread"]["name"] == "MainThread"
    assert "PySide6" not in done.stderr  # plain asyncio: no binding imported


def test_profile_thread_checks_reaches_the_app(tmp_path: Path) -> None:
    """``looptools profile --thread-checks``: the app runs with the dev mode on, and a
    worker's ``loop.call_soon`` is caught at its line; without the flag it is not."""
    def profile(*flags: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
        report = tmp_path / f"profile{len(flags)}.json"
        done = subprocess.run(
            [sys.executable, "-m", "looptools", "profile", "--no-dashboard", *flags,
             "--report", str(report), str(APP), "asyncio", "bad"],
            capture_output=True, text=True, timeout=120, cwd=tmp_path,
            env=env(QT_API="pyside6"))
        assert done.returncode == 0, done.stderr
        return done, __import__("json").loads(report.read_text())

    done, report = profile("--thread-checks")
    rows = _by_call(report)
    assert list(rows) == [("loop.call_soon", _line("call_soon"))]
    row = rows[("loop.call_soon", _line("call_soon"))]
    assert row["count"] == 3 and row["site"]["file"] == str(APP)
    assert row["calling_thread"]["name"] == "worker"
    assert row["owner_thread"]["name"] == "MainThread"
    assert report["meta"]["settings_sources"].get("thread_checks") == "environment"
    assert f"first loop.call_soon at worker ({APP.relative_to(ROOT)}:" \
        f"{_line('call_soon')}) from thread worker" in done.stderr.replace(f"{ROOT}/", "")
    assert "affinity_app: asyncio bad done" in done.stdout
    _, plain = profile()
    assert plain["affinity"]["violations"] == []
    assert plain["affinity"]["watched"]["asyncio_calls"] is False


def test_by_default_only_qt_warnings(tmp_path: Path) -> None:
    done, report = _run("pyside6", "qasync", "bad", tmp_path, True)
    assert done.returncode == 0, done.stderr
    assert report is not None
    assert {row["source"] for row in report["affinity"]["violations"]} == {"qt_warning"}
    assert report["affinity"]["watched"] == {"qt_messages": True, "asyncio_calls": False,
                                             "widget_calls": False}


@pytest.mark.parametrize(("binding", "kind"), [("pyside6", "qasync"), ("pyqt6", "qt")])
def test_healthy_mode_reports_nothing(binding: str, kind: str, tmp_path: Path) -> None:
    done, report = _run(binding, kind, "healthy", tmp_path, True, thread_checks="1")
    assert done.returncode == 0, done.stderr
    assert report is not None
    validate(report)
    assert report["affinity"]["violations"] == []
    assert "label: from worker" in done.stdout  # the work was done, on the GUI thread
    assert "thread-affinity" not in done.stderr


def _normal(text: str) -> str:
    return re.sub(r"0x[0-9a-fA-F]+", "0x?", text)


@pytest.mark.parametrize(("binding", "kind", "mode"),
                         [("pyside6", "qasync", "bad"), ("pyqt6", "qt", "bad"),
                          ("pyqt5", "qt", "own-handler"), ("pyside6", "qt", "own-handler")])
def test_output_and_exit_code_unchanged(binding: str, kind: str, mode: str,
                                        tmp_path: Path) -> None:
    plain, _ = _run(binding, kind, mode, tmp_path, False)
    assert "Timers cannot be started from another thread" in plain.stderr + plain.stdout
    for checks in ("0", "1"):
        watched, report = _run(binding, kind, mode, tmp_path, True, summary="0",
                               thread_checks=checks)
        assert report is not None and report["affinity"]["violations"]
        assert watched.returncode == plain.returncode == 0
        assert watched.stdout == plain.stdout  # own-handler: the app's handler saw all
        assert _normal(watched.stderr) == _normal(plain.stderr)


@pytest.mark.parametrize("binding", ["pyside6", "pyqt6"])
def test_message_handler_put_back_at_detach(binding: str, tmp_path: Path) -> None:
    alone, _ = _run(binding, "qasync", "own-handler", tmp_path, False)
    report = tmp_path / "restore.json"
    done = subprocess.run([sys.executable, str(APP), "qasync", "restore"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path,
                          env=env(QT_API=binding, AFFINITY_REPORT=str(report)))
    assert done.returncode == 0, done.stderr
    assert "RESTORED True" in done.stdout  # the app's handler is installed again
    # The app's handler got every message while looptools' was installed, and after.
    seen = [line for line in done.stdout.splitlines() if line.startswith("APP: ")]
    assert seen == [line for line in alone.stdout.splitlines() if line.startswith("APP: ")] \
        + ["APP: after detach"]
    recorded = __import__("json").loads(report.read_text())["affinity"]["violations"]
    assert {row["call"] for row in recorded} == {
        "QObject::startTimer", "QObject created as a child of Gui 'hub'",
        "Poller created as a child of Gui 'hub'"}


@pytest.mark.parametrize("binding", ["pyside6", "pyqt6"])
def test_forwarding_a_qt_message_is_not_a_blocking_call_of_the_app(binding: str,
                                                                   tmp_path: Path) -> None:
    """With no handler of the app's, looptools prints Qt's message itself: that write
    is ours, not a blocking call at the app's line that logged (it was reported so)."""
    app = tmp_path / "qwarn.py"
    module = {"pyside6": "PySide6", "pyqt6": "PyQt6"}[binding]
    app.write_text(
        "import asyncio, qasync\n"
        f"from {module}.QtCore import qWarning\n"
        f"from {module}.QtWidgets import QApplication\n\n"
        "async def main():\n"
        "    await asyncio.sleep(0.05)\n"
        "    qWarning('something odd')\n"
        "    await asyncio.sleep(0.05)\n\n"
        "app = QApplication([])\n"
        "qasync.run(main())\n")
    report = tmp_path / "r.json"
    done = subprocess.run([sys.executable, str(app)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path,
                          env=env(QT_API=binding, LOOPTOOLS="1", LOOPTOOLS_REPORT=str(report)))
    assert done.returncode == 0, done.stderr
    assert "something odd" in done.stderr
    data = __import__("json").loads(report.read_text())
    assert data["affinity"]["watched"]["qt_messages"] is True
    assert "os.write" not in [row["call"] for row in data["blocking_calls"]], \
        data["blocking_calls"]


def test_check_budgets_affinity_violations(tmp_path: Path) -> None:
    done, report = _run("pyside6", "qt", "bad", tmp_path, True)
    assert done.returncode == 0 and report is not None, done.stderr
    path = tmp_path / "r.json"
    path.write_text(__import__("json").dumps(report))

    def check(*flags: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "looptools", "check", str(path), *flags],
                              capture_output=True, text=True, timeout=60, env=env())

    sites = len(report["affinity"]["violations"])
    assert sites >= 2  # the timer and the child, from Qt's own warnings
    over = check("--max-affinity-violations", "0")
    assert over.returncode == 1, over.stdout + over.stderr
    assert "max_affinity_violations" in over.stdout
    assert f"{sites} call sites touching a Qt object" in over.stdout
    assert f"affinity_app.py:{_line('timer')}" in over.stdout and "thread worker" in over.stdout
    assert check("--max-affinity-violations", str(sites)).returncode == 0
    # A report that did not measure them (the detector off, or an older looptools).
    del report["affinity"]
    path.write_text(__import__("json").dumps(report))
    unmeasured = check("--max-affinity-violations", "0")
    assert unmeasured.returncode == 1 and "did not measure" in unmeasured.stdout
