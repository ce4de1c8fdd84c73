"""A Qt GUI thread fed by worker threads through Qt's hand-offs, once blocked 300 ms.

    qt_handoff_app.py KIND MODE     KIND: qt | qasync | qtasyncio
                                    MODE: stall | stall-at-start | healthy
    (the binding comes from QT_API: pyside6, pyqt6, pyqt5 or pyside2)

Four workers post 100 times each, every 10 ms, to a ``Receiver`` on the GUI thread:

* "audio" (a ``threading.Thread``; on PySide2, whose ``singleShot`` needs an event
  loop in the calling thread, a ``QThread`` like "ticker"): ``QTimer.singleShot(0, ...)``;
* "ticker" (a ``QThread`` running its own event loop: a delayed ``singleShot``
  from a thread fires only there): ``QTimer.singleShot(20, ...)``;
* "hotkey": ``QMetaObject.invokeMethod(receiver, "on_hotkey", QueuedConnection)``;
* "progress": emits ``Feed.progress``, connected to ``Receiver.on_progress``
  (AutoConnection across threads: queued).

Each post notes when it was made; the receiver measures when its slot started:
the ground truth, printed at the end as ``TRUTH {json}`` (per way: count, p99 and
max wait beyond the requested delay).  In ``stall`` mode ``build_index`` blocks the
GUI thread for 300 ms after 0.4 s; in ``stall-at-start`` right after the GUI thread
started the workers (the app's first threads).  ``DELIVERED {json}`` is the same in
every run.
"""

from __future__ import annotations

import asyncio
import collections
import importlib
import json
import os
import sys
import threading
import time
from typing import Any

KIND, MODE = sys.argv[1], sys.argv[2]
NAME = {"pyside6": "PySide6", "pyqt6": "PyQt6", "pyqt5": "PyQt5",
        "pyside2": "PySide2"}[os.environ.get("QT_API", "pyside6")]
QtCore: Any = importlib.import_module(f"{NAME}.QtCore")
QtWidgets: Any = importlib.import_module(f"{NAME}.QtWidgets")
PYQT = NAME.startswith("PyQt")
Signal = QtCore.pyqtSignal if PYQT else QtCore.Signal
Slot = QtCore.pyqtSlot if PYQT else QtCore.Slot
QUEUED = getattr(QtCore.Qt, "ConnectionType", QtCore.Qt).QueuedConnection
QTimer, QObject, QThread = QtCore.QTimer, QtCore.QObject, QtCore.QThread

POSTS = 100
WAYS = ("singleShot_0", "singleShot_20", "invokeMethod", "signal")
waits: dict[str, list[float]] = {way: [] for way in WAYS}
# FIFO of post times for the ways whose slot takes no argument (Qt delivers in order).
posted: dict[str, collections.deque[float]] = {way: collections.deque() for way in WAYS}


class Receiver(QObject):
    """Lives on the GUI thread."""

    def arrived(self, way: str, when: float, delay: float = 0.0) -> None:
        waits[way].append(time.perf_counter() - when - delay)
        if sum(len(w) for w in waits.values()) == POSTS * len(WAYS):
            done.set()

    def on_chunk(self) -> None:  # PyQt: QTimer.singleShot(0, receiver.on_chunk)
        self.arrived("singleShot_0", posted["singleShot_0"].popleft())

    @Slot()
    def on_tick(self) -> None:  # PyQt: QTimer.singleShot(20, receiver.on_tick)
        self.arrived("singleShot_20", posted["singleShot_20"].popleft(), 0.020)

    @Slot()
    def on_hotkey(self) -> None:
        self.arrived("invokeMethod", posted["invokeMethod"].popleft())

    def on_progress(self, when: float) -> None:
        self.arrived("signal", when)

    def build_index(self) -> None:
        time.sleep(0.3)  # BLOCKS THE GUI THREAD


class Feed(QObject):
    progress = Signal(float)


def post_chunk(receiver: Receiver) -> None:
    when = time.perf_counter()
    if NAME == "PySide6":
        QTimer.singleShot(0, receiver, lambda: receiver.arrived("singleShot_0", when))  # POST: 0
    else:
        posted["singleShot_0"].append(when)
        QTimer.singleShot(0, receiver.on_chunk)  # POST: 0 (bound)


