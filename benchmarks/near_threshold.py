"""Stalls a little over the threshold: how many are missed, and how many misnamed.

    python benchmarks/near_threshold.py [--ms 57] [--count 80] [--runs 6] [--burners 0]
        [--kinds asyncio,qasync,qtasyncio,qt] [--no-ticks] [--heap K] [--slot]
        [--tail MS] [--c-tail MS] [--against DIR]

Each run is a fresh interpreter with ``looptools.monitor(threshold_ms=50)`` around a
loop whose task spins ``--ms`` ms (pure Python, by the clock) ``--count`` times, 0.15 s
apart.  A stall of the spin is *missed* when no reported stall overlaps it, *misnamed*
when the one that does names another function than the spin; *dated early* when a
reported stall begins over 1 ms before the spin did (a false start: it can turn a
stall under the threshold into one over it), and the row's *read longest* is the most a
reported duration exceeded the spin's true length, and *start* how much later than
the spin the reported stalls began (median, range).  ``--burners N`` runs N
CPU-burning processes beside it (a busy machine); ``--against DIR`` runs the same with
the looptools package in DIR too (another checkout), interleaved run by run.
``--no-ticks`` runs the watchdog without its ticks (``signal_ticks=False``, as on
Windows).  ``--heap K`` gives the app a heap of K thousand objects that grows by a
hundredth of that at the start of each spin: the cyclic garbage collector's full
collections then come inside some spins and hold the loop thread for longer the
larger the heap (a large app; the test suite's own process).  ``--slot`` spins in a
plain Qt timer slot instead (no asyncio callback: no hook sees it run), on the Qt kinds
(``qt``: a Qt main thread without asyncio).  ``--tail MS`` runs that many ms of other
lines after each spin (a function of their own, ``after``): a stall seen only near its
end is misnamed by them.  ``--c-tail MS`` ends each stall with one C call that holds
the GIL (``sum(range(n))`` in ``c_call``, sized to about MS ms in the child as it
starts): each part is timed, and the stall's culprit should be ``c_call`` where that
part is 1.3 times the spin or more, ``spin`` where the spin is 1.3 times the call or
more; a stall with the parts closer than that is not judged (*unjudged*).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

CHILD = r"""
import asyncio, json, sys, time
import looptools

count, seconds, kind = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3]
ticks, heap = sys.argv[4] == "ticks", int(sys.argv[5]) * 1000
slot, tail, c_tail = sys.argv[6] == "slot", float(sys.argv[7]), float(sys.argv[8])
kept = [[i] for i in range(heap)]
n_c = 0
if c_tail:
    took = []
    for _ in range(3):
        t = time.perf_counter()
        sum(range(2_000_000))
        took.append(time.perf_counter() - t)
    n_c = int(2_000_000 * c_tail / min(took))
parts = []


