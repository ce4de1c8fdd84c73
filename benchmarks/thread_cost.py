"""What an idle second thread costs a single-threaded loop, and what unsharing its fd table saves.

No looptools monitor here (only its descriptor-table set-up, for ``unshare``):
each run is a fresh interpreter (glibc stays in its
multi-threaded mode once a thread was ever started) running one workload with

- ``none``: no other thread;
- ``exited``: one thread started and joined before the work: no other thread
  runs, but glibc has left its single-threaded mode for good;
- ``thread``: one thread blocked in ``Event.wait()`` (as the stall watchdog is
  most of the time);
- ``unshare``: the same thread after ``unshare(CLONE_FILES)`` (Linux), so that
  the main thread is alone with its descriptor table again.

Workloads: ``poll`` (``epoll.poll(0)`` in a loop: one syscall per iteration)
and ``benchmarks/overhead.py``'s plain-asyncio ones (``callbacks``, a
``call_soon`` chain with one ``epoll_wait`` per callback; ``task_hops``;
``queue``).  Prints, per workload, the median over rounds of each mode's time
over ``none``'s in the same round.

With ``--perf`` each run is recorded by ``perf record -e cpu-clock`` (Debian's
``linux-perf``; the software clock, so it works where a VM has no hardware
counters) and each mode also prints the share of the main thread's samples in
glibc's multi-threaded paths: the cancellation wrappers around every blocking
system call (``__pthread_enable_asynccancel``/``__pthread_disable_asynccancel``,
skipped while the process has had one thread only) and the mutex that CPython's
GIL is made of (``pthread_mutex_lock``/``__pthread_mutex_unlock_usercnt``,
non-atomic while single-threaded).  Those are what a thread costs even after it
has exited, whatever it does.

    python benchmarks/thread_cost.py --rounds 10
    chrt -f 5 python benchmarks/thread_cost.py --workloads task_hops --rounds 4 --perf
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import select
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead

from looptools.inapp._fdtable import private_fd_table

POLLS = 2_000_000
MODES = ("none", "exited", "thread", "unshare")
#: glibc's multi-threaded paths (see the docstring), as ``perf report`` names them
GLIBC_MT = re.compile(r"pthread_(en|dis)able_asynccancel|pthread_mutex_(un)?lock")


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
    if mode == "exited":
        first = threading.Thread(target=lambda: None)
        first.start()
        first.join()
    elif mode != "none":
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


def _glibc_mt_share(data: str) -> float:
    """The share (%) of the most sampled thread's samples in glibc's multi-threaded paths."""
    out = subprocess.run(["perf", "report", "-i", data, "--no-children", "--sort", "pid,sym",
                          "-g", "none", "--stdio", "-q"], capture_output=True, text=True,
                         check=True).stdout
    by_pid: dict[str, list[float]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 3 or not parts[0].endswith("%"):
            continue
        share = float(parts[0].rstrip("%"))
        totals = by_pid.setdefault(parts[1], [0.0, 0.0])
        totals[0] += share
        if GLIBC_MT.search(parts[-1]):
            totals[1] += share
    if not by_pid:
        raise RuntimeError(f"perf report read no samples from {data}")
    total, mt = max(by_pid.values())
    return 100.0 * mt / total if total else 0.0


def _run(mode: str, workload: str, perf: str | None) -> tuple[float, float | None]:
    command = [sys.executable, __file__, "--child", mode, workload]
    if perf is not None:
        command = ["perf", "record", "-q", "-F", "4999", "-e", "cpu-clock", "-o", perf,
                   "--", *command]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"{workload} with {mode} failed: {last}")
    lines = out.stdout.strip().splitlines()
    return float(lines[-1]), (_glibc_mt_share(perf) if perf is not None else None)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--workloads", default="poll,callbacks,queue")
    parser.add_argument("--perf", action="store_true",
                        help="record each run with perf and print glibc's multi-threaded share")
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
    if args.perf and shutil.which("perf") is None:
        print("thread_cost: --perf needs perf on PATH (Debian: apt-get install linux-perf)",
              file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="thread_cost-") as folder:
        perf = os.path.join(folder, "perf.data") if args.perf else None
        for workload in workloads:
            times: dict[str, list[float]] = {mode: [] for mode in MODES}
            shares: dict[str, list[float]] = {mode: [] for mode in MODES}
            for r in range(args.rounds):
                for mode in (MODES if r % 2 == 0 else MODES[::-1]):
                    try:
                        took, share = _run(mode, workload, perf)
                    except (RuntimeError, subprocess.CalledProcessError) as exc:
                        print(f"thread_cost: {exc}", file=sys.stderr)
                        return 1
                    times[mode].append(took)
                    if share is not None:
                        shares[mode].append(share)
            cells = []
            for mode in MODES[1:]:
                ratios = [a / b for a, b in zip(times[mode], times["none"], strict=True)]
                cells.append(f"{mode} {statistics.median(ratios):.3f}x")
            print(f"{workload:9s} vs no thread: " + "   ".join(cells), flush=True)
            if perf is not None:
                print(f"{'':9s} glibc multi-threaded share of the main thread's samples: "
                      + "   ".join(f"{mode} {statistics.median(shares[mode]):.2f}%"
                                   for mode in MODES), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
