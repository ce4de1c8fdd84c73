"""Why the stall watchdog does not look from a thread every few ms (docs/design.md).

    python benchmarks/gil_convoy.py [--rounds 12] [--periods 1,5,20,50]

Runs ``benchmarks/overhead.py``'s plain-asyncio workloads beside a bare Python
thread that wakes every PERIOD ms and does nothing else, alternating with runs
without it, and prints the median paired ratio (thread / none) per workload and
period, and how late the thread got the GIL after its wait ended (median and
max, over its wakes).  No looptools involved: this is CPython's GIL hand-off.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead


def _once(workload: str, period: float | None) -> tuple[float, list[float]]:
    stop = threading.Event()
    late: list[float] = []
    thread = None
    if period is not None:
        def ticker() -> None:
            while True:
                asked = time.perf_counter()
                if stop.wait(period):
                    return
                late.append(time.perf_counter() - asked - period)

        thread = threading.Thread(target=ticker, daemon=True)
        thread.start()
    elapsed = asyncio.run(overhead._workload(workload)())
    stop.set()
    if thread is not None:
        thread.join()
    return elapsed, late


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--periods", default="1,5,20,50", help="thread wake periods, ms")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    try:
        periods = [float(p) / 1000.0 for p in args.periods.split(",")]
    except ValueError:
        parser.error(f"--periods: not a comma-separated list of ms: {args.periods!r}")
    variants: list[float | None] = [None, *periods]
    for workload in overhead.WORKLOADS:
        times: dict[float | None, list[float]] = {v: [] for v in variants}
        lates: dict[float | None, list[float]] = {v: [] for v in variants}
        for round_no in range(args.rounds + 1):  # round 0 warms up
            shift = round_no % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                elapsed, late = _once(workload, variant)
                if round_no:
                    times[variant].append(elapsed)
                    lates[variant].extend(late)
        for period in periods:
            paired = zip(times[period], times[None], strict=True)
            ratio = statistics.median(a / b for a, b in paired)
            late = sorted(lates[period]) or [0.0]
            print(f"{workload:10s} thread every {period * 1000:4.0f} ms: {ratio:.3f}x   "
                  f"GIL late by median {statistics.median(late) * 1000:.2f} ms, "
                  f"max {late[-1] * 1000:.1f} ms ({len(late)} wakes)", flush=True)


if __name__ == "__main__":
    main()
