"""A small app for detector tests: one loop kind, one injected problem, exact lines.

    python probe_app.py LOOP PROBLEM [STALL_MS]

LOOP: asyncio | uvloop | qasync | qtasyncio | qt (Qt main thread, no asyncio loop)
PROBLEM: none | blocking-slot | blocking-coro | cpu-parse | sync-io | gil-call |
         gc-pause | gc-collect | sleep-gc | leaked-task | unretrieved-exception | idle-sleep

gc-pause: a heap of 300 lists of 100,000 items (240 MB) is built at start; the problem
makes 100,000 small lists and keeps them, which sets off one full collection of that
heap (~130 ms here) while the allocating line runs (STALL is not used).
gc-collect: the same heap, collected by the app's own ``gc.collect()``.
sleep-gc: ``time.sleep(STALL)``, then the allocating of gc-pause against a heap twice
as large (a full collection of ~250 ms).
Culprit lines carry ``# CULPRIT: <problem>``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

LOOP, PROBLEM = sys.argv[1], sys.argv[2]
STALL = float(sys.argv[3]) / 1000.0 if len(sys.argv) > 3 else 0.2
MARKS: dict[str, float] = {}


def mark(name: str) -> None:
    MARKS[name] = time.perf_counter()


def blocking_slot() -> None:
    mark("stall_start")
    time.sleep(STALL)  # CULPRIT: blocking-slot
    mark("stall_end")


def parse_records(seconds: float) -> int:  # CULPRIT: cpu-parse
    deadline = time.perf_counter() + seconds
    total = 0
    while time.perf_counter() < deadline:
        for i in range(1000):
            total += i * i % 7
    return total


def save_sync(seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    with tempfile.TemporaryFile() as handle:
        while time.perf_counter() < deadline:
            handle.write(b"x" * 65536)  # CULPRIT: sync-io
            handle.flush()
            os.fsync(handle.fileno())


def calibrate() -> int:
    n = 2_000_000
    start = time.perf_counter()
    sum(range(n))
    return int(n * STALL / (time.perf_counter() - start))


def hash_blob(n: int) -> int:
    return sum(range(n))  # CULPRIT: gil-call


KEPT: list[list[int]] = []


def allocate(n: int) -> None:
    for i in range(n):
        KEPT.append([i])  # CULPRIT: gc-pause


def do_problem() -> None:
    """Run the injected problem synchronously on the loop thread."""
    mark("stall_start")
    if PROBLEM == "blocking-coro":
        time.sleep(STALL)  # CULPRIT: blocking-coro
    elif PROBLEM == "cpu-parse":
        parse_records(STALL)
    elif PROBLEM == "sync-io":
        save_sync(STALL)
    elif PROBLEM == "gil-call":
        hash_blob(N)
    elif PROBLEM == "gc-pause":
        allocate(100_000)
    elif PROBLEM == "gc-collect":
        gc.collect()  # CULPRIT: gc-collect
    elif PROBLEM == "sleep-gc":
        time.sleep(STALL)  # CULPRIT: sleep-gc
        allocate(100_000)
    mark("stall_end")


async def poll_forever() -> None:
    while True:
        await asyncio.sleep(0.05)  # CULPRIT: leaked-task


async def fail() -> None:
    raise ValueError("boom")


async def main() -> None:
    await asyncio.sleep(0.3)
    if PROBLEM == "blocking-slot":
        from PySide6.QtCore import QTimer

        QTimer.singleShot(0, blocking_slot)
        await asyncio.sleep(STALL + 0.2)
    elif PROBLEM in ("blocking-coro", "cpu-parse", "sync-io", "gil-call", "gc-pause",
                     "gc-collect", "sleep-gc"):
        do_problem()
    elif PROBLEM == "leaked-task":
        asyncio.ensure_future(poll_forever()).set_name("leaky-poller")
    elif PROBLEM == "unretrieved-exception":
        asyncio.ensure_future(fail())  # noqa: RUF006 - the point: nobody keeps it
        await asyncio.sleep(0.05)
        gc.collect()
    elif PROBLEM == "idle-sleep":
        mark("idle_start")
        await asyncio.sleep(STALL)
        mark("idle_end")
    await asyncio.sleep(0.3)
    print("probe done", PROBLEM)


def report_marks() -> None:
    # Marks go to stderr so stdout stays the app's own output.
    import json

    print("MARKS " + json.dumps(MARKS), file=sys.stderr)


N = calibrate() if PROBLEM == "gil-call" else 0
if PROBLEM in ("gc-pause", "gc-collect", "sleep-gc"):
    HEAP = [[None] * 100_000 for _ in range(600 if PROBLEM == "sleep-gc" else 300)]
    gc.collect()  # the heap is old: the next full collection waits for 25 % more

if LOOP == "asyncio":
    asyncio.run(main())
elif LOOP == "uvloop":
    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(main())
elif LOOP == "qasync":
    import qasync
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    qasync.run(main())
elif LOOP == "qtasyncio":
    import PySide6.QtAsyncio as QtAsyncio
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    QtAsyncio.run(main(), keep_running=False, quit_qapp=True)
elif LOOP == "qt":
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QLabel

    app = QApplication([])
    label = QLabel("probe")
    label.show()
    if PROBLEM == "blocking-slot":
        QTimer.singleShot(700, blocking_slot)
    elif PROBLEM != "none":
        QTimer.singleShot(700, do_problem)
    QTimer.singleShot(700 + int(STALL * 1000) + 400, app.quit)
    app.exec()
    print("probe done", PROBLEM)
report_marks()
