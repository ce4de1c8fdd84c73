"""Python run by the garbage collector while PySide6 makes a class lazily, with the
Qt-only probe's signal handled in it.

qasync's import reads ``QtWidgets.QApplication`` (QT_API=pyside6), which shiboken makes
at that first lookup, in C; a collection set off meanwhile runs finalizers and
``gc.callbacks`` (Python) right there.  A signal arriving then is handled in that Python.
Here the app's own gc callback stands for such Python and sends the probe's signal
itself, so that the handler surely runs there (with a thread making cyclic garbage with
``__del__`` instead, 21 of 80 loaded runs crashed in libshiboken6 before the probe
learned to keep its hands off Qt in a collection).

    QT_API=pyside6 LOOPTOOLS=1 python lazy_class_app.py
"""

from __future__ import annotations

import asyncio
import gc
import signal
import sys
import threading
from typing import Any

from looptools.inapp import monitor

active = monitor.active()
SIGNUM = getattr(active, "_probe_signal", None)  # test glue: the probe's signal
MAIN = threading.get_ident()
sent = 0


def collector_python(phase: str, info: dict[str, Any]) -> None:
    global sent
    if SIGNUM is not None and "PySide6.QtWidgets" in sys.modules \
            and threading.get_ident() == MAIN:
        signal.pthread_kill(MAIN, SIGNUM)
        sent += 1
        total = 0
        for i in range(10):  # bytecodes: the signal is handled among them
            total += i


gc.callbacks.append(collector_python)
gc.set_threshold(50)
import qasync  # noqa: E402 - the point: imported with the collector running often

gc.set_threshold(700, 10, 10)
gc.callbacks.remove(collector_python)


async def main() -> None:
    await asyncio.sleep(0.05)


app = qasync.QApplication(sys.argv)
qasync.run(main())
print("done", "signals sent in collections:", sent)
