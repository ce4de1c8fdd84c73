"""An app idle on a Qt main thread that gets Ctrl-C while it waits for its next event.

``idle_sigint_app.py BINDING KIND [c-quit|handler|runner]``; KIND is ``qt`` (no asyncio),
``qasync`` (its ``run_forever``, which leaves SIGINT's default handler in place) or
``qtasyncio`` (``QtAsyncio.run`` without ``handle_sigint``).  It prints "ready" once
idle, and its own timer runs ``on_timer`` 1.5 s later: the first Python of the app's
after the signal.  Its ``sys.excepthook`` (which PyQt calls instead of aborting)
prints where a ``KeyboardInterrupt`` was raised and ends the app with status 3; if
none was, ``on_timer`` ends it with status 0.  With ``c-quit`` (Qt-only) the timer
calls ``QCoreApplication.quit`` itself and no Python of the app's runs until ``exec``
returns: the interrupt is raised there, in the module's frame.  With ``handler`` the
app's own SIGINT handler (a Python function) prints the frame it ran in and
whether that frame is looptools' or the app's; with
``runner`` (qasync) the app is ``qasync.run(main())``, whose ``asyncio.Runner``
handler cancels the main task: ``on_timer`` runs first, then ``KeyboardInterrupt``
comes out of ``run``.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import traceback
from types import FrameType, TracebackType

binding, kind = sys.argv[1], sys.argv[2]
mode = sys.argv[3] if len(sys.argv) > 3 else ""
c_quit = mode == "c-quit"
#: With ``handler`` and ``runner``, "ready" (and the signal) comes this long after the
#: app went idle: the first moments after looptools attached run more of its Python on
#: the main thread, where a Python handler would run (1-2 of 10 Ctrl-Cs 50 ms in, 1 of
#: 24 at 0.6 s; see test_exit_matrix.py).
SETTLE_MS = 600
os.environ["QT_API"] = binding.lower()  # the binding qasync takes
QtCore = importlib.import_module(f"{binding}.QtCore")


def hook(kind_: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    frames = traceback.extract_tb(tb)
    where = frames[-1].name if frames else "?"
    print(f"{kind_.__name__} raised in {where}", flush=True)
    sys.stderr.flush()
    os._exit(3)


sys.excepthook = hook


def on_sigint(signum: int, frame: FrameType | None) -> None:
    name = frame.f_code.co_name if frame is not None else "?"
    whose = "looptools" if frame is not None and "looptools" in frame.f_code.co_filename \
        else "app"
    print(f"handler ran in {name} ({whose})", flush=True)


if mode == "handler":
    signal.signal(signal.SIGINT, on_sigint)


def on_timer() -> None:
    print("on_timer ran: no interrupt", flush=True)
    QtCore.QCoreApplication.exit(0)


def announce() -> None:
    print("ready", flush=True)
    QtCore.QTimer.singleShot(1500, QtCore.QCoreApplication.quit if c_quit else on_timer)


def ready() -> None:
    if mode == "handler":  # idle a while first (see SETTLE_MS)
        QtCore.QTimer.singleShot(SETTLE_MS, announce)
    else:
        announce()


if kind == "qt":
    app = QtCore.QCoreApplication([])
    QtCore.QTimer.singleShot(0, ready)
    sys.exit(app.exec() if hasattr(app, "exec") else app.exec_())
elif kind == "qasync" and mode == "runner":
    import asyncio

    import qasync

    async def main() -> None:
        done = asyncio.Event()

        def on_timer_then_done() -> None:
            print("on_timer ran", flush=True)
            done.set()

        await asyncio.sleep(SETTLE_MS / 1000)
        print("ready", flush=True)
        QtCore.QTimer.singleShot(1500, on_timer_then_done)
        await done.wait()

    qasync.run(main())
    print("run returned", flush=True)
    sys.exit(0)
elif kind == "qasync":
    import asyncio

    import qasync

    app = QtCore.QCoreApplication([])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    loop.call_soon(ready)
    QtCore.QCoreApplication.instance().aboutToQuit.connect(loop.stop)
    with loop:
        loop.run_forever()
    sys.exit(0)
else:
    from PySide6 import QtAsyncio

    app = QtCore.QCoreApplication([])
    QtCore.QTimer.singleShot(0, ready)
    QtAsyncio.run(keep_running=True, quit_qapp=True)
    sys.exit(0)
