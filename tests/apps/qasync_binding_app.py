"""qasync on whichever Qt binding ``QT_API`` names (PySide6, PyQt6, PyQt5, PySide2).

    qasync_binding_app.py stalls          a 200 ms Qt slot sleep, then a 150 ms CPU loop
                                          in a coroutine; prints MARKS on stderr
    qasync_binding_app.py idle-subclass   a QEventLoop subclass (one that patches
                                          run_until_complete, as FeelUOwn's does) idles 4 s
    qasync_binding_app.py qt-only         no asyncio at all: a Qt slot sleeps 200 ms
    qasync_binding_app.py qt-only-cstall  no asyncio, and no Python of its own once in
                                          exec(): Qt's own QThread.msleep(200) as a slot
    qasync_binding_app.py qt-only-thread-lookup  the same, after another thread looked
                                          up exec
    qasync_binding_app.py qt-only-quit-in-slot  no asyncio: a slot sleeps 300 ms, quits
                                          the app, sleeps 200 ms more; after exec()
                                          returns, main works 300 ms (no loop then)
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import json
import sys
import time

import qasync

QtCore = qasync.QtCore
QtWidgets = importlib.import_module(qasync.QtModuleName + ".QtWidgets")
MODE = sys.argv[1]
marks: dict[str, float] = {}


def slot_sleeps() -> None:
    marks["slot_start"] = time.perf_counter()
    time.sleep(0.2)  # CULPRIT: slot
    marks["slot_end"] = time.perf_counter()


def slot_quits(app: object) -> None:
    marks["slot_start"] = time.perf_counter()
    time.sleep(0.3)  # CULPRIT: quitting slot
    app.quit()  # type: ignore[attr-defined]
    time.sleep(0.2)
    marks["slot_end"] = time.perf_counter()


def spin(seconds: float) -> int:
    n = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:  # CULPRIT: cpu
        n += 1
    return n


async def stalls() -> None:
    QtCore.QTimer.singleShot(300, slot_sleeps)
    await asyncio.sleep(0.8)
    marks["cpu_start"] = time.perf_counter()
    spin(0.15)
    marks["cpu_end"] = time.perf_counter()
    await asyncio.sleep(0.3)


class PatchedLoop(qasync.QEventLoop):
    """Like FeelUOwn's loop: a subclass that wraps run_until_complete."""

    def run_until_complete(self, future):  # type: ignore[no-untyped-def]
        return super().run_until_complete(future)


def main() -> int:
    if MODE == "qt-only-thread-lookup":
        time.sleep(0.1)  # the probe hooks exec meanwhile, as in an app with work here
    app = QtWidgets.QApplication([])
    print(f"binding {qasync.QtModuleName}", flush=True)
    if MODE == "qt-only":
        QtCore.QTimer.singleShot(500, slot_sleeps)
        QtCore.QTimer.singleShot(1200, app.quit)
        (app.exec if hasattr(app, "exec") else app.exec_)()
    elif MODE == "qt-only-quit-in-slot":
        QtCore.QTimer.singleShot(500, functools.partial(slot_quits, app))
        (app.exec if hasattr(app, "exec") else app.exec_)()
        time.sleep(0.3)  # the app's own work once its loop is over: not a stall
    elif MODE == "qt-only-thread-lookup":
        # Another thread looks exec up first (introspection, a shim): that is not the
        # app entering its loop, and must not keep the monitor from attaching.
        import threading

        # (vars: a lookup on the main thread first would count as entering the loop)
        name = "exec" if "exec" in vars(QtCore.QCoreApplication) else "exec_"
        looker = threading.Thread(target=getattr, args=(app, name))
        looker.start()
        looker.join()
        QtCore.QTimer.singleShot(400, functools.partial(QtCore.QThread.msleep, 200))
        QtCore.QTimer.singleShot(900, app.quit)
        getattr(app, name)()
    elif MODE == "qt-only-cstall":
        # From the last import to exec() in a few ms, then only C++ runs: the
        # monitor has to be attached by then to see the stall at all.
        QtCore.QTimer.singleShot(400, functools.partial(QtCore.QThread.msleep, 200))
        QtCore.QTimer.singleShot(900, app.quit)
        (app.exec if hasattr(app, "exec") else app.exec_)()
    elif MODE == "stalls":
        loop = qasync.QEventLoop(app)
        asyncio.set_event_loop(loop)
        with loop:
            loop.run_until_complete(stalls())
    elif MODE == "idle-subclass":
        loop = PatchedLoop(app)
        asyncio.set_event_loop(loop)
        with loop:
            loop.run_until_complete(asyncio.sleep(4.0))
    else:
        raise SystemExit(f"unknown mode {MODE}")
    print("MARKS " + json.dumps(marks), file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
