"""Rounds of one callback each: a C call that holds the GIL a little over the threshold,
then some Python.  Each round is one stall, as long as the callback ran.

usage: python gil_hold_rounds.py ROUNDS HOLD_MS AFTER_MS

Prints ``MARKS {"origin": ..., "rounds": [[start, hold_end, end], ...]}`` to stderr
(perf_counter seconds; origin: the monitor's, when monitored).
"""

from __future__ import annotations

import asyncio
import random
import sys
import time

from _marks import print_marks

ROUNDS, HOLD, AFTER = int(sys.argv[1]), float(sys.argv[2]) / 1000, float(sys.argv[3]) / 1000


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def main() -> list[list[float]]:
    n = 2_000_000
    start = time.perf_counter()
    sum(range(n))
    n = int(n * HOLD / (time.perf_counter() - start))
    rounds = []
    for _ in range(ROUNDS):
        await asyncio.sleep(0.12 + random.random() * 0.01)
        t0 = time.perf_counter()
        spin(random.random() * 0.003)
        h0 = time.perf_counter()
        sum(range(n))  # holds the GIL: no bytecode, no signal handler, no other thread
        t1 = time.perf_counter()
        n = int(n * HOLD / (t1 - h0))  # (the machine's pace changes)
        spin(AFTER)
        rounds.append([t0, t1, time.perf_counter()])
    return rounds


rounds = asyncio.run(main())
print_marks(rounds)
print("done")
