"""What an idle second thread costs a single-threaded loop, and what unsharing its fd table saves.

No looptools monitor here (only its descriptor-table set-up, for ``unshare``):
each run is a fresh interpreter (glibc stays in its
multi-threaded mode once a thread was ever started) running one workload with

- ``none``: no other thread;
- ``thread``: one thread blocked in ``Event.wait()`` (as the stall watchdog is
  most of the time);
- ``unshare``: the same thread after ``unshare(CLONE_FILES)`` (Linux), so that
  the main thread is alone with its descriptor table again.

Workloads: ``poll`` (``epoll.poll(0)`` in a loop: one syscall per iteration)
and ``benchmarks/overhead.py``'s plain-asyncio ones (``callbacks``, a
``call_soon`` chain with one ``epoll_wait`` per callback; ``task_hops``;
``queue``).  Prints, per workload, the median over rounds of each mode's time
over ``none``'s in the same round.

    python benchmarks/thread_cost.py --rounds 10
"""

from __future__ import annotations

import argparse
import asyncio
import select
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead

from looptools.inapp._fdtable import private_fd_table

POLLS = 2_000_000
MODES = ("none", "thread", "unshare")


def _poll(n: int) -> float:
    ep = select.epoll()
    t = time.perf_counter()
    for _ in range(n):
        ep.poll(0)
    elapsed = time.perf_counter() - t
    ep.close()
    return elapsed


def _work(workload: str) -> float:
    if workload == "poll":
        return _poll(POLLS)
    return float(asyncio.run(overhead._workload(workload)()))


def _child(mode: str, workload: str) -> None:
    stop = threading.Event()
    if mode != "none":
        ready = threading.Event()

        unshared: list[bool] = []

        def body() -> None:
            if mode == "unshare":  # the same set-up as the stall watchdog's thread
                unshared.append(private_fd_table({0, 1, 2}))
            ready.set()
            stop.wait()

        threading.Thread(target=body, daemon=True).start()
        ready.wait()
        if mode == "unshare" and not unshared[0]:
            raise SystemExit("unshare(CLONE_FILES) is not available here")
    _work(workload)  # warm up
    print(_work(workload))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--workloads", default="poll,callbacks,queue")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return 0
    workloads = args.workloads.split(",")
    unknown = sorted(set(workloads) - {"poll", *overhead.SIZES})
    if unknown:
        parser.error(f"--workloads: unknown {', '.join(unknown)} "
                     f"(known: poll, {', '.join(overhead.SIZES)})")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    for workload in workloads:
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        for r in range(args.rounds):
            for mode in (MODES if r % 2 == 0 else MODES[::-1]):
                out = subprocess.run([sys.executable, __file__, "--child", mode, workload],
                                     capture_output=True, text=True)
                if out.returncode != 0:
                    last = (out.stderr.strip().splitlines() or ["no output"])[-1]
                    print(f"thread_cost: {workload} with {mode} failed: {last}", file=sys.stderr)
                    return 1
                times[mode].append(float(out.stdout))
        cells = []
        for mode in MODES[1:]:
            ratios = [a / b for a, b in zip(times[mode], times["none"], strict=True)]
            cells.append(f"{mode} {statistics.median(ratios):.3f}x")
        print(f"{workload:9s} vs no thread: " + "   ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
