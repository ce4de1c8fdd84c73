"""An app that takes SIGTERM with a common chaining idiom: it keeps what
``signal.getsignal`` gave, installs its own handler that calls that one first if it
is callable, then (``graceful``) shuts down gracefully, or (``or-default``) if it was
``SIG_DFL`` dies of the signal as the default would.  Without looptools the previous
handler is ``SIG_DFL``: ``graceful`` ends with status 0, ``or-default`` dies of
SIGTERM.

``sigterm_chain_app.py KIND MODE`` — KIND ``asyncio`` or ``qt-BINDING`` (a Qt main
thread without asyncio).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys

kind, mode = sys.argv[1], sys.argv[2]
previous = signal.getsignal(signal.SIGTERM)
print(f"previous handler: {previous!r}", flush=True)
stop: list[object] = []


def handler(signum: int, frame: object) -> None:
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_DFL and mode == "or-default":
        print("dying of it", flush=True)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)
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
