"""What measuring cross-thread hand-offs costs, per hand-off and at 1,000 a second.

    QT_QPA_PLATFORM=offscreen python benchmarks/handoff_cost.py [--rounds 7] [--posts 20000]
        [--qt pyside6,pyqt6]

asyncio: a worker thread posts ``--posts`` callbacks with ``loop.call_soon_threadsafe``
as fast as it can while the loop runs them; timed from the first post to the last
callback run.  Qt (each binding of ``--qt``, in a child process of its own, on a Qt
main thread without asyncio): the same with ``QTimer.singleShot(0, ...)`` from the
worker (PySide6 ``singleShot(0, context, fn)``, PyQt ``singleShot(0, obj.method)``:
the forms measured), and, for the GUI thread's own events, a chain of
``singleShot(0, ...)`` made on the GUI thread (each callback posts the next: not
hand-offs) while the app has an idle thread of its own (``singleShot`` is wrapped
then) and while it has none, and on PySide6 a QtAsyncio ``call_soon`` chain (QtAsyncio
makes a ``singleShot`` on the GUI thread per callback); then the same for a queued
``QMetaObject.invokeMethod(obj, "slot", QueuedConnection)`` (from a worker, paced, and
a chain on the GUI thread).  Plain vs ``looptools.monitor()``
with only the ``handoffs`` detector (so that the figure is this detector's),
alternating, median of ``--rounds`` pairs.  Prints microseconds per hand-off (or
event) each way, their ratio, and what the extra is at 1,000 a second as a share of
one core.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

import looptools


def one(posts: int, monitored: bool) -> float:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        count = [0]

        def on_loop() -> None:
            count[0] += 1
            if count[0] == posts:
                done.set()

        started = [0.0]

        def worker() -> None:
            started[0] = time.perf_counter()
            for _ in range(posts):
                loop.call_soon_threadsafe(on_loop)

        thread = threading.Thread(target=worker, name="worker")
        thread.start()
        await done.wait()
        elapsed = time.perf_counter() - started[0]
        thread.join()
        return elapsed

    if not monitored:
        return asyncio.run(main())
    with looptools.monitor(report=None, summary=False, detectors="handoffs"):
        return asyncio.run(main())


class _AppThread:
    """An idle thread of the app's: once the app runs one, ``singleShot`` is wrapped."""

    def __enter__(self) -> _AppThread:
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.stop.wait, name="idle")
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def qt_round(binding: str, posts: int, monitored: bool, way: str) -> float:
    """One timed round on a Qt main thread without asyncio (a child process's).

    ``worker``: hand-offs from a worker thread as fast as it can (wall time, post to
    run); ``paced``: 1,000 a second (the process's CPU time); ``gui``: a chain on the GUI
    thread while the app has an (idle) thread of its own; ``gui-alone``: the same chain,
    no thread.  ``invoke-worker``, ``invoke-paced``, ``invoke-gui``: the same by a queued
    ``QMetaObject.invokeMethod`` instead of ``QTimer.singleShot``."""
    core: Any = importlib.import_module(f"{binding}.QtCore")
    app = core.QCoreApplication.instance() or core.QCoreApplication([])
    timer = core.QTimer
    invoke = way.startswith("invoke-")
    way = way.removeprefix("invoke-")
    patched, name = (core.QMetaObject, "invokeMethod") if invoke else (timer, "singleShot")
    original = vars(patched)[name]
    queued = getattr(core.Qt, "ConnectionType", core.Qt).QueuedConnection
    slot = core.pyqtSlot if binding.startswith("PyQt") else core.Slot
    count = [0]
    started = [0.0]
    elapsed = [0.0]
    wrapped = [False]

    class Receiver(core.QObject):  # type: ignore[misc, name-defined]
        def on_post(self) -> None:
            count[0] += 1
            if count[0] == posts:
                if way != "paced":
                    elapsed[0] = time.perf_counter() - started[0]
                wrapped[0] = vars(patched)[name] is not original
                # (paced: the worker reads the CPU time, then the app quits)
                timer.singleShot(20 if way == "paced" else 0, app.quit)
            elif way not in ("worker", "paced"):
                post()

        @slot()
        def on_invoke(self) -> None:
            self.on_post()

    receiver = Receiver()
    if invoke:
        def post() -> None:
            core.QMetaObject.invokeMethod(receiver, "on_invoke", queued)
    elif binding == "PySide6":
        def post() -> None:
            timer.singleShot(0, receiver, receiver.on_post)
    else:
        def post() -> None:
            timer.singleShot(0, receiver.on_post)

    def worker() -> None:
        started[0] = time.perf_counter()
        if way == "paced":  # 1,000 a second, for the process's CPU time
            cpu = time.process_time()
            due = time.perf_counter()
            for _ in range(posts):
                post()
                due += 0.001
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            while count[0] < posts:
                time.sleep(0.001)
            elapsed[0] = time.process_time() - cpu
            return
        for _ in range(posts):
            post()

    def begin() -> None:
        if way in ("worker", "paced"):
            threading.Thread(target=worker, name="worker").start()
        else:
            started[0] = time.perf_counter()
            post()

    def run() -> None:
        # Started after looptools attached (at exec): the first singleShot is ours.
        timer.singleShot(50, begin)
        (app.exec_ if binding == "PySide2" else app.exec)()

    with contextlib.ExitStack() as stack:
        if way == "gui":
            stack.enter_context(_AppThread())
        if monitored:
            stack.enter_context(looptools.monitor(report=None, summary=False,
                                                  detectors="handoffs"))
        run()
    if wrapped[0] != (monitored and way != "gui-alone"):
        raise SystemExit(f"{way}: singleShot was {'' if wrapped[0] else 'not '}wrapped")
    return elapsed[0]


