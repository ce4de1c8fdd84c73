"""Asyncio loops on worker threads: their stalls, named by thread and loop kind.

Real Qt apps run asyncio loops off the main thread: a ``QRunnable`` whose ``run()``
calls ``asyncio.run(job())`` for each job, a ``threading.Thread`` running its own
loop, a short-lived daemon thread per command.  A ``time.sleep(0.2)`` in a worker's
coroutine stalls *that* loop: the worker's own queue of callbacks waits, not the GUI.

* **Seen** through the same ``asyncio.events._set_running_loop`` wrapper that finds
  the main loop (``looptools.inapp._attach``): every loop that starts or stops running on
  another thread, however it was made.
* **Timed** (asyncio's selector loops only) by two hooks on that loop object
  (``looptools.inapp._worker_loop``): one clock read per callback, on the worker; nothing
  class-wide, so the main loop's hot path is untouched.  A callback over the
  threshold is a stall of that loop (on a worker loop a slow callback and a stall
  are the same thing: nobody else waits on that thread).
* **Caught live** by the stall watchdog's thread (``StallWatchdog``; one thread for
  all loops, started for the worker loops alone when no main loop is attached):
  at each of its looks it sees a worker callback running for longer than the
  threshold and samples that thread's stack (``sys._current_frames()``), every look
  while it lasts; the culprit is voted as for the main loop.  A stall the watchdog
  did not see while it lasted (a C call holding the GIL throughout, or one that
  ended between two looks) is still counted, from the callback's own timing, with
  its callback named and no stack.
* **Bounded**: one small record per loop while it runs; per thread name (Python's
  own numbered names, ``Thread-12 (run)`` or ``Dummy-3``, fold into one row) the
  loops seen, their running time and their stalls; the longest ``max_stalls``
  stalls.  Thousands of one-job loops leave only counters behind.

uvloop, qasync and QtAsyncio loops on worker threads are counted (``kinds``) but
not timed: their callbacks do not pass through an asyncio ready queue we can date.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
import weakref
from collections import deque
from typing import Any

from looptools._frames import culprit_of, stack_of
from looptools.inapp._describe import stall_names
from looptools.inapp._worker_loop import Finished, Hooks, Info, WorkerLoop, hookable, loop_kind
from looptools.inapp.detectors.stalls import Stall
from looptools.inapp.hub import Detector
from looptools.settings import Settings

#: Rows of the per-thread summary (further thread names share the last row).
MAX_THREADS = 64
OTHER_THREADS = "(other threads)"
#: Threads remembered (for their name and the last loop they ran).
MAX_SEEN = 256
#: Stacks sampled per worker stall (enough to vote; a worker blocked for minutes must
#: not keep the watchdog looking every few ms), and how often, at most.
MAX_SAMPLES = 200
SAMPLE_EVERY_THRESHOLD = 0.2
#: Python's numbered default names: ``Thread-12 (run)``, ``Thread-12``, ``Dummy-3``.
_NUMBERED = re.compile(r"^(Thread|Dummy)-\d+")


def row_key(name: str) -> str:
    """The per-thread row a thread's loops count in: Python's numbered names folded."""
    return _NUMBERED.sub(lambda m: f"{m.group(1)}-*", name, count=1)


def _read_name(path: str) -> str | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 64).decode("utf-8", "replace").strip() or None
    except OSError:
        return None
    finally:
        os.close(fd)


_PROCESS_NAME: list[str | None] = []


def os_thread_name() -> str | None:
    """The OS's name of the calling thread (Linux), when it says more than the
    process's: a ``QThreadPool`` thread is ``Thread (pooled)`` to the OS and only
    ``Dummy-3`` to Python."""
    native = getattr(threading, "get_native_id", None)
    if native is None or not os.path.isdir("/proc/self/task"):
        return None
    if not _PROCESS_NAME:
        _PROCESS_NAME.append(_read_name("/proc/self/comm"))
    name = _read_name(f"/proc/self/task/{native()}/comm")
    return name if name and name != _PROCESS_NAME[0] else None


class _Thread:
    """A thread that ran a worker loop: its name and the last loop it ran."""

    __slots__ = ("hookable", "key", "kind", "last", "name", "thread")

    def __init__(self, thread: Any, name: str, key: str) -> None:
        self.thread = thread
        self.name = name
        self.key = key
        self.last: Any = None  # a weak reference to the last loop, or its id()
        #: the last loop's kind, and whether its callbacks can be timed
        self.kind = "asyncio"
        self.hookable = False


class _Row:
    """The per-thread-name summary."""

    __slots__ = ("count", "kinds", "longest", "loops", "run_s", "total", "worst")

    def __init__(self) -> None:
        self.loops = 0
        self.kinds: dict[str, int] = {}
        self.run_s = 0.0
        self.count = 0
        self.total = 0.0
        self.longest = 0.0
        self.worst: tuple[Stall, Info] | None = None


class WorkerLoops(Detector):
    name = "worker_loops"

    def __init__(self, settings: Settings) -> None:
        self.threshold = settings.threshold_s
        self.limit = settings.max_stalls
        self._lock = threading.Lock()
        #: thread ident -> the loop running there now
        self._running: dict[int, WorkerLoop] = {}
        self._threads: dict[int, _Thread] = {}
        self._rows: dict[str, _Row] = {}
        self._finished: deque[Finished] = deque(maxlen=4096)
        self.kept: list[tuple[Stall, Info]] = []
        self.loops = 0
        self.watched = 0
        self.run_s = 0.0
        self.count = 0
        self.total = 0.0
        self.longest = 0.0
        self._watchdog: Any = None
        self._on = False

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, watchdog: Any) -> None:
        """Start watching worker loops (``watchdog``: the stall watchdog, or None)."""
        self._watchdog = watchdog
        self._on = True

    def stop(self) -> None:
        """Stop watching: every running loop's hooks go (on its own thread, at its next
        wait), and the watchdog stops serving worker loops.  The figures stay."""
        self._on = False
        with self._lock:
            running = list(self._running.items())
            self._running.clear()
            now = time.perf_counter()
            for ident, state in running:
                self._ran(ident, state, now)
        for _ident, state in running:
            if state.hooks is not None:
                state.hooks.retire()
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            try:
                watchdog.serve_workers(None)
            except Exception:
                pass
        self._drain()

    def detach(self) -> None:
        # The main loop detaching (a new main loop, the monitor stopping) leaves
        # worker loops alone: the monitor stops them itself.  Switched off after a
        # failure (no longer in the hub), stop.
        if self.hub is None or self not in self.hub.detectors:
            self.stop()

    def forget(self) -> None:
        # In a forked child: the worker threads are gone, the lock may be held.
        self._on = False
        self._lock = threading.Lock()
        running = list(self._running.values())
        self._running.clear()
        for state in running:
            hooks = state.hooks
            if hooks is not None:
                try:
                    hooks.remove()  # no thread runs that loop any more
                except Exception:
                    pass
        self._watchdog = None

    # -- worker threads ------------------------------------------------------------------
    def loop_changed(self, loop: Any) -> None:
        """On a worker thread: ``loop`` starts running there, or (None) the one stops."""
        if not self._on:
            return
        ident = threading.get_ident()
        if loop is None:
            with self._lock:
                state = self._running.pop(ident, None)
                if state is None:
                    return
                self._ran(ident, state, None)
            self._drain()
            return
        watchdog = None
        with self._lock:
            if not self._on:  # stopped meanwhile (stop() saw nothing of this one)
                return
            old = self._running.pop(ident, None)
            if old is not None:  # its stop went unseen
                self._ran(ident, old, None)
            seen = self._thread(ident)
            row = self._row(seen.key)
            last = seen.last
            previous = last() if isinstance(last, weakref.ref) else last
            if previous is not loop and previous != id(loop):
                # A new loop (asyncio.run runs its loop three times: the job, then
                # the shutdown of async generators and of the default executor).
                try:
                    seen.last = weakref.ref(loop)
                except TypeError:
                    seen.last = id(loop)
                seen.kind = loop_kind(loop)
                seen.hookable = seen.kind == "asyncio" and hookable(loop)
                self.loops += 1
                row.loops += 1
                row.kinds[seen.kind] = row.kinds.get(seen.kind, 0) + 1
                if seen.kind == "asyncio":
                    self.watched += 1
            info: Info = (seen.name, ident, seen.key, seen.kind)
            state = WorkerLoop(info, self.threshold, self._finished)
            if seen.hookable:
                hooks = Hooks(loop, state)
                try:
                    hooks.install()
                except Exception:
                    hooks.remove()
                else:
                    state.hooks = hooks
                    watchdog = self._watchdog
            self._running[ident] = state
        if watchdog is not None:
            watchdog.serve_workers(self)

    def _ran(self, ident: int, state: WorkerLoop, now: float | None) -> None:
        """(Under the lock) ``state``'s run is over: remove its hooks (when on its own
        thread), count its running time."""
        hooks = state.hooks
        if hooks is not None and now is None:
            hooks.remove()
        ended = time.perf_counter() if now is None else now
        ran = max(0.0, ended - state.started)
        self.run_s += ran
        self._row(state.info[2]).run_s += ran

    def _thread(self, ident: int) -> _Thread:
        # threading._active: the thread's object without making a _DummyThread for
        # a thread Python did not start (asyncio.run already made one, if any).
        thread = threading._active.get(ident)  # type: ignore[attr-defined]
        seen = self._threads.get(ident)
        if seen is not None and seen.thread is thread:
            return seen
        name = thread.name if thread is not None else f"thread {ident}"
        if thread is None or isinstance(thread, threading._DummyThread):  # type: ignore[attr-defined]
            name = os_thread_name() or name
        if len(self._threads) >= MAX_SEEN:
            for other in [i for i in self._threads if i not in self._running]:
                del self._threads[other]
        seen = _Thread(thread, name, row_key(name))
        self._threads[ident] = seen
        return seen

    def _row(self, key: str) -> _Row:
        row = self._rows.get(key)
        if row is None:
            if len(self._rows) >= MAX_THREADS - 1 and key != OTHER_THREADS:
                return self._row(OTHER_THREADS)
            row = self._rows[key] = _Row()
        return row

    # -- the watchdog thread -------------------------------------------------------------
    def look(self, now: float) -> None:
        """The watchdog thread, at each of its looks (``now`` read before anything
        else): begin or sample the stall of every worker running one callback for
        longer than the threshold."""
        try:
            self._drain()
            frames: dict[int, Any] | None = None
            threshold = self.threshold
            for state in list(self._running.values()):
                cur = state.cur
                if cur is None or state.hooks is None:
                    continue
                started = state.t0
                if now - started <= threshold:
                    continue
                stall = state.stall
                if stall is None or stall.started != started:
                    stall = Stall(started=started, detected=now)
                    stall.source, stall.callback, stall.task = stall_names(cur)
                    state.stall = stall
                if stall.samples >= MAX_SAMPLES:
                    continue
                if frames is None:
                    frames = sys._current_frames()
                stack = stack_of(frames.get(state.info[1]))
                if state.cur is cur and state.t0 == started:  # still that run: its stack
                    stall.vote(stack)
            frames = None
        except Exception as exc:
            self._failed(exc)

    def next_wait(self, now: float, poll: float) -> float:
        """How long the watchdog may sleep: until the callback running on a worker
        would turn into a stall, or the next sample of a stall going on."""
        wait = float("inf")
        threshold = self.threshold
        try:
            for state in list(self._running.values()):
                if state.cur is None or state.hooks is None:
                    continue
                stall = state.stall
                if stall is not None and stall.started == state.t0:
                    if stall.samples < MAX_SAMPLES:
                        wait = min(wait, max(poll, threshold * SAMPLE_EVERY_THRESHOLD))
                    continue
                wait = min(wait, max(poll, state.t0 + threshold - now))
        except Exception as exc:
            self._failed(exc)
        return wait

    def _failed(self, exc: BaseException) -> None:
        if self.hub is not None:
            self.hub.disable(self, exc, "worker loops")

    # -- recording -----------------------------------------------------------------------
    def _drain(self) -> None:
        """Record the callbacks over the threshold the workers handed over."""
        if not self._finished:
            return
        with self._lock:
            while True:
                try:
                    info, stall, described, started, ended = self._finished.popleft()
                except IndexError:
                    break
                if stall is None:
                    stall = Stall(started=started, detected=None, stack_source="none")
                    if described is not None:
                        stall.source, stall.callback, stall.task = described
                stall.ended = ended
                if stall.culprit is None:
                    stall.culprit = culprit_of(stall.stack)
                self._record(stall, info)

    def _record(self, stall: Stall, info: Info) -> None:
        duration = stall.duration()
        self.count += 1
        self.total += duration
        self.longest = max(self.longest, duration)
        row = self._row(info[2])
        row.count += 1
        row.total += duration
        if duration > row.longest:
            row.longest = duration
            row.worst = (stall, info)
        if len(self.kept) < self.limit:
            self.kept.append((stall, info))
        else:
            shortest = min(range(len(self.kept)), key=lambda i: self.kept[i][0].duration())
            if self.kept[shortest][0].duration() < duration:
                self.kept[shortest] = (stall, info)

    # -- reporting -----------------------------------------------------------------------
    def contribute(self, report: dict[str, Any]) -> None:
        self._drain()
        origin = self.hub.started if self.hub is not None else 0.0
        now = time.perf_counter()
        with self._lock:
            running = {state.info[2]: now - state.started for state in self._running.values()}
            kept = sorted(self.kept, key=lambda pair: pair[0].started)
            rows: list[dict[str, Any]] = []
            for key, row in self._rows.items():
                worst = None
                if row.worst is not None:
                    stall, info = row.worst
                    full = _stall_dict(stall, info, origin)
                    worst = {k: full[k] for k in ("started_at_s", "duration_ms", "culprit",
                                                  "callback", "task", "thread", "thread_ident")}
                rows.append({
                    "thread": key,
                    "loops": row.loops,
                    "kinds": dict(sorted(row.kinds.items())),
                    "run_s": round(row.run_s + running.get(key, 0.0), 6),
                    "stalls": {"count": row.count, "total_ms": round(row.total * 1000.0, 3),
                               "max_ms": round(row.longest * 1000.0, 3)},
                    "worst": worst,
                })
            rows.sort(key=lambda r: (-r["stalls"]["total_ms"], -r["loops"], r["thread"]))
            report["worker_loops"] = {
                "loops": self.loops,
                "watched": self.watched,
                "running": len(self._running),
                "run_s": round(self.run_s + sum(running.values()), 6),
                "stall_summary": {
                    "count": self.count,
                    "total_ms": round(self.total * 1000.0, 3),
                    "max_ms": round(self.longest * 1000.0, 3),
                    "dropped": max(0, self.count - len(self.kept)),
                },
                "threads": rows,
                "stalls": [_stall_dict(stall, info, origin) for stall, info in kept],
            }


def _stall_dict(stall: Stall, info: Info, origin: float) -> dict[str, Any]:
    out = stall.as_dict(origin)
    out["thread"] = info[0]
    out["thread_ident"] = info[1]
    out["loop_kind"] = info[3]
    return out
