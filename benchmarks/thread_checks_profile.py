"""What the affinity detector's thread checks cost a real app under ``looptools profile``.

    QT_QPA_PLATFORM=offscreen python benchmarks/thread_checks_profile.py [--rounds 7]

Runs ``sample_apps/chat_qasync.py`` in its healthy mode (PySide6 on qasync: a scripted
conversation of 3 s with streamed tokens, a 16 ms refresh timer, ``to_thread`` and
``run_in_executor`` work, a moderation worker thread, and an audio-meter thread handing
the loop 100 calls a second) under ``looptools profile --no-dashboard``, round after
round, with and without the thread checks (``LOOPTOOLS_THREAD_CHECKS=1``: the loop's
``call_soon``/``call_at`` shadowed, the profile function on every thread the app starts
with ``threading``), in ABBA order.

The app does the same work for the same time each run, so what the checks cost shows
as CPU time: the app's process (all its threads; from ``getrusage`` at its exit, before
looptools writes its report) is measured by a few lines run around it.  Also read from
each report: lag p99 and the share of the time the loop was busy.  Prints the medians
and the ratio of the medians, and the median of the per-round ratios.

Then the other side of the profile function: a worker ``threading.Thread`` running its
own asyncio loop, whose one job makes 300,000 small Python calls, beside a qasync GUI
loop (PySide6), the same way: the job's time as the app measures it, and the worker-loop
stall looptools reports for it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
APP = ROOT / "sample_apps" / "chat_qasync.py"

#: Runs the app as ``python app.py`` would, and says its CPU time as it exits (after the
#: app's own exit handlers, before looptools' report: the atexit order is last in, first out).
WRAPPER = """\
import atexit, os, resource, runpy, sys
def said():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    os.write(2, ("CPU_S %.6f\\n" % (usage.ru_utime + usage.ru_stime)).encode())
atexit.register(said)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def one(checks: bool, folder: Path, app_args: list[str]) -> dict[str, float]:
    report = folder / f"r-{int(checks)}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPTOOLS")}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env["QT_API"] = "pyside6"
    if checks:
        env["LOOPTOOLS_THREAD_CHECKS"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "looptools", "profile", "--no-dashboard", "--report",
         str(report), "--", sys.executable, "-c", WRAPPER, str(APP), *app_args],
        capture_output=True, text=True, env=env, timeout=120, cwd=folder)
    if done.returncode != 0:
        raise SystemExit(f"the run failed ({done.returncode}):\n{done.stderr}")
    cpu = next(float(line.split()[1]) for line in done.stderr.splitlines()
               if line.startswith("CPU_S "))
    data: dict[str, Any] = json.loads(report.read_text())
    watched = data["affinity"]["watched"]
    if watched["asyncio_calls"] is not checks or watched["widget_calls"] is not checks:
        raise SystemExit(f"thread checks {checks} but the report says {watched}")
    busy = data["dispatcher"].get("busy_fraction") if data.get("dispatcher") else None
    return {"cpu_s": cpu, "lag_p99_ms": float(data["lag"]["p99_ms"]),
            "busy": float(busy) if busy is not None else float("nan")}


WORKER_APP = """\
import asyncio, sys, threading, time
import qasync
from PySide6.QtWidgets import QApplication

def parse(i):
    return i * 2 + 1

async def job():
    await asyncio.sleep(0.01)
    started = time.perf_counter()
    total = 0
    for i in range(300_000):
        total += parse(i)
    print("JOB_MS %.3f" % (1000 * (time.perf_counter() - started)), file=sys.stderr)
    await asyncio.sleep(0.01)

def worker():
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        runner.run(job())

async def main():
    await asyncio.sleep(0.05)
    thread = threading.Thread(target=worker, name="indexer")
    thread.start()
    await asyncio.to_thread(thread.join)

app = QApplication([])
qasync.run(main())
"""


def worker_job(checks: bool, folder: Path) -> dict[str, float]:
    app = folder / "worker_job.py"
    app.write_text(WORKER_APP)
    report = folder / f"w-{int(checks)}.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPTOOLS")}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env["QT_API"] = "pyside6"
    if checks:
        env["LOOPTOOLS_THREAD_CHECKS"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "looptools", "profile", "--no-dashboard", "--report",
         str(report), str(app)], capture_output=True, text=True, env=env, timeout=120,
        cwd=folder)
    if done.returncode != 0:
        raise SystemExit(f"the run failed ({done.returncode}):\n{done.stderr}")
    job = next(float(line.split()[1]) for line in done.stderr.splitlines()
               if line.startswith("JOB_MS "))
    stalls = json.loads(report.read_text())["worker_loops"]["stalls"]
    return {"job_ms": job, "stall_ms": max((s["duration_ms"] for s in stalls), default=0.0)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("app_args", nargs="*", default=[],
                        help="arguments for the app (default: its healthy 3 s run)")
    args = parser.parse_args()
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    jobs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    with tempfile.TemporaryDirectory(prefix="looptools-bench-") as name:
        folder = Path(name)
        for index in range(args.rounds):
            order = (False, True) if index % 2 == 0 else (True, False)
            for checks in order:
                runs[checks].append(one(checks, folder, args.app_args))
            for checks in order:
                jobs[checks].append(worker_job(checks, folder))
    print(f"sample_apps/chat_qasync.py {' '.join(args.app_args) or '(healthy, 3 s)'} under "
          f"looptools profile, {args.rounds} rounds, ABBA order (medians):")
    for checks, label in ((False, "profile"), (True, "profile + thread checks")):
        cpu = statistics.median(r["cpu_s"] for r in runs[checks])
        lag = statistics.median(r["lag_p99_ms"] for r in runs[checks])
        busy = statistics.median(r["busy"] for r in runs[checks])
        print(f"  {label:24s} app CPU {cpu * 1000:7.1f} ms   lag p99 {lag:6.2f} ms   "
              f"loop busy {busy:.1%}")
    base = statistics.median(r["cpu_s"] for r in runs[False])
    checked = statistics.median(r["cpu_s"] for r in runs[True])
    pairs = list(zip(runs[False], runs[True], strict=True))
    paired = statistics.median(b["cpu_s"] / a["cpu_s"] for a, b in pairs)
    print(f"  app CPU ratio: x{checked / base:.3f} (median of per-round ratios "
          f"x{paired:.3f}); per round (ms): "
          + ", ".join(f"{a['cpu_s'] * 1000:.0f}/{b['cpu_s'] * 1000:.0f}" for a, b in pairs))
    print(f"a worker thread's asyncio job of 300,000 Python calls beside a qasync loop, "
          f"under looptools profile, {args.rounds} rounds (medians):")
    for checks, label in ((False, "profile"), (True, "profile + thread checks")):
        job = statistics.median(r["job_ms"] for r in jobs[checks])
        stall = statistics.median(r["stall_ms"] for r in jobs[checks])
        print(f"  {label:24s} the job {job:7.1f} ms   worker-loop stall reported "
              f"{stall:7.1f} ms")
    slower = statistics.median(r["job_ms"] for r in jobs[True]) / statistics.median(
        r["job_ms"] for r in jobs[False])
    print(f"  the job's time ratio: x{slower:.2f}")


if __name__ == "__main__":
    main()
