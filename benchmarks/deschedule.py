"""False stalls from the machine: a healthy loop beside CPU burners, or stopped with its process.

    python benchmarks/deschedule.py [--runs 20] [--burners 3] [--stop-ms 150] [--nice 0]
        [--kinds asyncio,qasync] [--against PATH]

Each run is a fresh interpreter (this file, ``--child``) running a healthy
``asyncio.Queue`` producer/consumer for 0.6 s under ``looptools.monitor()``:
nothing in it holds the loop for long, so every stall it reports is false.
Beside it run ``--burners`` processes spinning in Python (a busy machine), and
with ``--stop-ms`` the whole child is stopped (SIGSTOP, then SIGCONT) that long,
0.2 s into its loop, as a debugger or a container pause would.  ``--nice``
nices the child.  ``--against PATH`` runs looptools from another checkout
(e.g. ``git worktree add /tmp/old <commit>``) interleaved with this one, order
alternating run by run.  Prints, per checkout and loop kind, the runs that
reported any stall and the stalls (duration ms, culprit function).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path


def child(kind: str, nice: int) -> None:
    os.nice(nice)
    import looptools

    async def app() -> None:
        print("go", flush=True)
        queue: asyncio.Queue[int | None] = asyncio.Queue(maxsize=50)

        async def producer() -> None:
            end = time.perf_counter() + 0.6
            i = 0
            while time.perf_counter() < end:
                await queue.put(i)
                i += 1
                if i % 20 == 0:
                    await asyncio.sleep(0.001)
            await queue.put(None)

        async def consumer() -> None:
            while await queue.get() is not None:
                sum(range(200))

        await asyncio.gather(producer(), consumer())

    with looptools.monitor(report=None) as monitor:
        if kind == "asyncio":
            asyncio.run(app())
        else:
            import qasync
            from PySide6.QtWidgets import QApplication

            QApplication([])
            qasync.run(app())
    report = monitor.final_report or {}
    print(json.dumps([(s["duration_ms"], (s["culprit"] or {}).get("function"))
                      for s in report.get("stalls", [])]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--burners", type=int, default=3)
    parser.add_argument("--stop-ms", type=float, default=0.0)
    parser.add_argument("--nice", type=int, default=0)
    parser.add_argument("--kinds", default="asyncio,qasync")
    parser.add_argument("--against", help="another checkout's root, run interleaved")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    here = str(Path(__file__).resolve().parent.parent)
    trees = {"this checkout": here}
    if args.against:
        trees[f"{args.against}"] = str(Path(args.against).resolve())
    kinds = args.kinds.split(",")
    results: dict[tuple[str, str], list[list[tuple[float, str]]]] = {
        (t, k): [] for t in trees for k in kinds}
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"])
               for _ in range(args.burners)]
    try:
        for i in range(args.runs):
            for kind in kinds:
                order = list(trees.items())
                if i % 2:
                    order.reverse()
                for name, tree in order:
                    env = dict(os.environ, PYTHONPATH=tree,
                               QT_QPA_PLATFORM=os.environ.get("QT_QPA_PLATFORM", "offscreen"))
                    env.pop("LOOPTOOLS", None)
                    proc = subprocess.Popen(
                        [sys.executable, __file__, "--child", kind, str(args.nice)],
                        env=env, stdout=subprocess.PIPE, text=True)
                    assert proc.stdout is not None
                    if proc.stdout.readline() != "go\n":
                        raise SystemExit(f"the {kind} child did not start ({name})")
                    if args.stop_ms > 0:
                        time.sleep(0.2)
                        proc.send_signal(signal.SIGSTOP)
                        time.sleep(args.stop_ms / 1000.0)
                        proc.send_signal(signal.SIGCONT)
                    out = proc.stdout.read()
                    proc.wait()
                    results[name, kind].append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()
    print(f"{args.runs} runs each, {args.burners} burners, stop {args.stop_ms:g} ms, "
          f"nice {args.nice}, {os.cpu_count()} CPUs")
    for (name, kind), runs in results.items():
        bad = [run for run in runs if run]
        stalls = sorted(s for run in runs for s in run)
        print(f"  {kind:8} {name:30} runs with a false stall: {len(bad)}/{len(runs)}"
              f"  stalls: {[tuple(s) for s in stalls[:6]]}{' ...' if len(stalls) > 6 else ''}")


if __name__ == "__main__":
    main()