def spin(s):
    end = time.perf_counter() + s
    kept.extend([i] for i in range(heap // 100))
    while time.perf_counter() < end:
        pass


def after(s):
    end = time.perf_counter() + s
    while time.perf_counter() < end:
        pass


def c_call(n):
    sum(range(n))  # holds the GIL


def blocked(spans):
    began = time.perf_counter()
    spin(seconds)
    spun = time.perf_counter()
    after(tail)
    called = time.perf_counter()
    if n_c:
        c_call(n_c)
    ended = time.perf_counter()
    parts.append((spun - began, ended - called))
    spans.append((began, ended))


async def main(spans):
    if slot:
        timer.start()
        while len(spans) < count:
            await asyncio.sleep(0.05)
        return
    await asyncio.sleep(0.3)
    for _ in range(count):
        blocked(spans)
        await asyncio.sleep(0.15)


spans = []
if slot:
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication([])

    def on_timeout():
        blocked(spans)
        if len(spans) == count:
            timer.stop()
            if kind == "qt":
                app.quit()

    timer = QTimer()
    timer.setInterval(150)
    timer.timeout.connect(on_timeout)
with looptools.monitor(report=None, threshold_ms=50, signal_ticks=ticks) as monitor:
    if kind == "qt":
        timer.start()
        app.exec()
    elif kind == "qasync":
        import qasync
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance() or QApplication([])
        qasync.run(main(spans))
    elif kind == "qtasyncio":
        from PySide6 import QtAsyncio
        from PySide6.QtWidgets import QApplication

        app = QApplication.instance() or QApplication([])
        QtAsyncio.run(main(spans), keep_running=False, quit_qapp=True)
    else:
        asyncio.run(main(spans))
stalls = monitor.final_report["stalls"]
origin = monitor.started
missed = misnamed = early = unjudged = 0
longer = -1e9
late = []
for (began, ended), (spun, called) in zip(spans, parts):
    hits = [s for s in stalls if origin + s["started_at_s"] < ended
            and origin + s["started_at_s"] + s["duration_ms"] / 1000 > began]
    name = "spin"
    if n_c and called >= 1.3 * spun:
        name = "c_call"
    elif n_c and spun < 1.3 * called:
        name = None
    if not hits:
        missed += 1
    elif name is None:
        unjudged += 1
    elif any((s["culprit"] or {}).get("function") != name for s in hits):
        misnamed += 1
    for s in hits:
        # Dated before the blocked call began (by over 1 ms), and read longer than it.
        early += origin + s["started_at_s"] < began - 0.001
        late.append((origin + s["started_at_s"] - began) * 1000)
        longer = max(longer, s["duration_ms"] - (ended - began) * 1000)
print(json.dumps({"stalls": len(spans), "missed": missed, "misnamed": misnamed,
                  "unjudged": unjudged, "early": early, "longer": longer, "late": late,
                  "reported": len(stalls), "looptools": looptools.__file__}))
"""


@contextmanager
def burners(n: int) -> Iterator[None]:
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ms", type=float, default=57.0)
    parser.add_argument("--count", type=int, default=80)
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--burners", type=int, default=0)
    parser.add_argument("--kinds", default="asyncio,qasync")
    parser.add_argument("--no-ticks", action="store_true")
    parser.add_argument("--heap", type=int, default=0, metavar="K")
    parser.add_argument("--slot", action="store_true")
    parser.add_argument("--tail", type=float, default=0.0, metavar="MS")
    parser.add_argument("--c-tail", type=float, default=0.0, metavar="MS")
    parser.add_argument("--against", metavar="DIR")
    args = parser.parse_args()
    if args.c_tail < 0 or args.tail < 0:
        parser.error("--tail and --c-tail take a length in ms, 0 or more")
    if "qt" in args.kinds.split(",") and not args.slot:
        parser.error("--kinds qt needs --slot (a Qt main thread without asyncio runs no task)")
    if args.slot and "asyncio" in args.kinds.split(","):
        parser.error("--slot needs Qt kinds (qt, qasync, qtasyncio), not asyncio")
    trees = {"this": None}
    if args.against:
        if not os.path.isfile(os.path.join(args.against, "looptools", "__init__.py")):
            parser.error(f"--against: no looptools package in {args.against}")
        trees["against"] = os.path.abspath(args.against)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPTOOLS")}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    totals: dict[tuple[str, str], dict[str, int]] = {}
    longest: dict[tuple[str, str], float] = {}
    lates: dict[tuple[str, str], list[float]] = {}
    with burners(args.burners):
        for _ in range(args.runs):
            for kind in args.kinds.split(","):
                for name, tree in trees.items():
                    child_env = dict(env)
                    if tree is not None:
                        child_env["PYTHONPATH"] = tree
                    # Not run from the checkout: ``-c`` puts the working directory
                    # first on sys.path, before PYTHONPATH's other tree.
                    out = subprocess.run(
                        [sys.executable, "-c", CHILD, str(args.count), str(args.ms / 1000),
                         kind, "no-ticks" if args.no_ticks else "ticks", str(args.heap),
                         "slot" if args.slot else "task", str(args.tail / 1000),
                         str(args.c_tail / 1000)],
                        capture_output=True, text=True, env=child_env, timeout=600,
                        cwd=tempfile.gettempdir())
                    if out.returncode != 0:
                        print(out.stderr[-2000:], file=sys.stderr)
                        return 1
                    got = json.loads(out.stdout.strip().splitlines()[-1])
                    if tree is not None and not got["looptools"].startswith(tree):
                        print(f"--against: the child imported {got['looptools']}",
                              file=sys.stderr)
                        return 1
                    row = totals.setdefault((kind, name), {"stalls": 0, "missed": 0,
                                                           "misnamed": 0, "unjudged": 0,
                                                           "early": 0})
                    for key in row:
                        row[key] += got.get(key, 0)
                    lates.setdefault((kind, name), []).extend(got.get("late", []))
                    longest[(kind, name)] = max(longest.get((kind, name), -1e9),
                                                got.get("longer", -1e9))
    print(f"{args.ms:g} ms stalls at a 50 ms threshold, {args.burners} burner(s) beside, "
          f"{'no ticks' if args.no_ticks else 'ticks'}, heap {args.heap}k, "
          f"in a {'Qt slot' if args.slot else 'task step'}, {args.tail:g} ms after"
          + (f", then a C call of ~{args.c_tail:g} ms" if args.c_tail else ""))
    for (kind, name), row in totals.items():
        worst = longest.get((kind, name), -1e9)
        print(f"  {kind:8} {name:8} missed {row['missed']:4} of {row['stalls']}, "
              f"misnamed {row['misnamed']}"
              + (f" (unjudged {row['unjudged']})" if args.c_tail else "")
              + f", dated early {row['early']}, "
              f"read longest {'-' if worst < -1e8 else f'{worst:+.1f} ms'}", end="")
        late = sorted(lates.get((kind, name), []))
        if late:
            print(f", start {late[len(late) // 2]:+.1f} ms median "
                  f"({late[0]:+.1f} to {late[-1]:+.1f})", end="")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
