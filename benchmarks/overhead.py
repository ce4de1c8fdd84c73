"""What monitoring costs a running app, and how fast a stall is seen.

    python benchmarks/overhead.py [--rounds 25] [--kinds asyncio,qasync,qtasyncio] [--json]

For each loop kind a fresh subprocess runs three workloads — a call_soon
callback chain, task hops (``await asyncio.sleep(0)``) and an asyncio.Queue
producer/consumer — alternating, round after round, without monitoring (twice:
the second is a control that shows the noise floor), with looptools' default
detectors, and (every fifth round) with asyncio debug mode.  Each round's
monitored time is divided by the same round's unmonitored time, and the median
of those paired ratios is the result (with its interquartile range); the ratio
of the fastest runs is printed beside it.  All in one process, so machine noise
hits every variant alike.  Then it measures stall-detection
latency (from the moment a 200 ms blocking call starts to the watchdog's
``stall_started``) and the start-up cost of the ``looptools.pth`` hook when
LOOPTOOLS is unset.  Ratios, not absolute times, are the result.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

WORKLOADS = ("callbacks", "task_hops", "queue")
# Short runs, many rounds: on a shared VM noise comes in bursts, and pairing
# each monitored run with an unmonitored one next to it cancels slow drift.
SIZES = {"callbacks": 50_000, "task_hops": 30_000, "queue": 60_000}
DEBUG_EVERY = 5  # debug mode is 3-15x slower: a comparison figure, not every round
# Extra monitor settings for experiments, e.g. LOOPTOOLS_BENCH_DETECTORS=stalls,lag
# or LOOPTOOLS_BENCH_GIL_CAPTURE=0: LOOPTOOLS_BENCH_<SETTING>=<value>.
SETTINGS = {k[len("LOOPTOOLS_BENCH_"):].lower(): v for k, v in os.environ.items()
            if k.startswith("LOOPTOOLS_BENCH_")}


# -- the child: one loop kind -------------------------------------------------------
def workload(name: str, n: int) -> Any:
    """The coroutine function of a synthetic workload (also used by as_users.py)."""
    import asyncio

    async def callbacks() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        count = 0

        def step() -> None:
            nonlocal count
            count += 1
            if count < n:
                loop.call_soon(step)
            else:
                done.set_result(None)

        loop.call_soon(step)
        await done

    async def task_hops() -> None:
        for _ in range(n):
            await asyncio.sleep(0)

    async def queue() -> None:
        q: asyncio.Queue[int] = asyncio.Queue(maxsize=100)

        async def produce() -> None:
            for i in range(n):
                await q.put(i)
            await q.put(-1)

        async def consume() -> None:
            while await q.get() >= 0:
                pass

        await asyncio.gather(produce(), consume())

    return {"callbacks": callbacks, "task_hops": task_hops, "queue": queue}[name]


def _workload(name: str) -> Any:
    import asyncio

    body = workload(name, SIZES[name])

    async def timed() -> float:
        # Timed inside the running loop: what a running app pays per callback,
        # without the one-off cost of attaching (reported separately).
        await asyncio.sleep(0)
        started = time.perf_counter()
        await body()
        return time.perf_counter() - started

    return timed


def runner(kind: str) -> Any:
    """``run(coro, debug)`` on a fresh loop of ``kind`` (also used by as_users.py, memory.py)."""
    import asyncio

    if kind == "asyncio":
        def run(coro: Any, debug: bool) -> Any:
            return asyncio.run(coro, debug=debug)
        return run
    if kind == "uvloop":
        import uvloop

        def run(coro: Any, debug: bool) -> Any:
            return uvloop.run(coro, debug=debug)
        return run
    from PySide6.QtWidgets import QApplication

    QApplication.instance() or QApplication([])
    if kind == "qasync":
        import qasync

        def run(coro: Any, debug: bool) -> Any:
            loop = qasync.QEventLoop(QApplication.instance())
            loop.set_debug(debug)
            try:
                return loop.run_until_complete(coro)
            finally:
                loop.close()
        return run
    import PySide6.QtAsyncio as QtAsyncio

    def run(coro: Any, debug: bool) -> Any:
        return QtAsyncio.run(coro, keep_running=False, quit_qapp=True, debug=debug)
    return run


def child(kind: str, rounds: int) -> dict[str, Any]:
    import logging

    import looptools

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)  # debug mode's slow-callback logs
    logging.getLogger("qasync").setLevel(logging.CRITICAL)
    run = runner(kind)
    variants = ["off", "control", "looptools", "debug"]
    times: dict[str, dict[str, list[float]]] = {w: {v: [] for v in variants} for w in WORKLOADS}
    pairs: dict[str, dict[str, list[float]]] = {w: {v: [] for v in variants} for w in WORKLOADS}
    attach: list[float] = []
    for round_no in range(rounds + 1):  # round 0 warms up and is dropped
        chosen = [v for v in variants if v != "debug" or round_no % DEBUG_EVERY == 1]
        order = chosen[round_no % len(chosen):] + chosen[:round_no % len(chosen)]
        for workload in WORKLOADS:
            got: dict[str, float] = {}
            for variant in order:
                coro = _workload(workload)()
                monitor = (looptools.monitor(report=None, **SETTINGS)
                           if variant == "looptools" else None)
                if monitor is not None:
                    monitor.start()
                started = time.perf_counter()
                elapsed = run(coro, variant == "debug")
                whole = time.perf_counter() - started
                if monitor is not None:
                    monitor.stop(write=False)
                    attach.append(whole - elapsed)
                got[variant] = elapsed
            if round_no:
                for variant, elapsed in got.items():
                    times[workload][variant].append(elapsed)
                    pairs[workload][variant].append(elapsed / got["off"])
    result: dict[str, Any] = {"kind": kind, "workloads": {}}
    for workload in WORKLOADS:
        base = min(times[workload]["off"])
        row: dict[str, Any] = {"us_per_unit": round(base / SIZES[workload] * 1e6, 2)}
        for variant in ("control", "looptools", "debug"):
            ratios = sorted(pairs[workload][variant])
            quarter = len(ratios) // 4
            row[variant] = round(statistics.median(ratios), 3)
            row[f"{variant}_iqr"] = [round(ratios[quarter], 3), round(ratios[-quarter - 1], 3)]
            # The fastest of the rounds over the unmonitored fastest: noise only
            # ever adds time, so this is the other steady estimate.
            row[f"{variant}_fastest"] = round(min(times[workload][variant]) / base, 3)
        result["workloads"][workload] = row
    result["detection"] = detection(kind, run)
    result["attach_ms"] = round(statistics.median(attach) * 1000.0, 1)
    return result


def detection(kind: str, run: Any, stalls: int = 8) -> dict[str, float]:
    """ms from the start of a 200 ms blocking call to the watchdog's stall_started."""
    import asyncio

    import looptools
    from looptools.inapp.hub import Detector

    seen: list[float] = []

    class Seen(Detector):
        name = "seen"

        def stall_started(self, stall: Any) -> None:
            seen.append(time.perf_counter())

    starts: list[float] = []

    async def app() -> float:
        for _ in range(stalls):
            await asyncio.sleep(0.05)
            starts.append(time.perf_counter())
            time.sleep(0.2)
        return 0.0

    with looptools.monitor(report=None) as monitor:
        monitor.hub.add(Seen())
        run(app(), False)
        threshold = monitor.settings.threshold_ms
    latencies = sorted((s - b) * 1000.0 for b, s in zip(starts, seen, strict=False))
    return {
        "threshold_ms": threshold,
        "stalls": len(seen),
        "median_ms": round(statistics.median(latencies), 1) if latencies else -1.0,
        "max_ms": round(max(latencies), 1) if latencies else -1.0,
    }


