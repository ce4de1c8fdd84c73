"""What the affinity detector costs: its default (Qt's message handler) and its dev mode.

    QT_QPA_PLATFORM=offscreen QT_API=pyside6 python benchmarks/affinity_cost.py [--rounds 7]

1. asyncio: an empty ``call_soon`` chain (each callback schedules the next) on the main
   thread, plain vs ``looptools.monitor(detectors="affinity")`` (default: nothing is
   installed on plain asyncio) vs the same with ``thread_checks`` (the loop's
   ``call_soon``/``call_at`` shadowed on the instance).  Alternating, median of
   ``--rounds``; µs per callback and the ratio.
2. Qt (qasync on the binding of ``QT_API``): a worker ``threading.Thread`` making plain
   Python calls (a function called 200,000 times) while the GUI loop idles, plain vs
   monitored with ``thread_checks`` (the profile function on that worker); µs per
   call and the ratio.  The default (message handler only) costs nothing here: Qt calls
   it only when it logs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import threading
import time
from typing import Any

import looptools


def chain(callbacks: int) -> float:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        left = [callbacks]

        def step() -> None:
            left[0] -= 1
            if left[0]:
                loop.call_soon(step)
            else:
                done.set_result(None)

        started = time.perf_counter()
        loop.call_soon(step)
        await done
        return time.perf_counter() - started

    return asyncio.run(main())


def monitored(mode: str) -> Any:
    if mode == "plain":
        return None
    return looptools.monitor(report=None, summary=False, detectors="affinity",
                             thread_checks=mode == "thread_checks")


def asyncio_rounds(rounds: int, callbacks: int) -> dict[str, float]:
    times: dict[str, list[float]] = {"plain": [], "affinity": [], "thread_checks": []}
    for _ in range(rounds):
        for mode in times:
            monitor = monitored(mode)
            if monitor is None:
                times[mode].append(chain(callbacks))
            else:
                with monitor:
                    times[mode].append(chain(callbacks))
    return {mode: 1e6 * statistics.median(t) / callbacks for mode, t in times.items()}


def worker_calls(calls: int) -> float:
    def f(x: int) -> int:
        return x + 1

    out = [0.0]

    def work() -> None:
        started = time.perf_counter()
        total = 0
        for i in range(calls):
            total += f(i)
        out[0] = time.perf_counter() - started

    thread = threading.Thread(target=work, name="bench-worker")
    thread.start()
    thread.join()
    return out[0]


def qt_rounds(rounds: int, calls: int) -> dict[str, float]:
    binding = {"pyside6": "PySide6", "pyqt6": "PyQt6", "pyqt5": "PyQt5",
               "pyside2": "PySide2"}[os.environ.get("QT_API", "pyside6")]
    import importlib

    widgets: Any = importlib.import_module(f"{binding}.QtWidgets")
    import qasync

    app = widgets.QApplication.instance() or widgets.QApplication([])
    times: dict[str, list[float]] = {"plain": [], "thread_checks": []}

    for _ in range(rounds):
        for mode in times:
            loop = qasync.QEventLoop(app)
            monitor = monitored(mode)
            try:
                if monitor is None:
                    times[mode].append(_in_loop(loop, calls))
                else:
                    with monitor:
                        times[mode].append(_in_loop(loop, calls))
            finally:
                loop.close()
    return {mode: 1e6 * statistics.median(t) / calls for mode, t in times.items()}


def _in_loop(loop: Any, calls: int) -> float:
    async def main() -> float:
        await asyncio.sleep(0.01)  # attached by now
        return worker_calls(calls)

    return float(loop.run_until_complete(main()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--callbacks", type=int, default=200_000)
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    per = asyncio_rounds(args.rounds, args.callbacks)
    print(f"asyncio call_soon chain ({args.callbacks} callbacks, median of {args.rounds}):")
    for mode, us in per.items():
        print(f"  {mode:14s} {us:6.3f} µs/callback  x{us / per['plain']:.3f}")
    qt = qt_rounds(args.rounds, args.calls)
    print(f"worker thread, {args.calls} Python calls while a qasync loop idles "
          f"(median of {args.rounds}):")
    for mode, us in qt.items():
        print(f"  {mode:14s} {us:6.3f} µs/call  x{us / qt['plain']:.3f}")


if __name__ == "__main__":
    main()
