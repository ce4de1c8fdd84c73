"""What an idle second thread costs a single-threaded loop, and what unsharing its fd table saves.

No looptools here: each run is a fresh interpreter (glibc stays in its
multi-threaded mode once a thread was ever started) running one workload with

- ``none``: no other thread;
- ``thread``: one thread blocked in ``Event.wait()`` (as the stall watchdog is
  most of the time);
- ``unshare``: the same thread after ``unshare(CLONE_FILES)`` (Linux), so that
  the main thread is alone with its descriptor table again.

Workloads: ``poll`` (``epoll.poll(0)`` in a loop: one syscall per iteration),
``chain`` (an asyncio ``call_soon`` chain: one ``epoll_wait`` per callback) and
``queue`` (an ``asyncio.Queue`` producer/consumer).  Prints, per workload, the
median over rounds of each mode's time over ``none``'s in the same round.

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

SIZES = {"poll": 2_000_000, "chain": 300_000, "queue": 100_000}
MODES = ("none", "thread", "unshare")


def _poll(n: int) -> float:
    ep = select.epoll()
    t = time.perf_counter()
    for _ in range(n):
        ep.poll(0)
    elapsed = time.perf_counter() - t
    ep.close()
    return elapsed


def _chain(n: int) -> float:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        left = [n]

        def step() -> None:
            left[0] -= 1
            if left[0]:
                loop.call_soon(step)
            else:
                done.set_result(None)

        t = time.perf_counter()
        loop.call_soon(step)
        await done
        return time.perf_counter() - t

    return asyncio.run(main())


def _queue(n: int) -> float:
    async def main() -> float:
        q: asyncio.Queue[int | None] = asyncio.Queue(maxsize=64)

        async def produce() -> None:
            for i in range(n):
                await q.put(i)
            await q.put(None)

        async def consume() -> None:
            while await q.get() is not None:
                pass

        t = time.perf_counter()
        await asyncio.gather(produce(), consume())
        return time.perf_counter() - t

    return asyncio.run(main())


def _child(mode: str, workload: str) -> None:
    stop = threading.Event()
    if mode != "none":
        ready = threading.Event()

        def body() -> None:
            if mode == "unshare":
                import ctypes

                if ctypes.CDLL(None, use_errno=True).unshare(0x400) != 0:  # CLONE_FILES
                    print("unshare failed", file=sys.stderr)
            ready.set()
            stop.wait()

        threading.Thread(target=body, daemon=True).start()
        ready.wait()
    work = {"poll": _poll, "chain": _chain, "queue": _queue}[workload]
    n = SIZES[workload]
    work(n // 10)  # warm up
    print(work(n))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--workloads", default="poll,chain,queue")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(*args.child)
        return 0
    for workload in args.workloads.split(","):
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        for r in range(args.rounds):
            for mode in (MODES if r % 2 == 0 else MODES[::-1]):
                out = subprocess.run([sys.executable, __file__, "--child", mode, workload],
                                     capture_output=True, text=True, check=True)
                times[mode].append(float(out.stdout))
        cells = []
        for mode in MODES[1:]:
            ratios = [a / b for a, b in zip(times[mode], times["none"], strict=True)]
            cells.append(f"{mode} {statistics.median(ratios):.3f}x")
        print(f"{workload:6s} vs no thread: " + "   ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
