"""Three stalls in one run, for the platform-fallback tests: a blocking sleep, a
pure-Python busy loop and a C call that holds the GIL, 200 ms each by default.

    python fallback_app.py LOOP [STALL_MS]

LOOP: asyncio | qasync | qtasyncio | qt (a Qt main thread without asyncio).
Culprit lines carry ``# CULPRIT: <name>``.  The app prints three lines and
exits with status 3, monitored or not.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

LOOP = sys.argv[1]
STALL = float(sys.argv[2]) / 1000.0 if len(sys.argv) > 2 else 0.2
MARKS: dict[str, list[float]] = {}


def calibrate() -> int:
    """How long a ``sum`` takes STALL seconds (the least disturbed of three tries:
    a busy machine makes it longer, not shorter)."""
    n = 1_000_000
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        sum(range(n))
        best = min(best, time.perf_counter() - start)
    return int(n * STALL / best)


N = calibrate()


def sleeper() -> None:
    time.sleep(STALL)  # CULPRIT: sleep


def spin() -> int:
    deadline = time.perf_counter() + STALL
    count = 0
    while time.perf_counter() < deadline:  # CULPRIT: spin
        count += 1
    return count


def hash_blob() -> int:
    return sum(range(N))  # CULPRIT: gil-call


def run(name: str) -> None:
    start = time.perf_counter()
    {"sleep": sleeper, "spin": spin, "gil-call": hash_blob}[name]()
    MARKS[name] = [start, time.perf_counter()]


async def main() -> str:
    for name in ("sleep", "spin", "gil-call"):
        await asyncio.sleep(0.3)
        run(name)
    await asyncio.sleep(0.3)
    return "done"


print("fallback app", LOOP, flush=True)
if LOOP == "asyncio":
    result = asyncio.run(main())
elif LOOP == "qasync":
    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    result = qasync.run(main())
elif LOOP == "qtasyncio":
    import PySide6.QtAsyncio as QtAsyncio
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    result = QtAsyncio.run(main(), keep_running=False, quit_qapp=True)
elif LOOP == "qt":
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QLabel

    app = QApplication([])
    label = QLabel("fallback")
    label.show()
    for i, name in enumerate(("sleep", "spin", "gil-call")):
        QTimer.singleShot(700 + i * 500, lambda name=name: run(name))
    QTimer.singleShot(700 + 3 * 500 + 200, app.quit)
    app.exec()
    result = "done"
else:
    raise SystemExit(f"unknown loop {LOOP}")
print("result", result, flush=True)
print("MARKS " + json.dumps(MARKS), file=sys.stderr)
print("exiting with 3", flush=True)
sys.exit(3)
