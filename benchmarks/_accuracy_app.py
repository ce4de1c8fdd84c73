"""The scenario app of benchmarks/accuracy.py: one loop kind, a planned series of stalls.

    python benchmarks/_accuracy_app.py PLAN.json

Run by accuracy.py, never by hand (it needs the plan it writes).  The plan names
the loop kind (asyncio | qasync | qtasyncio | qt), the tool attached (looptools
through LOOPTOOLS=1 in the environment, or one of the peers in _peers.py), the
threshold, the calibrated sizes and the stalls to cause, in order, with a gap of
a few thresholds between them.

Ground truth goes to ``gt.jsonl`` in the plan's output folder, one line per
stall, written in the gap after it: the stall's start and end measured with
``time.perf_counter()`` right around the blocking statement, inside this
process.  Every blocking statement carries ``# CULPRIT: <stall kind>``;
accuracy.py reads the line numbers and enclosing functions from this file.
Before the stalls a healthy phase runs (idle, then busy with short callbacks
and a busy worker thread): any stall reported there is false.

Big inputs (the list to sort, the JSON documents, the buffers) are built before
the loop starts, so building them is no stall; the GC is frozen after that.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import os
import random
import re
import sys
import tempfile
import threading
import time
import zlib
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

with open(sys.argv[1]) as _plan_file:
    PLAN: dict[str, Any] = json.load(_plan_file)
KIND: str = PLAN["kind"]
TOOL: str = PLAN["tool"]
THRESHOLD = PLAN["threshold_ms"] / 1000.0
GAP = PLAN["gap_s"]
STEPS: list[dict[str, Any]] = PLAN["steps"]
OUT: str = PLAN["out"]
QT = KIND != "asyncio"
perf_counter = time.perf_counter

_gt_fd = os.open(os.path.join(OUT, "gt.jsonl"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


def record(**fields: Any) -> None:
    os.write(_gt_fd, (json.dumps(fields) + "\n").encode())


# -- inputs, built before any loop runs -------------------------------------------------
def _max_n(stall: str) -> int:
    return max([s["n"] for s in STEPS if s["stall"] == stall] or [0])


_wanted = {s["stall"] for s in STEPS}
DATA: list[float] = []
if "gil_sorted" in _wanted:
    _rng = random.Random(1)
    DATA = [_rng.random() for _ in range(_max_n("gil_sorted"))]
_ITEM = '{"id": 12345, "name": "item-000", "value": 1.5, "ok": true}'
DOCS: dict[int, str] = {
    s["n"]: "[" + ",".join([_ITEM] * s["n"]) + "]" for s in STEPS if s["stall"] == "gil_json"
}
REGEX = re.compile(r"a*a*b")  # backtracks: O(n**3) on "a" * n, no match
RANDBUF = memoryview(random.Random(2).randbytes(_max_n("nogil_zlib")))
ZEROS = memoryview(bytes(_max_n("nogil_sha256")))  # calloc: pages come lazily, all zero
CHUNK = 1 << 20
_tmpdir = tempfile.mkdtemp(prefix="looptools-accuracy-")
WFD = os.open(os.path.join(_tmpdir, "write.bin"), os.O_RDWR | os.O_CREAT, 0o644)
RFD = os.open(os.path.join(_tmpdir, "read.bin"), os.O_RDWR | os.O_CREAT, 0o644)
if "io_read" in _wanted:
    os.write(RFD, os.urandom(CHUNK))
BLOCK = b"x" * 65536
gc.collect()
gc.freeze()  # the inputs are never scanned by the collector: no GC pauses from them


# -- the blocking statements (each line marked; its function is the culprit) ------------
def cpu_loop(n: int) -> tuple[float, float]:
    total = 0
    t0 = perf_counter()
    for i in range(n): total += i * i % 7  # CULPRIT: cpu  # noqa: E701
    return t0, perf_counter()


def gil_sorted(n: int) -> tuple[float, float]:
    t0 = perf_counter()
    sorted(DATA[:n])  # CULPRIT: gil_sorted
    return t0, perf_counter()


def gil_json(n: int) -> tuple[float, float]:
    t0 = perf_counter()
    json.loads(DOCS[n])  # CULPRIT: gil_json
    return t0, perf_counter()


def gil_regex(n: int) -> tuple[float, float]:
    t0 = perf_counter()
    REGEX.search("a" * n)  # CULPRIT: gil_regex
    return t0, perf_counter()


def gil_sum(n: int) -> tuple[float, float]:
    t0 = perf_counter()
    sum(range(n))  # CULPRIT: gil_sum
    return t0, perf_counter()


def nogil_zlib(n: int) -> tuple[float, float]:
    t0 = perf_counter()
    zlib.compress(RANDBUF[:n])  # CULPRIT: nogil_zlib
    return t0, perf_counter()


def nogil_sha256(n: int) -> tuple[float, float]:
    t0 = perf_counter()
    hashlib.sha256(ZEROS[:n]).digest()  # CULPRIT: nogil_sha256
    return t0, perf_counter()


def io_write(seconds: float) -> tuple[float, float]:
    t0 = perf_counter()
    deadline = t0 + seconds
    while perf_counter() < deadline: os.pwrite(WFD, BLOCK, 0); os.fsync(WFD)  # CULPRIT: io_write  # noqa: E701, E702
    return t0, perf_counter()


def io_read(n: int) -> tuple[float, float]:
    t0 = perf_counter()
    for _ in range(n): os.pread(RFD, CHUNK, 0)  # CULPRIT: io_read  # noqa: E701
    return t0, perf_counter()


GENERIC = {f.__name__: f for f in (cpu_loop, gil_sorted, gil_json, gil_regex, gil_sum,
                                   nogil_zlib, nogil_sha256, io_write, io_read)}
GENERIC["cpu"] = GENERIC.pop("cpu_loop")


async def coro_sleep(seconds: float) -> tuple[float, float]:
    t0 = perf_counter()
    time.sleep(seconds)  # CULPRIT: coro
    return t0, perf_counter()


def posted_callback(seconds: float, fut: Any) -> None:
    t0 = perf_counter()
    time.sleep(seconds)  # CULPRIT: threadsafe
    fut.set_result((t0, perf_counter()))


class Burst:
    """Many short callbacks, each under the threshold, posted at once."""

    def __init__(self, count: int, each: float, on_done: Any) -> None:
        self.left = count
        self.each = each
        self.on_done = on_done
        self.first: float | None = None

    def step(self) -> None:
        t0 = perf_counter()
        if self.first is None:
            self.first = t0
        end = t0 + self.each
        while perf_counter() < end: pass  # CULPRIT: burst  # noqa: E701
        self.left -= 1
        if self.left == 0:
            self.on_done(self.first, perf_counter())


def spin(seconds: float) -> None:
    """Healthy work: short, well under any threshold."""
    end = perf_counter() + seconds
    while perf_counter() < end:
        pass


class Incidental:
    """Gaps between healthy callbacks longer than half the threshold: the loop
    really stopped (e.g. the busy worker thread kept the GIL while the OS ran
    something else).  Recorded as ground truth so that a report of one is not
    called false; they count for nothing else."""

    def __init__(self) -> None:
        self.last = self.began = perf_counter()

    def begin(self) -> None:
        now = self.began = perf_counter()
        if now - self.last > 0.5 * THRESHOLD:  # between two callbacks
            record(phase="incidental", start=self.last, end=now)

    def end(self) -> None:
        now = self.last = perf_counter()
        if now - self.began > 0.5 * THRESHOLD:  # a 1 ms callback that took that long
            record(phase="incidental", start=self.began, end=now)


def busy_worker(seconds: float) -> None:
    """A worker thread running Python beside the loop (GIL contention, no stall)."""
    end = perf_counter() + seconds
    total = 0
    while perf_counter() < end:
        for i in range(1000):
            total += i


if QT:
    from PySide6.QtCore import QMetaObject, QObject, Qt, QTimer, Slot
    from PySide6.QtWidgets import QApplication, QWidget

    class Target(QObject):
        """Qt slots that block: reached by a timer, or queued from a worker thread."""

        def arm(self, seconds: float, on_done: Any) -> None:
            self.seconds = seconds
            self.on_done = on_done

        @Slot()
        def slot_sleep(self) -> None:
            t0 = perf_counter()
            time.sleep(self.seconds)  # CULPRIT: slot
            self.on_done(t0, perf_counter())

        @Slot()
        def invoked_slot(self) -> None:
            t0 = perf_counter()
            time.sleep(self.seconds)  # CULPRIT: invoke
            self.on_done(t0, perf_counter())

    class Canvas(QWidget):
        """A widget whose paint event blocks when armed."""

        seconds = 0.0
        on_done: Any = None
        paints = 0

        def arm(self, seconds: float, on_done: Any) -> None:
            self.seconds = seconds
            self.on_done = on_done

        def paintEvent(self, event: Any) -> None:  # Qt's name
            self.paints += 1
            if not self.seconds:
                return
            t0 = perf_counter()
            time.sleep(self.seconds)  # CULPRIT: paint
            self.seconds = 0.0
            self.on_done(t0, perf_counter())

    def post_invoke(target: Any) -> None:
        QMetaObject.invokeMethod(target, "invoked_slot", Qt.ConnectionType.QueuedConnection)


# -- the peer attached (not looptools: that one comes with LOOPTOOLS=1) -------------------
PEER: Any = None
if TOOL != "looptools":
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import _peers

    PEER = _peers.make(TOOL, KIND, THRESHOLD, os.path.abspath(__file__))
    PEER.before_loop()


def origin() -> float | None:
    if TOOL != "looptools":
        return None
    import looptools

    monitor = looptools.active()
    return monitor.started if monitor is not None else None


ERRORS: list[str] = []


def finish() -> None:
    result = {"kind": KIND, "tool": TOOL, "pid": os.getpid(), "origin": origin(),
              "errors": ERRORS, "events": PEER.events if PEER is not None else [],
              "peer_notes": PEER.notes if PEER is not None else [],
              "paints": CANVAS.paints if QT and CANVAS is not None else None}
    with open(os.path.join(OUT, "result.json"), "w") as handle:
        json.dump(result, handle)


# -- asyncio loop kinds: a driver coroutine --------------------------------------------------
async def healthy_async(loop: Any) -> None:
    t0 = perf_counter()
    await asyncio.sleep(0.5)
    record(phase="healthy_idle", start=t0, end=perf_counter())
    t0 = perf_counter()
    end = t0 + 1.0
    done = loop.create_future()
    watch = Incidental()

    def chain() -> None:
        watch.begin()
        spin(0.001)
        watch.end()
        if perf_counter() < end:
            loop.call_soon(chain)
        elif not done.done():
            done.set_result(None)

    worker = threading.Thread(target=busy_worker, args=(1.0,), daemon=True)
    worker.start()
    loop.call_soon(chain)
    await done
    while worker.is_alive():  # no join() here: that could block the loop
        await asyncio.sleep(0.005)
    record(phase="healthy_busy", start=t0, end=perf_counter())


async def run_step(loop: Any, step: dict[str, Any]) -> tuple[float, float]:
    stall = step["stall"]
    seconds = step["target_ms"] / 1000.0
    if stall in GENERIC:
        return GENERIC[stall](step["n"] if stall != "io_write" else seconds)
    if stall == "coro":
        return await asyncio.ensure_future(coro_sleep(seconds))
    fut = loop.create_future()

    def on_done(t0: float, t1: float) -> None:
        fut.set_result((t0, t1))

    if stall == "threadsafe":
        threading.Thread(target=loop.call_soon_threadsafe,
                         args=(posted_callback, seconds, fut), daemon=True).start()
    elif stall == "burst":
        burst = Burst(step["n"], step["each_s"], on_done)
        for _ in range(step["n"]):
            loop.call_soon(burst.step)
    elif stall == "slot":
        TARGET.arm(seconds, on_done)
        QTimer.singleShot(0, TARGET.slot_sleep)
    elif stall == "invoke":
        TARGET.arm(seconds, on_done)
        threading.Thread(target=post_invoke, args=(TARGET,), daemon=True).start()
    elif stall == "paint":
        CANVAS.arm(seconds, on_done)
        CANVAS.update()
    else:
        raise ValueError(f"unknown stall kind {stall!r}")
    return await fut


async def driver() -> None:
    loop = asyncio.get_running_loop()
    try:
        await asyncio.sleep(0.3)
        if PEER is not None:
            await PEER.start(loop)
        await healthy_async(loop)
        for step in STEPS:
            await asyncio.sleep(GAP)
            t0, t1 = await run_step(loop, step)
            record(id=step["id"], start=t0, end=t1)
        await asyncio.sleep(2 * GAP)
        if PEER is not None:
            await PEER.stop()
    except Exception as exc:  # reported by accuracy.py
        import traceback

        ERRORS.append("".join(traceback.format_exception(exc)))


# -- a Qt main thread without asyncio: a chain of single-shot timers ----------------------
def qt_main(app: Any) -> None:
    steps = iter(STEPS)
    gap_ms = int(GAP * 1000)

    def healthy() -> None:
        t0 = perf_counter()

        def busy() -> None:
            record(phase="healthy_idle", start=t0, end=perf_counter())
            t1 = perf_counter()
            end = t1 + 1.0
            worker = threading.Thread(target=busy_worker, args=(1.0,), daemon=True)
            worker.start()
            watch = Incidental()

            def chain() -> None:
                watch.begin()
                spin(0.001)
                watch.end()
                if perf_counter() < end:
                    QTimer.singleShot(0, chain)
                else:
                    wait_worker()

            def wait_worker() -> None:  # no join() here: that could block the loop
                if worker.is_alive():
                    QTimer.singleShot(5, wait_worker)
                    return
                record(phase="healthy_busy", start=t1, end=perf_counter())
                next_step()

            QTimer.singleShot(0, chain)

        QTimer.singleShot(500, busy)

    def next_step() -> None:
        step = next(steps, None)
        if step is None:
            QTimer.singleShot(2 * gap_ms, app.quit)
            return
        QTimer.singleShot(gap_ms, lambda: run(step))

    def run(step: dict[str, Any]) -> None:
        stall = step["stall"]
        seconds = step["target_ms"] / 1000.0

        def on_done(t0: float, t1: float) -> None:
            record(id=step["id"], start=t0, end=t1)
            next_step()

        try:
            if stall in GENERIC:
                on_done(*GENERIC[stall](step["n"] if stall != "io_write" else seconds))
            elif stall == "burst":
                burst = Burst(step["n"], step["each_s"], on_done)
                for _ in range(step["n"]):
                    QTimer.singleShot(0, burst.step)
            elif stall == "slot":
                TARGET.arm(seconds, on_done)
                QTimer.singleShot(0, TARGET.slot_sleep)
            elif stall == "invoke":
                TARGET.arm(seconds, on_done)
                threading.Thread(target=post_invoke, args=(TARGET,), daemon=True).start()
            elif stall == "paint":
                CANVAS.arm(seconds, on_done)
                CANVAS.update()
            else:
                raise ValueError(f"stall kind {stall!r} has no Qt-only form")
        except Exception as exc:
            import traceback

            ERRORS.append("".join(traceback.format_exception(exc)))
            app.quit()

    QTimer.singleShot(300, healthy)
    app.exec()


TARGET: Any = None
CANVAS: Any = None
if KIND == "asyncio":
    asyncio.run(driver())
else:
    APP = QApplication([])
    TARGET = Target()
    CANVAS = Canvas()
    CANVAS.resize(320, 240)
    CANVAS.show()
    if KIND == "qasync":
        import qasync

        qasync.run(driver())
    elif KIND == "qtasyncio":
        import PySide6.QtAsyncio as QtAsyncio

        QtAsyncio.run(driver(), keep_running=False, quit_qapp=True)
    elif KIND == "qt":
        qt_main(APP)
    else:
        raise SystemExit(f"unknown loop kind {KIND!r}")
if PEER is not None:
    PEER.after_loop()
finish()