def qtasyncio_round(posts: int, monitored: bool) -> float:
    """A ``call_soon`` chain on QtAsyncio, whose every callback is a ``QTimer.singleShot``
    made on the GUI thread by QtAsyncio itself, while the app has a thread of its own."""
    from PySide6 import QtAsyncio
    from PySide6.QtAsyncio import events
    from PySide6.QtCore import QCoreApplication, QTimer

    QCoreApplication.instance() or QCoreApplication([])
    elapsed = [0.0]
    exempt = [False]

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        count = [0]

        def step() -> None:
            count[0] += 1
            if count[0] < posts:
                loop.call_soon(step)
            else:
                done.set_result(None)

        started = time.perf_counter()
        loop.call_soon(step)
        await done
        elapsed[0] = time.perf_counter() - started
        exempt[0] = events.QTimer is not QTimer

    def run() -> None:
        QtAsyncio.run(main(), keep_running=False, quit_qapp=True, handle_sigint=False)

    with contextlib.ExitStack() as stack:
        stack.enter_context(_AppThread())
        if monitored:
            stack.enter_context(looptools.monitor(report=None, summary=False,
                                                  detectors="handoffs"))
        run()
    if exempt[0] != monitored:
        raise SystemExit("QtAsyncio's QTimer was not given the binding's own singleShot")
    return elapsed[0]


def qt_child(binding: str, posts: int, rounds: int, way: str) -> None:
    plain, watched = [], []
    for warm_up in range(rounds + 1):  # the first pair pays one-time imports: dropped
        if way == "qtasyncio":
            pair = (qtasyncio_round(posts, False), qtasyncio_round(posts, True))
        else:
            pair = (qt_round(binding, posts, False, way), qt_round(binding, posts, True, way))
        if warm_up:
            plain.append(pair[0])
            watched.append(pair[1])
    print(f"{statistics.median(plain)} {statistics.median(watched)}")


def report(what: str, plain_s: float, watched_s: float, posts: int) -> None:
    p = plain_s / posts * 1e6
    w = watched_s / posts * 1e6
    print(f"{what}: plain {p:.2f} us, measured {w:.2f} us, ratio {w / p:.2f}, "
          f"extra {w - p:.2f} us; at 1,000/s: {1000 * (w - p) / 1e6 * 100:.2f} % of one core")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--posts", type=int, default=20_000)
    parser.add_argument("--paced", type=int, default=3000,
                        help="Qt hand-offs posted at 1,000 a second for the CPU figure")
    parser.add_argument("--qt", default="pyside6,pyqt6",
                        help="Qt bindings to measure (pyside6, pyqt6, pyqt5), or none")
    parser.add_argument("--qt-child", nargs=2, metavar=("BINDING", "WAY"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.qt_child:
        qt_child(args.qt_child[0], args.posts, args.rounds, args.qt_child[1])
        return
    plain, watched = [], []
    for _ in range(args.rounds):
        plain.append(one(args.posts, False))
        watched.append(one(args.posts, True))
    report("asyncio call_soon_threadsafe hand-off, post to run", statistics.median(plain),
           statistics.median(watched), args.posts)
    names = {"pyside6": "PySide6", "pyqt6": "PyQt6", "pyqt5": "PyQt5"}
    for api in [a for a in args.qt.split(",") if a and a != "none"]:
        binding = names[api]
        ways = [("worker", "QTimer.singleShot hand-off from a worker, post to run"),
                ("gui", "QTimer.singleShot(0) chain on the GUI thread, the app has a thread"),
                ("gui-alone", "QTimer.singleShot(0) chain on the GUI thread, no thread")]
        if binding == "PySide6":
            ways.append(("qtasyncio", "QtAsyncio call_soon chain, the app has a thread"))
        ways += [("invoke-worker", "queued invokeMethod hand-off from a worker, post to run"),
                 ("invoke-gui", "queued invokeMethod chain on the GUI thread, the app has "
                                "a thread")]
        for way, what in ways:
            out = _child(binding, way, args.posts, args.rounds)
            report(f"{binding} {what}", out[0], out[1], args.posts)
        for way, what in (("paced", "QTimer.singleShot"),
                          ("invoke-paced", "queued invokeMethod")):
            plain_cpu, watched_cpu = _child(binding, way, args.paced, args.rounds)
            extra = (watched_cpu - plain_cpu) / (args.paced / 1000.0)
            print(f"{binding} {what} hand-offs at 1,000/s for {args.paced / 1000:g} s: "
                  f"process CPU plain {plain_cpu * 1000:.0f} ms, measured "
                  f"{watched_cpu * 1000:.0f} ms: {100 * extra:.2f} % of one core more")


def _child(binding: str, way: str, posts: int, rounds: int) -> tuple[float, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPTOOLS")}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    done = subprocess.run([sys.executable, __file__, "--qt-child", binding, way,
                           "--posts", str(posts), "--rounds", str(rounds)],
                          capture_output=True, text=True, env=env, check=True)
    plain, watched = done.stdout.split()[-2:]
    return float(plain), float(watched)


if __name__ == "__main__":
    main()
