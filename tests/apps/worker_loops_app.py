"""Asyncio loops on worker threads, under three kinds of main thread.

    worker_loops_app.py MAIN [--stall] [--many N] [--problems]   MAIN: qt | asyncio | qasync

* ``qt``: a Qt main thread with no asyncio loop (``app.exec()``); each device job is a
  ``QRunnable`` on a ``QThreadPool`` whose ``run()`` calls ``asyncio.run(job(n))`` and
  reports progress with a queued signal.
* ``asyncio``: ``asyncio.run(main())``; the jobs run in an executor's threads
  (``run_in_executor``), each with its own ``asyncio.run``, and report progress with
  ``call_soon_threadsafe``.
* ``qasync``: a qasync loop on the main thread; the jobs are ``QRunnable`` s again.

Beside the jobs, in every mode: a ``threading.Thread`` named ``device-poller`` runs its
own loop (``run_forever``, stopped at the end), and each of three commands runs in a
short-lived daemon thread of its own (``asyncio.run(command(i))``).

``--stall``: job 4's coroutine blocks its loop with ``time.sleep(0.2)`` (the CULPRIT
marked job-stall), and the poller's loop once with ``time.sleep(0.25)`` (poller-stall).
The main thread never blocks.

``--many N``: instead, N short jobs one after another on a one-thread pool (``qt``) or
executor (``asyncio``); prints ``MANY {"jobs": N, "seconds": ...}`` to stderr.

``--problems``: instead, one job (a ``QRunnable``, or an executor's thread for
``asyncio``) whose loop has what the main loop's detectors look for: a ticker task
timing its own ``sleep(0.005)`` wake-ups, late while the job blocks its loop 100 ms
(worker-block); a real temporary file opened in the coroutine (worker-open); a task
left pending when ``asyncio.run`` ends (leaked-task).  Prints ``PROBLEMS {"max_late_ms":
...}`` (the ticker's own measure of its latest wake-up) to stderr.

Prints one deterministic line to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

JOBS = 8
STALL_JOB = 4
COMMANDS = 3

parser = argparse.ArgumentParser()
parser.add_argument("main", choices=("qt", "asyncio", "qasync"))
parser.add_argument("--stall", action="store_true")
parser.add_argument("--many", type=int, default=0)
parser.add_argument("--problems", action="store_true")
ARGS = parser.parse_args()
if ARGS.problems:
    JOBS = 1


async def job(n: int, progress: Callable[[int], None]) -> int:
    """A device exchange: send, wait for the device, read back; progress after each step."""
    steps = 0
    for _step in range(4):
        await asyncio.sleep(0.01)
        steps += 1
        progress(n)
        if ARGS.stall and n == STALL_JOB and steps == 2:
            time.sleep(0.2)  # CULPRIT: job-stall
    return steps


async def short_job() -> int:
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    return 1


def run_job(n: int, progress: Callable[[int], None]) -> int:
    if ARGS.problems:
        with tempfile.TemporaryDirectory() as folder:  # made and removed off the loop
            path = os.path.join(folder, "device.cfg")
            with open(path, "w", encoding="utf-8") as config:
                config.write("rate=100\n")
            return asyncio.run(problem_job(path))
    return asyncio.run(job(n, progress))


async def watch_device() -> None:
    await asyncio.sleep(3600)


#: the tasks problem_job starts and never awaits
watching: list[asyncio.Task[None]] = []


async def problem_job(path: str) -> int:
    loop = asyncio.get_running_loop()
    lates: list[float] = []

    async def ticker() -> None:
        for _ in range(30):
            due = loop.time() + 0.005
            await asyncio.sleep(0.005)
            lates.append(loop.time() - due)

    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(0.03)
    with open(path, encoding="utf-8") as config:  # CULPRIT: worker-open
        config.read()
    time.sleep(0.1)  # CULPRIT: worker-block
    await ticking
    left = asyncio.create_task(watch_device(), name="device-watch")  # CULPRIT: leaked-task
    watching.append(left)
    await asyncio.sleep(0)
    print("PROBLEMS " + json.dumps({"max_late_ms": max(lates) * 1000.0}), file=sys.stderr,
          flush=True)
    return 1


class Poller:
    """A thread running its own loop until told to stop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.ticks = 0
        self.thread = threading.Thread(target=self._run, name="device-poller")

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        task = self.loop.create_task(self._poll())
        try:
            self.loop.run_forever()
            task.cancel()
            try:
                self.loop.run_until_complete(task)  # the same loop, running again
            except asyncio.CancelledError:
                pass
        finally:
            self.loop.close()

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1
            if ARGS.stall and self.ticks == 15:
                time.sleep(0.25)  # CULPRIT: poller-stall

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


async def command(i: int) -> str:
    await asyncio.sleep(0.005 * (i + 1))
    return f"ok {i}"