def hook_cost() -> float:
    """µs the looptools.pth line costs at start-up when LOOPTOOLS is unset."""
    import sysconfig
    from pathlib import Path

    line = (Path(sysconfig.get_paths()["purelib"]) / "looptools.pth").read_text().strip()
    env = dict(os.environ)
    env.pop("LOOPTOOLS", None)
    code = compile(line, "looptools.pth", "exec")
    saved = os.environ.pop("LOOPTOOLS", None)
    try:
        n = 20_000
        started = time.perf_counter()
        for _ in range(n):
            exec(code, {})
        return (time.perf_counter() - started) / n * 1e6
    finally:
        if saved is not None:
            os.environ["LOOPTOOLS"] = saved


# -- the parent ---------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--kinds", default="asyncio,qasync,qtasyncio")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    if args.child:
        print(json.dumps(child(args.child, args.rounds)))
        return 0
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LOOPTOOLS") or k.startswith("LOOPTOOLS_BENCH_")}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    results = []
    for kind in args.kinds.split(","):
        out = subprocess.run([sys.executable, __file__, "--child", kind, "--rounds",
                              str(args.rounds)], capture_output=True, text=True, env=env)
        if out.returncode != 0:
            print(f"{kind}: failed\n{out.stderr}", file=sys.stderr)
            return 1
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    cost = hook_cost()
    if args.json:
        print(json.dumps({"results": results, "pth_hook_us": cost}, indent=1))
        return 0
    print(f"{'loop':10} {'workload':10} {'µs/unit':>8} {'looptools':>10} {'(IQR)':>13} "
          f"{'(fastest)':>9} {'control':>8} {'debug mode':>11}")
    worst = 0.0
    for result in results:
        for workload, row in result["workloads"].items():
            worst = max(worst, row["looptools"])
            low, high = row["looptools_iqr"]
            print(f"{result['kind']:10} {workload:10} {row['us_per_unit']:8.2f} "
                  f"{row['looptools']:9.3f}x {low:6.3f}-{high:5.3f} "
                  f"{row['looptools_fastest']:8.3f}x {row['control']:7.3f}x "
                  f"{row['debug']:10.3f}x")
    print(f"worst looptools ratio (median of paired runs): {worst:.3f}x (target <= 1.10x); "
          "control = an unmonitored run against another: the noise floor")
    for result in results:
        print(f"{result['kind']:10} outside the timed loop work (attach, detach, loop start "
              f"and stop) a monitored run took {result['attach_ms']:.1f} ms longer (median)")
    for result in results:
        d = result["detection"]
        print(f"{result['kind']:10} stall seen {d['median_ms']:.1f} ms (max {d['max_ms']:.1f}) "
              f"after it began, threshold {d['threshold_ms']:g} ms, {d['stalls']} stalls "
              f"(target <= threshold + 15 ms)")
    print(f"looptools.pth with LOOPTOOLS unset: {cost:.2f} µs per interpreter start")
    return 0


if __name__ == "__main__":
    sys.exit(main())
