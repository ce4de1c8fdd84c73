"""A Qt app whose signal handler spins a nested event loop (a "really quit?" dialog
does), while C++-only timers keep the dispatcher emitting ``aboutToBlock``.

``nested_handler_app.py BINDING``: SIGUSR1 comes from a thread at 0.5 s; the handler
runs a 300 ms ``QEventLoop``; the app quits at 1.5 s with status 0.  Under looptools
the handler runs inside our slot (the first Python after the signal), and the nested
loop calls that slot again.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from types import FrameType

QtCore = importlib.import_module(f"{sys.argv[1]}.QtCore")
app = QtCore.QCoreApplication([])


def handler(signum: int, frame: FrameType | None) -> None:
    print("handler: nested loop", flush=True)
    loop = QtCore.QEventLoop()
    QtCore.QTimer.singleShot(300, loop.quit)
    loop.exec() if hasattr(loop, "exec") else loop.exec_()
    print("handler: done", flush=True)


signal.signal(signal.SIGUSR1, handler)
keep = QtCore.QTimer()
keep.timeout.connect(lambda: None)  # Python every 200 ms: the handler runs without us too
keep.start(200)
busy = QtCore.QTimer()
busy.start(1)  # C++-only wake-ups (an animation, repaints)
threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGUSR1)).start()
QtCore.QTimer.singleShot(1500, app.quit)
status = app.exec() if hasattr(app, "exec") else app.exec_()
print("exec returned", status, flush=True)
sys.exit(status)
