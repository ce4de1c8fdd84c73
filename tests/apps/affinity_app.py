"""A GUI thread and a worker thread that touches what the GUI thread owns, or does not.

    affinity_app.py KIND MODE     KIND: qt | qasync | qtasyncio | asyncio
                                  MODE: bad | healthy | own-handler | restore
    (the binding comes from QT_API: pyside6, pyqt6, pyqt5 or pyside2)

In ``bad`` mode a ``threading.Thread`` named "worker" does, three times each (so each
site repeats): start a ``QTimer`` the GUI thread made (Qt warns: "Timers cannot be
started from another thread"), make a ``QObject`` whose parent lives on the GUI
thread (Qt warns: "Cannot create children for a parent that is in a different
thread"), the same through a subclass's ``super().__init__(parent)``, call ``setText``
on a hidden ``QLabel`` (Qt says nothing), and, where an
asyncio loop runs, ``loop.call_soon`` (asyncio says nothing outside debug mode).
``healthy`` does the same work the right way: a queued signal to a GUI-thread slot
and ``loop.call_soon_threadsafe``.  ``own-handler`` is ``bad`` with the app's own Qt
message handler installed first: it prints every message to stdout (``APP:``).
``restore`` is ``own-handler`` monitored in code (``looptools.monitor()``): after it
stops, the app's handler must be the one installed again (``RESTORED True``).
Each offending line is marked ``# SITE: name``.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import sys
import threading
import time
from typing import Any

KIND, MODE = sys.argv[1], sys.argv[2]
NAME = {"pyside6": "PySide6", "pyqt6": "PyQt6", "pyqt5": "PyQt5",
        "pyside2": "PySide2"}[os.environ.get("QT_API", "pyside6")]
REPEAT = 3
QT = KIND != "asyncio"
if QT:
    QtCore: Any = importlib.import_module(f"{NAME}.QtCore")
    QtWidgets: Any = importlib.import_module(f"{NAME}.QtWidgets")
    Signal = QtCore.pyqtSignal if NAME.startswith("PyQt") else QtCore.Signal


def noop() -> None:
    pass


def app_handler(mode: Any, context: Any, message: str) -> None:
    print(f"APP: {message.splitlines()[0]}", flush=True)


if QT:
    class Poller(QtCore.QObject):  # type: ignore[misc, name-defined]
        """A child made with its parent: ``Poller(parent)``."""

        def __init__(self, parent: Any) -> None:
            super().__init__(parent)

    class Gui(QtCore.QObject):  # type: ignore[misc, name-defined]
        """Lives on the GUI thread; ``touch`` is the healthy way (a queued slot)."""

        touch = Signal(str)

        def __init__(self) -> None:
            super().__init__()
            self.setObjectName("hub")
            self.timer = QtCore.QTimer()
            self.timer.setSingleShot(True)
            self.label = QtWidgets.QLabel()
            self.label.setObjectName("status")
            self.kept: list[Any] = []
            self.touch.connect(self.on_touch)

        def on_touch(self, text: str) -> None:
            self.timer.start(50)
            self.kept.append(QtCore.QObject(self))
            self.kept.append(Poller(self))
            self.label.setText(text)


def worker(gui: Any, loop: asyncio.AbstractEventLoop | None) -> None:
    for _ in range(REPEAT):
        if MODE == "healthy":
            if gui is not None:
                gui.touch.emit("from worker")
            if loop is not None:
                loop.call_soon_threadsafe(noop)
            continue
        if gui is not None:
            gui.timer.start(50)  # SITE: timer
            QtCore.QObject(gui)  # SITE: child
            Poller(gui)  # SITE: subclass-child
            gui.label.setText("from worker")  # SITE: label
        if loop is not None:
            try:
                loop.call_soon(noop)  # SITE: call_soon
            except AssertionError:
                pass  # qasync's timer bookkeeping, from the wrong thread, asserts


def run_worker(gui: Any, loop: asyncio.AbstractEventLoop | None) -> None:
    thread = threading.Thread(target=worker, args=(gui, loop), name="worker")
    thread.start()
    thread.join()


async def main(gui: Any) -> None:
    await asyncio.sleep(0.05)
    run_worker(gui, asyncio.get_running_loop())
    await asyncio.sleep(0.2)  # the healthy mode's queued work runs


def run() -> None:
    if not QT:
        asyncio.run(main(None))
        return
    app = QtWidgets.QApplication([])
    if MODE in ("own-handler", "restore"):
        QtCore.qInstallMessageHandler(app_handler)
    gui = Gui()
    if KIND == "qt":
        def start() -> None:
            run_worker(gui, None)
            QtCore.QTimer.singleShot(200, app.quit)

        QtCore.QTimer.singleShot(100, start)  # after looptools attached at exec
        (app.exec_ if NAME == "PySide2" else app.exec)()
    elif KIND == "qasync":
        import qasync

        loop = qasync.QEventLoop(app)
        with loop:
            loop.run_until_complete(main(gui))
    elif KIND == "qtasyncio":
        from PySide6 import QtAsyncio

        QtAsyncio.run(main(gui), keep_running=False, handle_sigint=False)
    else:
        raise SystemExit(f"unknown kind {KIND}")
    time.sleep(0.01)
    print(f"label: {gui.label.text()}", flush=True)


if MODE == "restore":
    import looptools

    with looptools.monitor(report=os.environ.get("AFFINITY_REPORT"), summary=False):
        run()
    current = QtCore.qInstallMessageHandler(None)
    print(f"RESTORED {current is app_handler}", flush=True)
    QtCore.qInstallMessageHandler(current)
    QtCore.qWarning("after detach")
else:
    run()
print(f"affinity_app: {KIND} {MODE} done", flush=True)
