"""What watching asyncio loops on worker threads costs: the main loop, a worker's callbacks,
and one ``asyncio.run`` per job.

    python benchmarks/worker_loop_cost.py [--pairs 7] [--cpu]

All in one process, each figure a median of ``--pairs`` alternating pairs:

* **main loop**: overhead.py's 50,000-callback ``call_soon`` chain on a plain asyncio
  main loop under ``looptools.monitor()`` with every detector, against the same with
  ``worker_loops`` switched off, while a worker thread runs its own (idle) loop.  The
  worker hooks are on that loop object only, so this should be 1.00.
* **a worker's callbacks**: the same chain on a loop running on a worker thread, under
  the monitor (every detector) against unmonitored: ns per callback.
* **a worker's timers and tasks**: a chain of 20,000 ``call_later(0)`` timers (each
  one's lateness is the worker's lag), and 20,000 ``await create_task(...)`` (each
  task is kept weakly for the worker's task audit), the same way: ns per timer, per task.
* **one loop per job**: 500 ``asyncio.run(job())`` one after another on a worker
  thread, a job that waits twice for 1 ms and one that does nothing, monitored
  against unmonitored: the ratio and the microseconds each ``asyncio.run`` gains.

``--cpu`` times each run by the CPU time of the thread that runs it
(``time.thread_time()``) instead of the wall clock: on a machine shared with other
work, the wall clock measures mostly how often the thread was kept off a core.  The
monitor's own threads (the watchdog) are then not counted.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import workload

import looptools
from looptools.settings import DETECTORS

CHAIN = 50_000
TIMERS = 20_000
JOBS = 500
ALL_BUT_WORKERS = ",".join(d for d in DETECTORS if d != "worker_loops")
#: what a run is timed by (``--cpu``: the CPU time of the thread running it)
clock = time.perf_counter


def _monitored(detectors: str | None, run: Callable[[], float]) -> float:
    if detectors is None:
        return run()
    with looptools.monitor(report=None, summary=False, detectors=detectors):
        return run()


def _on_thread(run: Callable[[], float]) -> float:
    out: list[float] = []
    thread = threading.Thread(target=lambda: out.append(run()), name="bench-worker")
    thread.start()
    thread.join()
    return out[0]


def main_chain(detectors: str) -> float:
    """The chain on the main thread's loop, an idle worker loop beside it."""
    idle = asyncio.new_event_loop()
    beside = threading.Thread(target=idle.run_forever, name="idle-worker")

    def run() -> float:
        beside.start()
        body = workload("callbacks", CHAIN)

        async def timed() -> float:
            await asyncio.sleep(0)
            started = clock()
            await body()
            return clock() - started

        try:
            return asyncio.run(timed())
        finally:
            idle.call_soon_threadsafe(idle.stop)
            beside.join()

    try:
        return _monitored(detectors, run)
    finally:
        idle.close()


def worker_chain(detectors: str | None) -> float:
    body = workload("callbacks", CHAIN)

    async def timed() -> float:
        await asyncio.sleep(0)
        started = clock()
        await body()
        return clock() - started

    return _monitored(detectors, lambda: _on_thread(lambda: asyncio.run(timed())))


def worker_timers(detectors: str | None) -> float:
    """A chain of ``call_later(0)`` timers on a worker thread's loop."""

    async def timed() -> float:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        count = 0

        def step() -> None:
            nonlocal count
            count += 1
            if count < TIMERS:
                loop.call_later(0, step)
            else:
                done.set_result(None)

        await asyncio.sleep(0)
        started = clock()
        loop.call_later(0, step)
        await done
        return clock() - started

    return _monitored(detectors, lambda: _on_thread(lambda: asyncio.run(timed())))


def worker_tasks(detectors: str | None) -> float:
    """``TIMERS`` tasks created and awaited one after another on a worker thread's loop."""

    async def nothing() -> None:
        pass

    async def timed() -> float:
        await asyncio.sleep(0)
        started = clock()
        for _ in range(TIMERS):
            await asyncio.create_task(nothing())
        return clock() - started

    return _monitored(detectors, lambda: _on_thread(lambda: asyncio.run(timed())))


async def _job(wait: float) -> int:
    await asyncio.sleep(wait)
    await asyncio.sleep(wait)
    return 1


def jobs(detectors: str | None, wait: float) -> float:
    def run() -> float:
        started = clock()
        for _ in range(JOBS):
            asyncio.run(_job(wait))
        return clock() - started

    return _monitored(detectors, lambda: _on_thread(run))


def _pairs(pairs: int, a: Callable[[], float], b: Callable[[], float]) -> list[tuple[float, float]]:
    out = []
    for i in range(pairs + 1):  # the first pair warms up and is dropped
        if i % 2:
            x, y = a(), b()
        else:
            y, x = b(), a()
        if i:
            out.append((x, y))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--cpu", action="store_true",
                        help="time by the running thread's CPU time, not the wall clock")
    args = parser.parse_args()
    global clock
    if args.cpu:
        clock = time.thread_time
    if args.pairs < 1:
        parser.error(f"--pairs must be at least 1, got {args.pairs}")

    chain = _pairs(args.pairs, lambda: main_chain("all"), lambda: main_chain(ALL_BUT_WORKERS))
    ratios = sorted(w / wo for w, wo in chain)
    quarter = len(ratios) // 4
    print(f"main loop, {CHAIN:,}-callback chain, worker_loops on / off (all other detectors "
          f"on, an idle worker loop beside): median {statistics.median(ratios):.3f}x "
          f"(IQR {ratios[quarter]:.3f}-{ratios[len(ratios) - 1 - quarter]:.3f})")

    worker = _pairs(args.pairs, lambda: worker_chain("all"), lambda: worker_chain(None))
    extra = statistics.median((w - p) / CHAIN * 1e9 for w, p in worker)
    ratio = statistics.median(w / p for w, p in worker)
    print(f"a worker loop's {CHAIN:,}-callback chain, monitored / not: median {ratio:.3f}x, "
          f"{extra:+.0f} ns per callback")

    for run, what in ((worker_timers, "call_later(0) timer"), (worker_tasks, "task")):
        runs = _pairs(args.pairs, functools.partial(run, "all"), functools.partial(run, None))
        extra = statistics.median((w - p) / TIMERS * 1e9 for w, p in runs)
        ratio = statistics.median(w / p for w, p in runs)
        print(f"a worker loop's {TIMERS:,} x {what}, monitored / not: median {ratio:.3f}x, "
              f"{extra:+.0f} ns per {what.split()[-1]}")

    for wait, label in ((0.001, "a job waiting 2 x 1 ms"), (0.0, "an empty job")):
        runs = _pairs(args.pairs, functools.partial(jobs, "all", wait),
                      functools.partial(jobs, None, wait))
        ratio = statistics.median(m / p for m, p in runs)
        extra = statistics.median((m - p) / JOBS * 1e6 for m, p in runs)
        plain = statistics.median(p for _m, p in runs) / JOBS * 1e6
        print(f"{JOBS} x asyncio.run({label}) on a worker, monitored / not: median "
              f"{ratio:.3f}x ({extra:+.0f} us per job of {plain:.0f} us)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
