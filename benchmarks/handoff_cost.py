"""What measuring cross-thread hand-offs costs, per hand-off and at 1,000 a second.

    python benchmarks/handoff_cost.py [--rounds 7] [--posts 20000]

A worker thread posts ``--posts`` callbacks with ``loop.call_soon_threadsafe`` as fast
as it can while the loop runs them; timed on the worker from the first post to the
last callback run.  Plain asyncio vs ``looptools.monitor()`` with only the
``handoffs`` detector (so that the figure is this detector's), alternating, median of
``--rounds`` pairs.  Prints microseconds per hand-off each way, their ratio, and what
that is at 1,000 hand-offs a second as a share of one core.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time

import looptools


def one(posts: int, monitored: bool) -> float:
    async def main() -> float:
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        count = [0]

        def on_loop() -> None:
            count[0] += 1
            if count[0] == posts:
                done.set()

        started = [0.0]

        def worker() -> None:
            started[0] = time.perf_counter()
            for _ in range(posts):
                loop.call_soon_threadsafe(on_loop)

        thread = threading.Thread(target=worker, name="worker")
        thread.start()
        await done.wait()
        elapsed = time.perf_counter() - started[0]
        thread.join()
        return elapsed

    if not monitored:
        return asyncio.run(main())
    with looptools.monitor(report=None, summary=False, detectors="handoffs"):
        return asyncio.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--posts", type=int, default=20_000)
    args = parser.parse_args()
    plain, watched = [], []
    for _ in range(args.rounds):
        plain.append(one(args.posts, False))
        watched.append(one(args.posts, True))
    p = statistics.median(plain) / args.posts * 1e6
    w = statistics.median(watched) / args.posts * 1e6
    print(f"hand-off, post to run: plain {p:.2f} us, measured {w:.2f} us, "
          f"ratio {w / p:.2f}, extra {w - p:.2f} us")
    print(f"at 1,000 hand-offs/s: {1000 * (w - p) / 1e6 * 100:.2f} % of one core")


if __name__ == "__main__":
    main()
