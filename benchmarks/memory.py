"""The monitor's own memory over a long run: flat, and under 5 MB.

    python benchmarks/memory.py [--kind asyncio|qasync|qtasyncio] [--callbacks 10000000]
                                [--minutes 0] [--every 1000000]

One fresh interpreter runs under ``LOOPTOOLS=1`` (every default detector, the stream
listening, a report written at exit) and does ``--callbacks`` ``call_soon`` callbacks
with, every 1,000 callbacks, a task that finishes and a 5 ms timer (so task audits and
timer handles are in it), a slow callback (60 ms, over the 50 ms threshold) every
million, and then, with ``--minutes``, keeps an app-like mix running that long.
``tracemalloc`` counts what is allocated by looptools' own code (frames in the
``looptools`` package at the allocation) and what is held in total; the figures are
printed every ``--every`` callbacks (and every minute): a leak shows as growth.
Each row also counts the stall records the monitor keeps (each with its stacks, up to
``max_stalls``; the once-a-minute snapshot, made on the loop thread, is itself a
stall): over the second half of the timed minutes (the bounded buffers full by then)
the bytes are fitted to that count, and what is left, the rest of looptools' own, is
printed at the first and last of those minutes.
tracemalloc makes the run 2-3x slower; the figures are bytes, not time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def child(kind: str, callbacks: int, every: int, minutes: float) -> None:
    import asyncio
    import tracemalloc

    import looptools

    package = str(Path(looptools.__file__).parent)
    tracemalloc.start(1)
    rows: list[dict[str, Any]] = []

    def stalls_kept() -> int:
        # The stall records the monitor keeps (each with its stacks, up to max_stalls):
        # what grows with every stall, bounded; the benchmark's own once-a-minute
        # snapshot on the loop thread is one.
        running = looptools.active()
        watchdog = running.hub.get("stalls") if running is not None else None
        return len(getattr(watchdog, "kept", ()))

    def measure(label: str) -> None:
        snapshot = tracemalloc.take_snapshot()
        ours = sum(stat.size for stat in snapshot.statistics("filename")
                   if stat.traceback[0].filename.startswith(package))
        rows.append({"at": label, "looptools_bytes": ours,
                     "traced_bytes": tracemalloc.get_traced_memory()[0],
                     "stalls_kept": stalls_kept()})
        print(json.dumps(rows[-1]), flush=True)

    async def short_task() -> None:
        await asyncio.sleep(0)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        count = 0
        tasks: set[asyncio.Task[None]] = set()

        def step() -> None:
            nonlocal count
            count += 1
            if count % 1000 == 0:
                task = loop.create_task(short_task())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                loop.call_later(0.005, lambda: None)
            if count % 1_000_000 == 500_000:
                time.sleep(0.06)  # a slow callback: a stall in the report
            if count % every == 0:
                measure(f"{count} callbacks")
            if count < callbacks:
                loop.call_soon(step)
            else:
                done.set_result(None)

        await asyncio.sleep(0.1)
        measure("start")
        loop.call_soon(step)
        await done
        end = time.monotonic() + minutes * 60
        next_report = time.monotonic() + 60
        while time.monotonic() < end:
            for _ in range(100):
                loop.call_soon(lambda: None)
            task = loop.create_task(short_task())
            await asyncio.sleep(0.01)
            await task
            if time.monotonic() >= next_report:
                next_report += 60
                measure(f"+{(time.monotonic() - end) / 60 + minutes:.0f} min")

    sys.path.insert(0, str(HERE))
    from overhead import runner  # the same loop set-ups as overhead.py

    runner(kind)(main(), False)
    measure("end")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="asyncio", choices=("asyncio", "qasync", "qtasyncio"))
    parser.add_argument("--callbacks", type=int, default=10_000_000)
    parser.add_argument("--every", type=int, default=1_000_000)
    parser.add_argument("--minutes", type=float, default=0.0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.callbacks < 1 or args.every < 1 or args.minutes < 0:
        parser.error("--callbacks and --every must be at least 1, --minutes at least 0")
    if args.child:
        child(args.kind, args.callbacks, args.every, args.minutes)
        return 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPTOOLS")}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    with tempfile.TemporaryDirectory(prefix="lt-memory-") as folder:
        env.update(LOOPTOOLS="1", LOOPTOOLS_SUMMARY="0",
                   LOOPTOOLS_REPORT=str(Path(folder) / "report.json"))
        proc = subprocess.run([sys.executable, __file__, "--child", "--kind", args.kind,
                               "--callbacks", str(args.callbacks), "--every", str(args.every),
                               "--minutes", str(args.minutes)],
                              capture_output=True, text=True, env=env, cwd=folder)
        if proc.returncode != 0:
            print(proc.stderr[-3000:], file=sys.stderr)
            return 1
        report = json.loads((Path(folder) / "report.json").read_text())
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    print(f"{args.kind}: looptools' own allocations still held (tracemalloc), "
          f"and everything traced")
    for row in rows:
        print(f"  {row['at']:>20}  looptools {row['looptools_bytes'] / 1e6:7.3f} MB"
              f"  all traced {row['traced_bytes'] / 1e6:8.3f} MB"
              f"  stall records {row.get('stalls_kept', 0):4d}")
    # The second half of the timed minutes: by then the bounded buffers are full (the
    # run-queue marks 2,048, lag 2,000 points, pending tasks 1,200: ~20 minutes).
    timed = [r for r in rows if r["at"].startswith("+")]
    timed = timed[len(timed) // 2:]
    kept = [r["stalls_kept"] for r in timed]
    if len(timed) >= 3 and max(kept) > min(kept):
        # Least squares of looptools' bytes on the stall records kept: what one record
        # holds; what is left is everything else of ours, which must not grow.
        mean_k = sum(kept) / len(kept)
        mean_b = sum(r["looptools_bytes"] for r in timed) / len(timed)
        slope = sum((k - mean_k) * (r["looptools_bytes"] - mean_b)
                    for k, r in zip(kept, timed, strict=True)) \
            / sum((k - mean_k) ** 2 for k in kept)
        rest = [r["looptools_bytes"] - slope * k for k, r in zip(kept, timed, strict=True)]
        print(f"over the last half of the minutes: {slope / 1e3:.1f} kB a stall record kept "
              f"({min(kept)} -> {max(kept)} records); the rest of looptools' own "
              f"{rest[0] / 1e6:.3f} MB at {timed[0]['at']}, {rest[-1] / 1e6:.3f} MB at "
              f"{timed[-1]['at']} (min {min(rest) / 1e6:.3f}, max {max(rest) / 1e6:.3f})")
    first = next(r for r in rows if r["at"] == "start")["looptools_bytes"]
    last = rows[-1]["looptools_bytes"]
    peak = max(r["looptools_bytes"] for r in rows)
    print(f"looptools: {first / 1e6:.3f} MB at start, {last / 1e6:.3f} MB at the end, "
          f"peak {peak / 1e6:.3f} MB (target <= 5 MB, flat); "
          f"report: {len(report.get('stalls', []))} stalls, "
          f"callbacks timed {report.get('loop', {}).get('callback_timing')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