def post_tick(receiver: Receiver) -> None:
    when = time.perf_counter()
    if NAME == "PySide6":
        QTimer.singleShot(20, receiver,  # POST: 20
                          lambda: receiver.arrived("singleShot_20", when, 0.020))
    else:
        posted["singleShot_20"].append(when)
        QTimer.singleShot(20, receiver.on_tick)  # POST: 20 (bound)


def audio(receiver: Receiver) -> None:
    for _ in range(POSTS):
        post_chunk(receiver)
        time.sleep(0.01)


def hotkey(receiver: Receiver) -> None:
    for _ in range(POSTS):
        posted["invokeMethod"].append(time.perf_counter())
        QtCore.QMetaObject.invokeMethod(receiver, "on_hotkey", QUEUED)  # POST: invoke
        time.sleep(0.01)


def progress(feed: Feed) -> None:
    for _ in range(POSTS):
        feed.progress.emit(time.perf_counter())  # POST: signal
        time.sleep(0.01)


class Worker(QThread):
    """A Qt worker thread with its own event loop: a timer there posts every 10 ms
    (a delayed ``singleShot`` from a thread runs only where a Qt event loop runs)."""

    def __init__(self, name: str, post: Any, receiver: Receiver) -> None:
        super().__init__()
        self.name, self.post, self.receiver = name, post, receiver

    def run(self) -> None:
        threading.current_thread().name = self.name
        count = [0]
        timer = QTimer()

        def beat() -> None:
            self.post(self.receiver)
            count[0] += 1
            if count[0] == POSTS:
                timer.stop()
                # A lambda runs in this thread on every binding (a bound method of
                # this QThread object would go to the GUI thread on PyQt).
                QTimer.singleShot(100, lambda: self.quit())

        timer.timeout.connect(beat)
        timer.start(10)
        (self.exec_ if NAME == "PySide2" else self.exec)()


done = threading.Event()
app = QtWidgets.QApplication([])
receiver = Receiver()
feed = Feed()
feed.progress.connect(receiver.on_progress)
qthreads = [Worker("ticker", post_tick, receiver)]
threads = [threading.Thread(target=hotkey, args=(receiver,), name="hotkey"),
           threading.Thread(target=progress, args=(feed,), name="progress")]
if NAME == "PySide2":
    qthreads.append(Worker("audio", post_chunk, receiver))
else:
    threads.append(threading.Thread(target=audio, args=(receiver,), name="audio"))


def start() -> None:
    for thread in [*threads, *qthreads]:
        thread.start()
    if MODE == "stall":
        QTimer.singleShot(400, receiver.build_index)  # from the GUI thread: no hand-off
    elif MODE == "stall-at-start":
        receiver.build_index()  # the workers' first posts wait for it


def finish_when_done() -> None:
    if done.is_set():
        app.quit()
    else:
        QTimer.singleShot(20, finish_when_done)


async def until_done() -> None:
    start()
    while not done.is_set():
        await asyncio.sleep(0.02)


if KIND == "qt":
    QTimer.singleShot(100, start)  # after looptools attached at exec (LOOPTOOLS=1)
    QTimer.singleShot(20, finish_when_done)
    (app.exec_ if NAME == "PySide2" else app.exec)()
elif KIND == "qasync":
    import qasync

    loop = qasync.QEventLoop(app)
    with loop:
        loop.run_until_complete(until_done())
elif KIND == "qtasyncio":
    from PySide6 import QtAsyncio

    QtAsyncio.run(until_done(), keep_running=False, handle_sigint=False)
else:
    raise SystemExit(f"unknown kind {KIND}")
for thread in threads:
    thread.join()
for qthread in qthreads:
    qthread.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


print("DELIVERED " + json.dumps({way: len(w) for way, w in waits.items()}), flush=True)
print("TRUTH " + json.dumps({way: {"count": len(w), "p99_ms": 1000.0 * percentile(w, 0.99),
                                   "max_ms": 1000.0 * max(w)}
                             for way, w in waits.items()}), flush=True)
