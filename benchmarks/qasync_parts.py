"""Where looptools' cost on a qasync callback chain goes, in one process.

    QT_QPA_PLATFORM=offscreen python benchmarks/qasync_parts.py [--rounds 6] [--workload callbacks]

A qasync loop on PySide6 runs one synthetic workload of ``overhead.py`` (a
``call_soon`` chain of 30,000 by default) with nothing attached and under
``looptools.monitor()`` with one part at a time, variants interleaved round by
round; each variant's figure is the fastest of 3 runs, and what is printed is the
median over the rounds of its ratio to the same round's unmonitored run:

* ``stalls``: the stall watchdog as it runs by default (the per-callback hook on
  ``Handle._run``, the ticks, the watchdog thread, the Qt heartbeat);
* ``stalls, no hook``: the same with the per-callback hook taken out once the loop
  runs (what the watchdog, ticks and heartbeat cost alone);
* ``stalls, no ticks``: the watchdog thread looks every poll itself;
* ``slow_callbacks``: the precise hook (two clock reads a callback) and the heartbeat,
  no watchdog thread;
* ``lag``: the heartbeat alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("QT_API", "pyside6")

VARIANTS = ("off", "stalls", "stalls, no hook", "stalls, no ticks", "slow_callbacks", "lag")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--workload", default="callbacks",
                        choices=("callbacks", "task_hops", "queue"))
    parser.add_argument("--size", type=int, default=30_000)
    args = parser.parse_args()
    if args.rounds < 1 or args.size < 1:
        parser.error("--rounds and --size must be at least 1")

    import qasync
    from overhead import workload
    from PySide6 import QtCore

    import looptools
    from looptools.plugins import asyncio_loop

    app = QtCore.QCoreApplication([])
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)

    def fastest() -> float:
        best = float("inf")
        for _ in range(3):
            job = workload(args.workload, args.size)
            started = time.perf_counter()
            loop.run_until_complete(job())
            best = min(best, time.perf_counter() - started)
        return best

    @contextlib.contextmanager
    def attached(variant: str) -> Iterator[None]:
        if variant == "off":
            yield
            return
        settings: dict[str, Any] = {"report": None, "summary": False}
        settings["detectors"] = [variant.split(",")[0]]
        if variant == "stalls, no ticks":
            settings["signal_ticks"] = False
        with looptools.monitor(**settings):
            if variant == "stalls, no hook":
                loop.run_until_complete(asyncio.sleep(0))  # attach (it hooks then)
                asyncio_loop.uninstall_handle_timing()
                if asyncio.events.Handle._run.__module__ != "asyncio.events":
                    raise SystemExit("the hook could not be taken out")
            yield

    times: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
    for n in range(args.rounds):
        order = VARIANTS[n % len(VARIANTS):] + VARIANTS[: n % len(VARIANTS)]
        for variant in order:
            with attached(variant):
                times[variant].append(fastest())
        print(f"round {n + 1}/{args.rounds} done", file=sys.stderr)

    def ratio(variant: str) -> float:
        return statistics.median(
            t / off for t, off in zip(times[variant], times["off"], strict=True))

    print(f"qasync {args.workload} ({args.size:,}), median of {args.rounds} paired ratios:")
    for variant in VARIANTS:
        print(f"  {variant:18s} {statistics.median(times[variant]) * 1e3:8.2f} ms"
              f"  {ratio(variant):.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
