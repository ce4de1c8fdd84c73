"""How exact the marker measure of queued ``invokeMethod`` hand-offs is, per hand-off.

    QT_QPA_PLATFORM=offscreen python benchmarks/invoke_marker_accuracy.py
        [--qt pyside6,pyqt6,pyqt5] [--posts 1500]

Each binding in child processes of its own, on a Qt main thread without asyncio, with
real threads (``looptools.inapp.detectors._qt_handoffs``, docs/threads.md):

* ``order``: four threads each post, ``--posts`` times, a marker event and then a
  queued ``invokeMethod``, without looptools, through a 200 ms block of the GUI thread;
  the GUI thread logs what it runs.  Prints how many marker/slot pairs had something
  between them, with the two posts under one lock and without.
* ``stall``, ``stall+signals``, ``timers``: the detector's own wrapper (its record
  function replaced by a list), four threads posting ``--posts`` queued calls each;
  each slot notes its own start, each worker its post (the truth).  ``stall``: a 200 ms
  block; ``stall+signals``: the same while two more threads emit queued signals whose
  slot takes 2 ms (posts the detector does not wrap); ``timers``: no block, but a 5 ms
  timer whose callback takes 3 ms (the GUI thread ~60 % busy), one post per ms per
  thread.  Prints, per hand-off, measured minus true wait: p50, p99, max, and how many
  were more than 1 ms off.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import threading
import time
from collections import defaultdict, deque
from typing import Any

THREADS = 4


def _app(binding: str) -> tuple[Any, Any]:
    core: Any = importlib.import_module(f"{binding}.QtCore")
    return core, core.QCoreApplication.instance() or core.QCoreApplication([])


def order(binding: str, posts: int, locked: bool) -> dict[str, Any]:
    core, app = _app(binding)
    kinds = getattr(core.Qt, "ConnectionType", core.Qt)
    slot = core.pyqtSlot if binding.startswith("PyQt") else core.Slot
    number = core.QEvent.registerEventType()
    event_type = number if binding == "PyQt5" else core.QEvent.Type(number)
    log: list[str] = []

    class Marker(core.QObject):  # type: ignore[misc, name-defined]
        def event(self, event: Any) -> bool:
            if event.type() == event_type:
                log.append("m")
                return True
            return bool(super().event(event))

    class Receiver(core.QObject):  # type: ignore[misc, name-defined]
        @slot()
        def on_call(self) -> None:
            log.append("s")
            if len(log) == 2 * posts * THREADS:
                app.quit()

    marker, receivers = Marker(), [Receiver() for _ in range(3)]
    lock = threading.Lock()

    def worker(k: int) -> None:
        receiver = receivers[k % 3]
        for i in range(posts):
            if locked:
                lock.acquire()
            core.QCoreApplication.postEvent(marker, core.QEvent(event_type))
            core.QMetaObject.invokeMethod(receiver, "on_call", kinds.QueuedConnection)
            if locked:
                lock.release()
            if i % 200 == 0:
                time.sleep(0.001)

    def start() -> None:
        for k in range(THREADS):
            threading.Thread(target=worker, args=(k,)).start()
        core.QTimer.singleShot(5, lambda: time.sleep(0.2))

    core.QTimer.singleShot(10, start)
    core.QTimer.singleShot(60_000, app.quit)
    (app.exec_ if binding == "PySide2" else app.exec)()
    apart = sum(1 for i in range(0, len(log) - 1, 2) if log[i:i + 2] != ["m", "s"])
    return {"pairs": len(log) // 2, "apart": apart}


def measured(binding: str, posts: int, scenario: str) -> dict[str, Any]:
    from looptools.inapp.detectors._qt_handoffs import QtHandOffs

    core, app = _app(binding)
    kinds = getattr(core.Qt, "ConnectionType", core.Qt)
    slot = core.pyqtSlot if binding.startswith("PyQt") else core.Slot
    signal = core.pyqtSignal if binding.startswith("PyQt") else core.Signal
    waits: dict[str, list[tuple[float, float]]] = defaultdict(list)

    def record(via: str, site: Any, thread: str, posted: float, started: float) -> None:
        waits[thread].append((posted, started))

    binding_module = type("Binding", (), {"name": binding, "QtCore": core})
    handoffs = QtHandOffs(binding_module, threading.get_ident(), record)
    if not handoffs.install():
        raise SystemExit(f"{binding}: not installed")
    handoffs.arm()
    truth: dict[str, list[tuple[float, float]]] = defaultdict(list)
    sent: dict[str, deque[float]] = defaultdict(deque)
    total = [0]

    class Receiver(core.QObject):  # type: ignore[misc, name-defined]
        @slot(str)
        def on_call(self, thread: str) -> None:
            truth[thread].append((sent[thread].popleft(), time.perf_counter()))
            total[0] += 1
            if total[0] == THREADS * posts:
                core.QTimer.singleShot(50, app.quit)

        @slot(float)
        def on_signal(self, when: float) -> None:
            time.sleep(0.002)

    class Feed(core.QObject):  # type: ignore[misc, name-defined]
        tick = signal(float)

    receivers = [Receiver() for _ in range(3)]
    feed = Feed()
    feed.tick.connect(receivers[0].on_signal)
    stop = threading.Event()

    def worker(k: int) -> None:
        thread = threading.current_thread().name
        receiver = receivers[k % 3]
        for i in range(posts):
            sent[thread].append(time.perf_counter())
            core.QMetaObject.invokeMethod(receiver, "on_call", kinds.QueuedConnection,
                                          core.Q_ARG(str, thread))
            if scenario == "timers":
                time.sleep(0.001)
            elif i % 50 == 0:
                time.sleep(0.002)

    def emitter() -> None:
        while not stop.is_set():
            feed.tick.emit(time.perf_counter())
            time.sleep(0.0005)

    timer = core.QTimer()

    def start() -> None:
        threads = [threading.Thread(target=worker, args=(k,), name=f"w{k}")
                   for k in range(THREADS)]
        if scenario == "stall+signals":
            threads += [threading.Thread(target=emitter, daemon=True) for _ in range(2)]
        for thread in threads:
            thread.start()
        if scenario == "timers":
            timer.timeout.connect(lambda: time.sleep(0.003))
            timer.start(5)
        else:
            core.QTimer.singleShot(20, lambda: time.sleep(0.2))

    core.QTimer.singleShot(10, start)
    core.QTimer.singleShot(120_000, app.quit)
    (app.exec_ if binding == "PySide2" else app.exec)()
    stop.set()
    timer.stop()
    handoffs.undo()
    errors, true_waits = [], []
    for thread, calls in truth.items():
        mine = waits.get(thread, [])
        if len(mine) != len(calls):
            raise SystemExit(f"{thread}: {len(mine)} measured, {len(calls)} ran")
        for (posted, started), (m_posted, m_started) in zip(calls, mine, strict=True):
            true_waits.append(started - posted)
            errors.append((m_started - m_posted) - (started - posted))
    off = sorted(abs(error) for error in errors)
    return {"posts": len(errors),
            "true_p50_ms": 1000 * sorted(true_waits)[len(true_waits) // 2],
            "off_p50_us": 1e6 * off[len(off) // 2],
            "off_p99_us": 1e6 * off[min(len(off) - 1, round(0.99 * (len(off) - 1)))],
            "off_max_ms": 1000 * off[-1], "over_1ms": sum(1 for e in off if e > 0.001),
            "longer": sum(1 for e in errors if e > 0.001)}


def _child(binding: str, what: str, posts: int) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPTOOLS")}
    env.setdefault("QT_QPA_PLATFORM", "offscreen")
    done = subprocess.run([sys.executable, __file__, "--child", binding, what,
                           "--posts", str(posts)], capture_output=True, text=True, env=env,
                          check=True, timeout=300)
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--qt", default="pyside6,pyqt6,pyqt5")
    parser.add_argument("--posts", type=int, default=1500)
    parser.add_argument("--child", nargs=2, metavar=("BINDING", "WHAT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        binding, what = args.child
        if what in ("order-locked", "order-unlocked"):
            out = order(binding, args.posts, what == "order-locked")
        else:
            out = measured(binding, args.posts, what)
        print(json.dumps(out))
        return
    names = {"pyside6": "PySide6", "pyqt6": "PyQt6", "pyqt5": "PyQt5", "pyside2": "PySide2"}
    for api in [a for a in args.qt.split(",") if a]:
        binding = names[api]
        for locked in ("order-unlocked", "order-locked"):
            out = _child(binding, locked, args.posts)
            print(f"{binding} marker then invokeMethod, {locked[6:]}: "
                  f"{out['apart']} of {out['pairs']} pairs had something between them")
        if binding == "PySide2":
            continue  # not measured there
        for scenario in ("stall", "stall+signals", "timers"):
            out = _child(binding, scenario, args.posts)
            print(f"{binding} {scenario}: {out['posts']} hand-offs, true wait p50 "
                  f"{out['true_p50_ms']:.1f} ms; measured - true: p50 "
                  f"{out['off_p50_us']:.0f} us, p99 {out['off_p99_us']:.0f} us, max "
                  f"{out['off_max_ms']:.2f} ms; {out['over_1ms']} more than 1 ms off "
                  f"({out['longer']} measured longer)")


if __name__ == "__main__":
    main()
