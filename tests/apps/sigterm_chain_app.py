"""An app that takes SIGTERM with the common chaining idiom: it keeps what
``signal.getsignal`` gave, installs its own handler that calls that one first if it
is callable, then shuts down gracefully.  Without looptools the previous handler is
``SIG_DFL`` (not callable): SIGTERM ends the app gracefully, status 0.

``sigterm_chain_app.py KIND`` — ``asyncio`` or ``qt-BINDING`` (a Qt main thread
without asyncio).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

kind = sys.argv[1]
previous = signal.getsignal(signal.SIGTERM)
print(f"previous handler callable: {callable(previous)}", flush=True)
stop: list[object] = []


def handler(signum: int, frame: object) -> None:
    if callable(previous):
        previous(signum, frame)
    print("graceful shutdown", flush=True)
    stop[0]()  # type: ignore[operator]


if kind == "asyncio":
    import asyncio

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        stop.append(lambda: loop.call_soon_threadsafe(done.set))
        signal.signal(signal.SIGTERM, handler)
        loop.call_later(0.3, os.kill, os.getpid(), signal.SIGTERM)
        await done.wait()

    asyncio.run(main())
else:
    QtCore = importlib.import_module(f"{kind[3:]}.QtCore")
    app = QtCore.QCoreApplication([])
    stop.append(app.quit)
    signal.signal(signal.SIGTERM, handler)
    QtCore.QTimer.singleShot(300, lambda: os.kill(os.getpid(), signal.SIGTERM))
    app.exec() if hasattr(app, "exec") else app.exec_()
print("cleaned up", flush=True)