def run_commands() -> list[threading.Thread]:
    threads = []
    for i in range(COMMANDS):
        thread = threading.Thread(target=lambda i=i: asyncio.run(command(i)), daemon=True)
        thread.start()
        threads.append(thread)
    return threads


results = {"jobs": 0, "progress": 0}


def summary(poller: Poller, commands: list[threading.Thread]) -> None:
    for thread in commands:
        thread.join(10)
    print(f"worker_loops_app: {results['jobs']} jobs, {results['progress']} progress reports, "
          f"{sum(not t.is_alive() for t in commands)} commands, "
          f"poller {'ticked' if poller.ticks > 5 else 'idle'}", flush=True)


# -- a Qt main thread (qt, qasync) ------------------------------------------------------------
def qt_pool() -> tuple[Any, Any, Any, Any]:
    """The QApplication, the jobs' signals, the job class and the pool class."""
    from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
    from PySide6.QtWidgets import QApplication

    class JobSignals(QObject):
        progress = Signal(int)
        done = Signal(int)

    class DeviceJob(QRunnable):
        def __init__(self, n: int, signals: JobSignals) -> None:
            super().__init__()
            self.n = n
            self.signals = signals

        def run(self) -> None:
            if ARGS.many:
                asyncio.run(short_job())
            else:
                run_job(self.n, self.signals.progress.emit)
            self.signals.done.emit(self.n)

    app = QApplication.instance() or QApplication([])
    return app, JobSignals(), DeviceJob, QThreadPool


def main_qt() -> None:
    from PySide6.QtCore import QTimer

    app, signals, job_class, pool_class = qt_pool()
    pool = pool_class()
    poller = Poller()
    commands: list[threading.Thread] = []
    count = ARGS.many or JOBS
    started = [0.0]
    if ARGS.many:
        pool.setMaxThreadCount(1)

    def on_progress(n: int) -> None:
        results["progress"] += 1

    def on_done(n: int) -> None:
        results["jobs"] += 1
        if results["jobs"] == count:
            if ARGS.many:
                many_done(count, time.perf_counter() - started[0])
            app.quit()

    signals.progress.connect(on_progress)
    signals.done.connect(on_done)

    def submit(n: int) -> None:
        pool.start(job_class(n, signals))

    def begin() -> None:
        if ARGS.many:
            started[0] = time.perf_counter()
            for n in range(count):
                submit(n)
            return
        poller.thread.start()
        commands.extend(run_commands())
        for n in range(JOBS):
            QTimer.singleShot(30 * n, lambda n=n: submit(n))

    QTimer.singleShot(100, begin)
    app.exec()
    pool.waitForDone()
    if not ARGS.many:
        poller.stop()
        summary(poller, commands)


def many_done(count: int, seconds: float) -> None:
    print("MANY " + json.dumps({"jobs": count, "seconds": seconds}), file=sys.stderr, flush=True)
    print(f"worker_loops_app: {count} short jobs", flush=True)


# -- an asyncio main loop (asyncio, qasync) ---------------------------------------------------
async def main_async() -> None:
    loop = asyncio.get_running_loop()
    if ARGS.many:
        with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="job") as pool:
            started = time.perf_counter()
            for _ in range(ARGS.many):
                await loop.run_in_executor(pool, asyncio.run, short_job())
            many_done(ARGS.many, time.perf_counter() - started)
        return
    poller = Poller()
    await asyncio.sleep(0.1)
    poller.thread.start()
    commands = run_commands()

    def bump() -> None:
        results["progress"] += 1

    def progress(n: int) -> None:
        loop.call_soon_threadsafe(bump)

    if ARGS.main == "qasync":
        done = await qt_jobs(loop)
    else:
        with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="job") as pool:
            futures = []
            for n in range(JOBS):
                futures.append(loop.run_in_executor(pool, run_job, n, progress))
                await asyncio.sleep(0.03)
            done = len(await asyncio.gather(*futures))
    results["jobs"] = done
    await asyncio.sleep(0.05)
    poller.stop()
    summary(poller, commands)


async def qt_jobs(loop: asyncio.AbstractEventLoop) -> int:
    _app, signals, job_class, pool_class = qt_pool()
    pool = pool_class()
    finished = loop.create_future()
    count = [0]

    def on_progress(n: int) -> None:
        results["progress"] += 1

    def on_done(n: int) -> None:
        count[0] += 1
        if count[0] == JOBS and not finished.done():
            finished.set_result(JOBS)

    signals.progress.connect(on_progress)
    signals.done.connect(on_done)
    for n in range(JOBS):
        pool.start(job_class(n, signals))
        await asyncio.sleep(0.03)
    result: int = await finished
    pool.waitForDone()
    return result


if ARGS.main == "qt":
    main_qt()
elif ARGS.main == "asyncio":
    asyncio.run(main_async())
else:
    import qasync
    from PySide6.QtWidgets import QApplication

    qapp = QApplication.instance() or QApplication([])
    qloop = qasync.QEventLoop(qapp)
    with qloop:
        qloop.run_until_complete(main_async())
