"""What looptools costs an app that does nothing: CPU and wake-ups while it idles.

    python benchmarks/idle_cost.py [--kinds qt,qasync,qtasyncio,asyncio,uvloop]
                                   [--seconds 3] [--rounds 3]

Each run is a fresh interpreter, started plain or the way users start it
(``LOOPTOOLS=1``, a report written to a real file), that idles in its loop: a Qt
main thread without asyncio (``qt``: a shown ``QLabel``, ``app.exec()``), qasync,
QtAsyncio, asyncio or uvloop (``asyncio.sleep``).  After one second (attach and
start-up are not idle cost) it counts, over ``--seconds``: the main thread's CPU
(``time.thread_time``), the whole process's CPU (``resource.getrusage``, every
thread: looptools' watchdog too) and the main thread's voluntary context switches
(``/proc/thread-self/status``: each one a wake from a wait).  For the Qt kinds a
third variant, ``timer``, runs the plain app with one 10 ms ``QTimer`` whose slot is
an empty Python lambda: what a 10 ms heartbeat alone costs on this machine.  The
medians of ``--rounds`` runs are printed, per second of idling.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
KINDS = ("qt", "qasync", "qtasyncio", "asyncio", "uvloop")


def _switches() -> int:
    try:
        with open("/proc/thread-self/status") as status:
            for line in status:
                if line.startswith("voluntary_ctxt_switches:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def child(kind: str, seconds: float, timer: bool) -> None:
    import resource

    marks: dict[str, Any] = {}

    def begin() -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        marks.update(cpu=time.thread_time(), wall=time.perf_counter(),
                     proc=usage.ru_utime + usage.ru_stime, switches=_switches())

    def end() -> None:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        wall = time.perf_counter() - marks["wall"]
        print(json.dumps({
            "main_cpu_ms_s": 1000.0 * (time.thread_time() - marks["cpu"]) / wall,
            "process_cpu_ms_s": 1000.0 * (usage.ru_utime + usage.ru_stime - marks["proc"])
            / wall,
            "wakes_s": (_switches() - marks["switches"]) / wall,
        }), flush=True)

    import asyncio

    async def idle() -> None:  # every kind with asyncio
        await asyncio.sleep(1.0)
        begin()
        await asyncio.sleep(seconds)
        end()

    if kind in ("asyncio", "uvloop"):
        if kind == "uvloop":
            import uvloop

            uvloop.run(idle())
        else:
            asyncio.run(idle())
        return
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication, QLabel

    app = QApplication.instance() or QApplication([])
    label = QLabel("idle")
    label.show()
    beat = None
    if timer:
        beat = QTimer()
        beat.setInterval(10)
        beat.timeout.connect(lambda: None)
        beat.start()
    if kind == "qt":
        QTimer.singleShot(1000, begin)
        def finish() -> None:
            end()
            app.quit()

        QTimer.singleShot(int(1000 * (1.0 + seconds)), finish)
        app.exec()
        return
    if kind == "qasync":
        import qasync

        loop = qasync.QEventLoop(app)
        try:
            loop.run_until_complete(idle())
        finally:
            loop.close()
    else:
        import PySide6.QtAsyncio as QtAsyncio

        QtAsyncio.run(idle(), keep_running=False, quit_qapp=True)
    del beat


def run_one(kind: str, variant: str, seconds: float, folder: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPTOOLS")}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    if variant == "looptools":
        env.update(LOOPTOOLS="1", LOOPTOOLS_SUMMARY="0",
                   LOOPTOOLS_REPORT=str(Path(folder) / f"report-{kind}.json"))
    command = [sys.executable, __file__, "--child", kind, "--seconds", str(seconds)]
    if variant == "timer":
        command.append("--timer")
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder,
                          timeout=60 + 2 * seconds)
    rows = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not rows:
        raise SystemExit(f"idle_cost: {kind} {variant} failed (status {proc.returncode}): "
                         f"{proc.stderr.strip()[-500:]}")
    result: dict[str, float] = json.loads(rows[-1])
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--timer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.seconds, args.timer)
        return 0
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in KINDS]
    if unknown or args.seconds <= 0 or args.rounds < 1:
        parser.error(f"--kinds from {', '.join(KINDS)}; --seconds > 0; --rounds >= 1"
                     + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
    print(f"idle for {args.seconds:g} s after 1 s, median of {args.rounds} runs, per second:")
    print(f"  {'loop':<10} {'variant':<10} {'main CPU ms':>12} {'process CPU ms':>15}"
          f" {'main wakes':>11}")
    with tempfile.TemporaryDirectory(prefix="lt-idle-") as folder:
        for kind in kinds:
            variants = ["plain", "timer", "looptools"] if kind in ("qt", "qasync", "qtasyncio") \
                else ["plain", "looptools"]
            results: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
            for _ in range(args.rounds):
                for variant in variants:  # interleaved, round after round
                    results[variant].append(run_one(kind, variant, args.seconds, folder))
            for variant in variants:
                rows = results[variant]
                print(f"  {kind:<10} {variant:<10}"
                      f" {statistics.median(r['main_cpu_ms_s'] for r in rows):12.2f}"
                      f" {statistics.median(r['process_cpu_ms_s'] for r in rows):15.2f}"
                      f" {statistics.median(r['wakes_s'] for r in rows):11.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
