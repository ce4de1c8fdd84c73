"""What looptools costs as users run it (``LOOPTOOLS=1 python app.py``), beside the peers.

    python benchmarks/as_users.py [--rounds 10] [--kinds asyncio,uvloop,qasync,qtasyncio,qt]
                                  [--tools looptools,asynclens,...] [--breakdown] [--json]
                                  [--workloads callbacks,task_hops,queue,app,timers,signals]
                                  [--against DIR] [--ci [--target 1.05]]

Every run is a fresh interpreter, started the way a user starts the app:

* ``off`` and ``control``: nothing attached (control is a second unmonitored run: the
  noise floor);
* ``looptools``: ``LOOPTOOLS=1`` and ``LOOPTOOLS_REPORT=<a real file>`` in the
  environment, nothing else: the ``.pth`` hook attaches every default detector and the
  stream thread listens for ``looptools dashboard``; the report is written at exit;
* each peer, attached in the app the way its documentation says (``_peers.py``, the
  accuracy suite's adapters, threshold 50 ms): asynclens, loopmon, aiodebug, pyleak,
  aiocop and asyncio debug mode, on the loop kinds they run on;
* with ``--breakdown``, looptools with one mechanism taken away at a time
  (``LOOPTOOLS_LISTEN=0``: no stream thread; ``LOOPTOOLS_DISABLE=<detector>`` for each
  default detector; ``LOOPTOOLS_DETECTORS=stalls``: the watchdog alone; every default
  detector disabled: loaded and attached, watching nothing), so that each mechanism's
  cost is the difference it makes; and ``a thread, no monitor``: nothing attached, but
  one thread started and joined first, the floor under any monitor that has a thread.

Run the Qt kinds on a display (``QT_QPA_PLATFORM=xcb DISPLAY=:N``; Xvfb will do) as
users run them: a ``QApplication`` on the offscreen platform has no thread of its own,
and glibc's allocator skips its locks in a process that never had a second thread, so
there *any* thread (a monitor's watchdog, a peer's) costs a Qt chain ~3-8 % that an app
on a display, which has Qt's own threads already, does not pay (docs/design.md, "A
thread at all").  Without ``QT_QPA_PLATFORM`` the children use ``offscreen``.

Each child times its workloads inside the running loop (start-up, attach and the
report at exit are not in the figure: a running app pays per callback).  The
workloads: a ``call_soon`` callback chain, task hops (``await asyncio.sleep(0)``) and
an ``asyncio.Queue`` producer/consumer and ``app`` (the pipeline sample app's healthy
path, its own code, timed inside the loop) on the asyncio kinds; a ``QTimer.singleShot(0)``
chain and a queued-signal chain on a Qt main thread without asyncio (``qt``).  Each is
run ``REPEATS`` times in the child and the fastest counts.  Variants are interleaved
round by round in a rotating order, each run's time is divided by the same round's
``off`` run, and the median of those paired ratios is the result.  ``--workloads``
runs only the ones named (e.g. ``--workloads app``), on the kinds that have them.
``--against DIR`` adds ``looptools, against``: ``LOOPTOOLS=1`` with ``DIR`` first on
``PYTHONPATH`` (a directory holding another copy of the ``looptools`` package, e.g. one
with a change taken out), in the same interleaved rounds: a before/after of a change.
With ``--breakdown`` too, each mechanism taken away is run from ``DIR`` as well
(``looptools, against, no ticks (thread looks)``...).
``--ci`` prints each median's confidence interval (distribution-free, from the
order statistics: at least 90 %; 93 % with 8 rounds, 96 % with 12) instead of
the IQR, and lists the rows where looptools is over ``--target`` (the whole interval
above it) and those where it is not known to be under (the interval spans it): with
a noise of a few per cent, a median alone cannot tell 1.055× from 1.045×.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ASYNC_WORKLOADS = ("callbacks", "task_hops", "queue", "app")
QT_WORKLOADS = ("timers", "signals")
SIZES = {"callbacks": 50_000, "task_hops": 30_000, "queue": 60_000,
         "timers": 20_000, "signals": 20_000, "app": 400}
REPEATS = 3
PEERS = ("asynclens", "loopmon", "aiodebug", "pyleak", "aiocop", "debug")
#: --breakdown: these, and each default detector (settings.DETECTORS) left out once
BREAKDOWN = {
    "no stream thread": {"LOOPTOOLS_LISTEN": "0"},
    "no ticks (thread looks)": {"LOOPTOOLS_SIGNAL_TICKS": "0"},
    "wake timer (experimental)": {"LOOPTOOLS_WAKE_TIMER": "1"},
    "stalls only": {"LOOPTOOLS_DETECTORS": "stalls"},
    "lag only (no callback hook)": {"LOOPTOOLS_DETECTORS": "lag"},
}
#: --breakdown: no monitor, one thread started and joined first (LOOPTOOLS_BENCH_THREAD)
THREAD_ONLY = "a thread, no monitor"
THRESHOLD_S = 0.050
#: where the app workload writes its segments (set by the child, outside the loop)
APP_FOLDER: Path | None = None


# -- the child: one interpreter, one loop kind, one variant --------------------------
def _async_workload(name: str) -> Any:
    import asyncio

    n = SIZES[name]
    if name != "app":
        from overhead import workload  # the same synthetic workloads as overhead.py

        return workload(name, n)

    async def app() -> None:
        """The pipeline sample app's healthy path, its own code: a source task fills a
        bounded queue, three workers parse and count records, full segments are
        gzipped and written by ``asyncio.to_thread`` (``SIZES['app']`` batches of 30
        records, no pause between batches)."""
        sys.path.insert(0, str(HERE.parent / "sample_apps"))
        import pipeline_asyncio as sample

        sample.BATCHES, sample.BATCH_INTERVAL = n, 0.0
        config = sample.parse_args(sample.APP, "", sample.SUPPORTED, ["--duration", "0"])
        # The segments' folder is made and removed outside the loop, as the app does.
        if APP_FOLDER is None:
            raise RuntimeError("the app workload runs in child_async, which makes its folder")
        pipeline = sample.Pipeline(config, sample.SegmentStore(APP_FOLDER))
        pipeline.queue = asyncio.Queue(maxsize=100)
        pipeline.segment_lock = asyncio.Lock()
        pipeline.quit_requested, pipeline.work_done = asyncio.Event(), asyncio.Event()
        producer = pipeline._spawn(pipeline.produce())
        workers = [pipeline._spawn(pipeline.ingest_worker(i)) for i in range(sample.WORKERS)]
        await pipeline.wait_for_drain(producer, workers)
        assert pipeline.records == n * sample.BATCH_SIZE, pipeline.records

    return app


def _run_async(kind: str, main: Any, debug: bool) -> Any:
    from overhead import runner  # the same loop set-ups as overhead.py

    return runner(kind)(main(), debug)


def child_async(kind: str, tool: str,
                workloads: tuple[str, ...] = ASYNC_WORKLOADS) -> dict[str, float]:
    import asyncio
    import logging

    peer = None
    if tool in PEERS:
        sys.path.insert(0, str(HERE))
        import _peers

        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        peer = _peers.make(tool, kind, THRESHOLD_S, __file__)
        peer.before_loop()
    best: dict[str, float] = {}

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if peer is not None:
            await peer.start(loop)
        await asyncio.sleep(0.05)  # let every monitor settle (first ticks, attach)
        for _ in range(REPEATS):
            for name in workloads:
                body = _async_workload(name)
                await asyncio.sleep(0)
                started = time.perf_counter()
                await body()
                took = time.perf_counter() - started
                best[name] = min(best.get(name, took), took)
        if peer is not None:
            await peer.stop()

    global APP_FOLDER
    # In memory where there is /dev/shm: a disk's write-back is noise, not cost.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="lt-as-users-app-", dir=shm) as folder:
        APP_FOLDER = Path(folder)
        _run_async(kind, main, tool == "debug")
    if peer is not None:
        peer.after_loop()
    return best


def child_qt(workloads: tuple[str, ...] = QT_WORKLOADS) -> dict[str, float]:
    """A Qt main thread without asyncio: a singleShot(0) chain and a queued-signal chain."""
    from PySide6.QtCore import QObject, Qt, QTimer, Signal
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    best: dict[str, float] = {}
    plan = [name for _ in range(REPEATS) for name in workloads]
    state: dict[str, Any] = {"count": 0, "started": 0.0}

    class Pinger(QObject):
        ping = Signal()

    pinger = Pinger()

    def finish(name: str) -> None:
        took = time.perf_counter() - state["started"]
        best[name] = min(best.get(name, took), took)
        QTimer.singleShot(0, next_workload)

    def timer_step() -> None:
        state["count"] += 1
        if state["count"] < SIZES["timers"]:
            QTimer.singleShot(0, timer_step)
        else:
            finish("timers")

    def signal_step() -> None:
        state["count"] += 1
        if state["count"] < SIZES["signals"]:
            pinger.ping.emit()
        else:
            finish("signals")

    pinger.ping.connect(signal_step, Qt.ConnectionType.QueuedConnection)

    def next_workload() -> None:
        if not plan:
            app.quit()
            return
        name = plan.pop(0)
        state["count"] = 0
        state["started"] = time.perf_counter()
        if name == "timers":
            QTimer.singleShot(0, timer_step)
        else:
            pinger.ping.emit()

    QTimer.singleShot(50, next_workload)  # let the monitor settle first
    app.exec()
    return best


# -- the parent -------------------------------------------------------------------------
def supported(kind: str, tool: str) -> bool:
    if tool in ("off", "control", THREAD_ONLY) or tool.startswith("looptools"):
        return True
    if kind == "qt":
        return False  # no peer runs on a Qt main thread without an asyncio loop
    if tool == "debug":
        return kind in ("asyncio", "uvloop", "qasync")  # QtAsyncio's set_debug does nothing
    if kind == "uvloop":
        return tool in ("asynclens", "loopmon", "pyleak")
    return True


def variants(tools: list[str], breakdown: bool,
             against: str | None = None) -> dict[str, dict[str, str]]:
    """variant name -> the environment it adds."""
    out: dict[str, dict[str, str]] = {"off": {}, "control": {}}
    for tool in tools:
        if tool == "looptools":
            out["looptools"] = {"LOOPTOOLS": "1"}
            if against is not None:
                out["looptools, against"] = {"LOOPTOOLS": "1", "PYTHONPATH": against}
            if breakdown:
                from looptools.settings import DETECTORS

                for label, extra in BREAKDOWN.items():
                    out[f"looptools, {label}"] = {"LOOPTOOLS": "1", **extra}
                    if against is not None:
                        out[f"looptools, against, {label}"] = {
                            "LOOPTOOLS": "1", "PYTHONPATH": against, **extra}
                out[THREAD_ONLY] = {"LOOPTOOLS_BENCH_THREAD": "1"}
                # Loaded and attached, watching nothing: what being in the process costs
                out["looptools, no detector"] = {"LOOPTOOLS": "1",
                                                 "LOOPTOOLS_DISABLE": ",".join(DETECTORS)}
                for detector in DETECTORS:
                    if detector != "stalls":
                        out[f"looptools, no {detector}"] = {"LOOPTOOLS": "1",
                                                            "LOOPTOOLS_DISABLE": detector}
        else:
            out[tool] = {"LOOPTOOLS_BENCH_PEER": tool}
    return out


def run_child(kind: str, extra: dict[str, str], folder: Path,
              workloads: tuple[str, ...]) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPTOOLS")}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    env.update(extra)
    if "LOOPTOOLS" in extra:
        env["LOOPTOOLS_REPORT"] = str(folder / "report.json")  # a real file, written at exit
    tool = extra.get("LOOPTOOLS_BENCH_PEER", "none")
    out = subprocess.run([sys.executable, __file__, "--child", kind, "--tool", tool,
                          "--workloads", ",".join(workloads)],
                         capture_output=True, text=True, env=env, cwd=folder, timeout=300)
    lines = out.stdout.strip().splitlines()
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"{kind} {extra}: exit {out.returncode}\n{out.stderr[-2000:]}")
    result: dict[str, float] = json.loads(lines[-1])
    if "LOOPTOOLS" in extra and not (folder / "report.json").exists():
        raise RuntimeError(f"{kind} {extra}: LOOPTOOLS=1 wrote no report\n{out.stderr[-2000:]}")
    return result


def measure(kinds: list[str], tools: list[str], rounds: int, breakdown: bool,
            workloads: tuple[str, ...] = (*ASYNC_WORKLOADS, *QT_WORKLOADS),
            against: str | None = None, only: set[str] | None = None) -> dict[str, Any]:
    chosen = variants(tools, breakdown, against)
    if only is not None:
        chosen = {name: env for name, env in chosen.items()
                  if name in only or name in ("off", "control")}
    results: dict[str, Any] = {}
    for kind in kinds:
        mine = tuple(w for w in (QT_WORKLOADS if kind == "qt" else ASYNC_WORKLOADS)
                     if w in workloads)
        if not mine:
            continue
        names = [v for v in chosen if supported(kind, chosen[v].get("LOOPTOOLS_BENCH_PEER", v))]
        ratios: dict[str, dict[str, list[float]]] = {v: {} for v in names}
        for round_no in range(rounds + 1):  # round 0 warms the disk cache and is dropped
            order = names[round_no % len(names):] + names[:round_no % len(names)]
            got: dict[str, dict[str, float]] = {}
            for name in order:
                with tempfile.TemporaryDirectory(prefix="lt-as-users-") as folder:
                    got[name] = run_child(kind, chosen[name], Path(folder), mine)
            if round_no == 0:
                continue
            for name in names:
                for workload, seconds in got[name].items():
                    ratios[name].setdefault(workload, []).append(seconds / got["off"][workload])
            print(f"{kind}: round {round_no}/{rounds} done", file=sys.stderr, flush=True)
        results[kind] = {name: {w: round(statistics.median(r), 3) for w, r in per.items()}
                         for name, per in ratios.items()}
        results[kind]["_iqr"] = {name: {w: [round(sorted(r)[len(r) // 4], 3),
                                            round(sorted(r)[len(r) - 1 - len(r) // 4], 3)]
                                        for w, r in per.items()}
                                 for name, per in ratios.items()}
        results[kind]["_ci"] = {name: {w: [round(x, 3) for x in median_ci(r)]
                                       for w, r in per.items()}
                                for name, per in ratios.items()}
    return results


def median_ci(values: list[float], level: float = 0.90) -> tuple[float, float, float]:
    """A distribution-free confidence interval of the median: the order statistics
    x(k) and x(n+1-k) for the largest k whose coverage, 1 - 2 P(Binomial(n, 1/2) < k),
    is at least ``level``.  Returns (low, high, coverage); with too few values for
    ``level`` it is the whole range and its coverage."""
    ordered = sorted(values)
    n = len(ordered)
    below = 0.0  # P(Binomial(n, 1/2) < k), for k = 1, 2, ...
    best = (ordered[0], ordered[-1], 1.0 - 2.0 * 0.5 ** n)
    for k in range(1, n // 2 + 1):
        below += math.comb(n, k - 1) * 0.5 ** n
        coverage = 1.0 - 2.0 * below
        if coverage < level:
            break
        best = (ordered[k - 1], ordered[n - k], coverage)
    return best


def available(tool: str) -> bool:
    import importlib.util

    module = {"debug": "asyncio"}.get(tool, tool)
    return importlib.util.find_spec(module) is not None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--kinds", default="asyncio,uvloop,qasync,qtasyncio,qt")
    parser.add_argument("--tools", default=",".join(("looptools", *PEERS)))
    parser.add_argument("--breakdown", action="store_true",
                        help="also looptools with one mechanism taken away at a time")
    parser.add_argument("--workloads", default=",".join((*ASYNC_WORKLOADS, *QT_WORKLOADS)),
                        help="run only these workloads (on the kinds that have them)")
    parser.add_argument("--variants", metavar="NAMES",
                        help="run only these variants (comma-separated names as printed, e.g. "
                             "'looptools,looptools, no handoffs'; 'off' and 'control' always run)")
    parser.add_argument("--against", metavar="DIR",
                        help="also looptools imported from DIR (another copy of the package)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--ci", action="store_true",
                        help="show each median's confidence interval (at least 90%%) instead "
                             "of the IQR, and which looptools rows are over --target")
    parser.add_argument("--target", type=float, default=1.05,
                        help="the ratio --ci judges looptools against (default 1.05, issue 14)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--tool", help=argparse.SUPPRESS)
    args = parser.parse_args()
    workloads = tuple(w for w in args.workloads.split(",") if w)
    unknown = set(workloads) - {*ASYNC_WORKLOADS, *QT_WORKLOADS}
    if unknown or not workloads:
        parser.error(f"--workloads: unknown workload(s) {', '.join(sorted(unknown)) or '(none)'}")
    if args.child:
        if os.environ.get("LOOPTOOLS_BENCH_THREAD"):
            # THREAD_ONLY: one thread started and joined before anything
            # runs, so the process is no longer single-threaded (glibc's allocator
            # keeps its locks from then on): the floor under any monitor's thread
            thread = threading.Thread(target=lambda: None)
            thread.start()
            thread.join()
        got = (child_qt(workloads) if args.child == "qt"
               else child_async(args.child, args.tool, workloads))
        print(json.dumps(got))
        return 0
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - {"asyncio", "uvloop", "qasync", "qtasyncio", "qt"}
    if unknown:
        parser.error(f"--kinds: unknown loop kind(s) {', '.join(sorted(unknown))}")
    kinds = [k for k in kinds if k != "uvloop" or available("uvloop")]
    tools = [t for t in args.tools.split(",") if t]
    unknown = set(tools) - {"looptools", *PEERS}
    if unknown:
        parser.error(f"--tools: unknown tool(s) {', '.join(sorted(unknown))}")
    missing = [t for t in tools if not available(t)]
    for tool in missing:
        print(f"{tool}: not installed, left out", file=sys.stderr)
    tools = [t for t in tools if t not in missing]
    against = None
    if args.against:
        if "looptools" not in tools:
            parser.error("--against needs looptools among --tools")
        if not (Path(args.against) / "looptools" / "__init__.py").is_file():
            parser.error(f"--against: no looptools package in {args.against}")
        against = str(Path(args.against).resolve())
    only = None
    if args.variants:
        only = {name.strip() for name in re.split(r",(?! )", args.variants) if name.strip()}
        known = set(variants(tools, args.breakdown, against))
        if only - known:
            parser.error(f"--variants: unknown variant(s) {', '.join(sorted(only - known))}; "
                         f"known: {', '.join(sorted(known))}")
    results = measure(kinds, tools, args.rounds, args.breakdown, workloads, against, only)
    if args.json:
        print(json.dumps(results, indent=1))
        return 0
    over: list[str] = []
    unsure: list[str] = []
    for kind, table in results.items():
        iqr = table.pop("_iqr")
        ci = table.pop("_ci")
        columns = list(next(iter(table.values())))
        if args.ci:
            coverage = min(c[2] for row in ci.values() for c in row.values())
            print(f"\n{kind} (median of {args.rounds} paired ratios to 'off'; in brackets "
                  f"its {coverage:.0%} confidence interval, from the order statistics)")
        else:
            print(f"\n{kind} (median of {args.rounds} paired ratios to 'off'; IQR in brackets)")
        print(f"{'':34}" + "".join(f"{w:>22}" for w in columns))
        spread = ci if args.ci else iqr
        for name, row in table.items():
            if name == "off":
                continue
            cells = "".join(f"{row[w]:>8.3f}x [{spread[name][w][0]:.2f}-{spread[name][w][1]:.2f}]"
                            for w in columns)
            print(f"{name:34}{cells}")
            if name == "looptools":
                for w in columns:
                    low, high = ci[name][w][0], ci[name][w][1]
                    if low > args.target:
                        over.append(f"{kind} {w} {row[w]:.3f}x [{low:.3f}-{high:.3f}]")
                    elif high > args.target:
                        unsure.append(f"{kind} {w} {row[w]:.3f}x [{low:.3f}-{high:.3f}]")
    if args.ci:
        print(f"\nlooptools over {args.target:.2f}x (the whole interval above it): "
              + ("; ".join(over) or "none"))
        print(f"looptools not known to be under {args.target:.2f}x (the interval spans it): "
              + ("; ".join(unsure) or "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
