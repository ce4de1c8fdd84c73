"""Busy vs idle on the Qt dispatcher: a 200 ms blocking slot, then a 200 ms idle sleep.

    python dispatcher_app.py qasync|qtasyncio   (set QT_NO_GLIB=1 for the UNIX dispatcher)

Prints one JSON line: busy/idle milliseconds the monitor accounted in each phase.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

import looptools

KIND = sys.argv[1]
out: dict[str, object] = {}


def totals(monitor: looptools.Monitor) -> tuple[float, float]:
    disp = monitor.snapshot()["dispatcher"]
    return disp["busy_ms"], disp["idle_ms"]


def slot() -> None:
    time.sleep(0.2)


async def main(monitor: looptools.Monitor) -> None:
    await asyncio.sleep(0.3)
    b0, i0 = totals(monitor)
    QTimer.singleShot(0, slot)
    await asyncio.sleep(0.35)
    b1, i1 = totals(monitor)
    await asyncio.sleep(0.2)
    b2, i2 = totals(monitor)
    out["slot"] = {"busy_ms": b1 - b0, "idle_ms": i1 - i0}
    out["idle"] = {"busy_ms": b2 - b1, "idle_ms": i2 - i1}
    out["dispatcher"] = monitor.snapshot()["dispatcher"]["name"]


app = QApplication([])
with looptools.monitor(report=None, detectors="dispatcher,lag") as mon:
    if KIND == "qasync":
        import qasync

        qasync.run(main(mon))
    else:
        import PySide6.QtAsyncio as QtAsyncio

        QtAsyncio.run(main(mon), keep_running=False, quit_qapp=True)
print(json.dumps(out))
