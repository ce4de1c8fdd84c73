"""A small app on a chosen loop kind that ends in a chosen way, from inside its running loop.

    ending_app.py KIND HOW

KIND: asyncio | uvloop | qasync | qtasyncio | qt
HOW:  normal | raise | exit5 | osexit3 | sigint | sigterm

It prints a few lines on stdout and stderr, does 60 ms of blocking work (a
stall), then ends.  For sigint/sigterm it prints "ready" and waits for the
signal (the test sends it); it never ends by itself then, so a hang shows.

On "qt" SIGINT is handled the way a real Qt app that ends on Ctrl+C does it: a
Python handler quits the Qt loop (run by the app's own periodic Python), and
the app then ends by KeyboardInterrupt like the asyncio kinds.  PySide6 would
otherwise print the KeyboardInterrupt raised inside a slot and run on forever.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time

KIND, HOW = sys.argv[1], sys.argv[2]


def work() -> None:
    print(f"{KIND}: working", flush=False)
    print(f"{KIND}: diagnostics on stderr", file=sys.stderr)
    time.sleep(0.06)


def end() -> None:
    print(f"{KIND}: ending by {HOW}")
    if HOW == "raise":
        raise RuntimeError("the app failed")
    if HOW == "exit5":
        sys.exit(5)
    if HOW == "osexit3":
        sys.stdout.flush()
        os._exit(3)


def app_clock() -> object:
    """The app's own periodic Python (a clock, an animation), as real Qt apps have:
    without any, a Qt app cannot run a Python signal handler while it idles."""
    from PySide6.QtCore import QTimer

    timer = QTimer()
    timer.timeout.connect(lambda: None)
    timer.start(20)
    return timer


async def main() -> None:
    clock = app_clock() if KIND in ("qasync", "qtasyncio") else None
    await asyncio.sleep(0.05)
    work()
    if HOW in ("sigint", "sigterm"):
        print("ready", flush=True)
        await asyncio.sleep(30)
    end()
    await asyncio.sleep(0.01)
    del clock


def qt_only() -> int:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    state = {"ticks": 0}

    def tick() -> None:  # the app's own periodic Python, as real apps have
        state["ticks"] += 1

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(20)

    def step() -> None:
        work()
        if HOW in ("sigint", "sigterm"):
            print("ready", flush=True)
            return
        app.quit()

    interrupted = []

    def on_sigint(signum: int, frame: object) -> None:
        interrupted.append(signum)
        app.quit()

    signal.signal(signal.SIGINT, on_sigint)
    QTimer.singleShot(50, step)
    app.exec()
    if interrupted:
        raise KeyboardInterrupt
    end()
    return 0


if KIND == "asyncio":
    asyncio.run(main())
elif KIND == "uvloop":
    import uvloop

    uvloop.run(main())
elif KIND == "qasync":
    import qasync
    from PySide6.QtWidgets import QApplication

    qt_app = QApplication([])
    qasync.run(main())
elif KIND == "qtasyncio":
    import PySide6.QtAsyncio as QtAsyncio
    from PySide6.QtWidgets import QApplication

    qt_app = QApplication([])
    QtAsyncio.run(main(), keep_running=False, quit_qapp=True)
elif KIND == "qt":
    qt_only()
else:
    raise SystemExit(f"unknown kind {KIND}")
print(f"{KIND}: finished")
