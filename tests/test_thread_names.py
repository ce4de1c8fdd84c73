"""What a thread Python did not start is called in report rows (hand-offs, affinity).

``threading`` calls such a thread ``Dummy-3``; looptools names it as the OS does (Qt
names a ``QThread`` after its ``objectName`` or class: qasync's executor threads are
``_QThreadWorker``), or says it has no name.  Real threads, real Qt, real loops.
"""

from __future__ import annotations

import _thread
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from helpers import env, validate

from looptools.inapp._threadnames import current_thread_name


def test_a_thread_threading_started_keeps_its_name() -> None:
    seen: list[str] = []
    thread = threading.Thread(target=lambda: seen.append(current_thread_name()),
                              name="audio")
    thread.start()
    thread.join()
    assert seen == ["audio"]
    assert current_thread_name() == threading.current_thread().name


def test_a_qthread_is_named_as_qt_names_it_not_dummy() -> None:
    QtCore = pytest.importorskip("PySide6.QtCore")
    app = QtCore.QCoreApplication.instance() or QtCore.QCoreApplication([])
    assert app is not None
    seen: list[tuple[str, str, str]] = []

    class Reader(QtCore.QThread):  # type: ignore[misc, name-defined]
        def run(self) -> None:
            first = current_thread_name()
            python = threading.current_thread().name  # makes the _DummyThread
            seen.append((first, current_thread_name(), python))

    named = Reader()
    named.setObjectName("device-reader")
    unnamed = Reader()  # Qt names it after its class
    for thread in (named, unnamed):
        thread.start()
        assert thread.wait(5000)
    assert seen[0][:2] == ("device-reader", "device-reader")
    assert seen[1][:2] == ("Reader", "Reader")
    assert seen[0][2].startswith("Dummy-")  # what the rows said before


def test_a_name_the_app_gave_a_qthread_is_kept() -> None:
    QtCore = pytest.importorskip("PySide6.QtCore")
    app = QtCore.QCoreApplication.instance() or QtCore.QCoreApplication([])
    assert app is not None
    seen: list[str] = []

    idents: list[int] = []

    class Ticker(QtCore.QThread):  # type: ignore[misc, name-defined]
        def run(self) -> None:
            seen.append(current_thread_name())
            threading.current_thread().name = "ticker"
            seen.append(current_thread_name())
            idents.append(threading.get_ident())

    thread = Ticker()
    thread.start()
    assert thread.wait(5000)
    assert seen == ["Ticker", "ticker"]
    # Python 3.11 keeps a _DummyThread after its thread ended, and hands it to the next
    # thread given the same ident: forget this one, for the tests that follow.
    dummy = threading._active.get(idents[0])  # type: ignore[attr-defined]
    if isinstance(dummy, threading._DummyThread):  # type: ignore[attr-defined]
        threading._active.pop(idents[0], None)  # type: ignore[attr-defined]


def test_a_thread_without_a_name_says_so() -> None:
    seen: list[str] = []
    done = threading.Event()

    def run() -> None:
        seen.append(current_thread_name())
        done.set()

    _thread.start_new_thread(run, ())  # the OS name is the process's: no name of its own
    assert done.wait(5)
    time.sleep(0.01)
    assert len(seen) == 1 and seen[0] == f"unnamed thread {seen[0].split()[-1]}"
    assert int(seen[0].split()[-1]) != threading.get_native_id()


APP = '''
import asyncio, os, qasync, threading
from PySide6 import QtCore
from PySide6.QtWidgets import QApplication

def noop():
    pass

def post(loop, times):
    for _ in range(times):
        loop.call_soon_threadsafe(noop)  # SITE: executor

class Hotkeys(QtCore.QThread):
    def __init__(self, loop, timer):
        super().__init__()
        self.loop, self.timer = loop, timer
        self.setObjectName("hotkeys")

    def run(self):
        self.loop.call_soon_threadsafe(noop)  # SITE: qthread
        self.timer.start(10)  # SITE: qthread-timer

async def main():
    loop = asyncio.get_running_loop()
    await asyncio.sleep(0.05)
    await loop.run_in_executor(None, post, loop, 5)
    timer = QtCore.QTimer()
    hotkeys = Hotkeys(loop, timer)
    hotkeys.start()
    await asyncio.to_thread(hotkeys.wait, 5000)
    await asyncio.sleep(0.05)
    print("done", flush=True)

app = QApplication([])
qasync.run(main())
'''


def test_rows_name_qasyncs_executor_and_a_qthread(tmp_path: Path) -> None:
    """qasync's executor threads are QThreads (``Dummy-1`` to ``threading``): a hand-off
    from one is from ``_QThreadWorker``; a QThread's hand-off and its Qt warning are
    from its objectName."""
    app = tmp_path / "names_app.py"
    app.write_text(APP)
    lines = {marker: number for number, line in enumerate(APP.splitlines(), 1)
             for marker in ("executor", "qthread", "qthread-timer")
             if line.endswith(f"# SITE: {marker}")}
    report = tmp_path / "r.json"
    done = subprocess.run([sys.executable, str(app)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path,
                          env=env(QT_API="pyside6", LOOPTOOLS="1",
                                  LOOPTOOLS_REPORT=str(report), LOOPTOOLS_SUMMARY="0"))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "done\n"
    data = json.loads(report.read_text())
    validate(data)
    handoffs = {row["site"]["line"]: row for row in data["handoffs"]}
    assert handoffs[lines["executor"]]["thread"] == "_QThreadWorker"
    assert handoffs[lines["executor"]]["count"] == 5
    assert handoffs[lines["qthread"]]["thread"] == "hotkeys"
    timer = [row for row in data["affinity"]["violations"]
             if row["site"] and row["site"]["line"] == lines["qthread-timer"]]
    assert len(timer) == 1 and timer[0]["call"] == "QObject::startTimer", \
        data["affinity"]
    assert timer[0]["calling_thread"]["name"] == "hotkeys"
    assert not any(str(row["thread"]).startswith("Dummy") for row in data["handoffs"])
