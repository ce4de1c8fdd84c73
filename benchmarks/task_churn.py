"""What monitoring costs an app that makes many short tasks, detector by detector.

    python benchmarks/task_churn.py [--tasks 20000] [--batch 100] [--rounds 5]

The workload: ``--tasks`` tasks made ``--batch`` at a time with
``asyncio.create_task``, each awaiting ``asyncio.sleep(0)`` once, gathered per
batch, on plain asyncio.  Each variant (unmonitored, ``looptools.monitor()``
with every default detector, without the task audit, with the task audit alone,
with the lag probe alone) runs ``--rounds`` times, interleaved round by round;
the figure is the fastest run's time over the fastest unmonitored run's.  The
task audit's per-task work is the wrapped ``create_task`` (creation site, a weak
dictionary entry) and one done callback (the exact live count behind the peak).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import looptools


async def _work() -> None:
    await asyncio.sleep(0)


async def _app(tasks: int, batch: int) -> float:
    began = time.perf_counter()
    for _ in range(tasks // batch):
        made = [asyncio.create_task(_work()) for _ in range(batch)]
        await asyncio.gather(*made)
    return time.perf_counter() - began


VARIANTS: dict[str, dict[str, Any] | None] = {
    "off": None,
    "all detectors": {},
    "without tasks": {"disable": "tasks"},
    "tasks alone": {"detectors": "tasks"},
    "lag alone": {"detectors": "lag"},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=20000)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    best = {name: float("inf") for name in VARIANTS}
    for _ in range(args.rounds):
        for name, settings in VARIANTS.items():
            if settings is None:
                took = asyncio.run(_app(args.tasks, args.batch))
            else:
                with looptools.monitor(report=None, **settings):
                    took = asyncio.run(_app(args.tasks, args.batch))
            best[name] = min(best[name], took)
    off = best["off"]
    print(f"{args.tasks} tasks in batches of {args.batch}, fastest of {args.rounds}; "
          f"unmonitored {off / args.tasks * 1e6:.2f} us a task")
    for name, took in best.items():
        if name != "off":
            extra = (took - off) / args.tasks * 1e6
            print(f"  {name:14} {took / off:.3f}x  (+{extra:.2f} us a task)")


if __name__ == "__main__":
    main()
