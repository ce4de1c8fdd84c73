"""The stall watchdog: sees, while it happens, that the loop thread has not come back.

A daemon thread looks every few milliseconds.  The loop thread leaves evidence
of being alive in :class:`~looptools._state.LoopState`: the run counter and the
running handle (the lean hot path), exact callback times (the precise one),
the heartbeat.  The watchdog dates what it sees (a run first seen at a look
began at most one look earlier) and *arms* each run it sees in progress, so
that the loop thread reads the clock once when that run ends.  When the
evidence is older than the threshold the loop is stalled, whatever holds it —
an asyncio callback, a Qt slot, timer or paint event, or a C call.  The loop
thread's stack is sampled *during* the stall with ``sys._current_frames()``.

A C call that holds the GIL starves this thread too, so it cannot sample; it
notices afterwards by waking up late.  For those, ``faulthandler``'s C watchdog
(which needs no GIL), re-armed by this thread while it is healthy, has already
dumped the stacks to a private file during the stall.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import os
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import IO, Any

from looptools._describe import describe_handle, describe_task
from looptools._frames import Frame, as_dict, culprit_of, parse_faulthandler, stack_of
from looptools._hub import Detector
from looptools.settings import Settings


@dataclasses.dataclass
class Stall:
    """One stall of the loop thread."""

    started: float  # perf_counter
    detected: float | None  # perf_counter when the watchdog saw it, None if after the fact
    ended: float | None = None
    stack: list[Frame] = dataclasses.field(default_factory=list)
    culprit: Frame | None = None
    callback: str | None = None
    task: str | None = None
    gil_held: bool = False
    source: str = "loop"
    stack_source: str = "none"

    def duration(self, now: float | None = None) -> float:
        end = self.ended if self.ended is not None else (now or time.perf_counter())
        return max(0.0, end - self.started)

    def as_dict(self, origin: float) -> dict[str, Any]:
        return {
            "started_at_s": round(self.started - origin, 6),
            "duration_ms": round(self.duration() * 1000.0, 3),
            "detected_after_ms": (
                round((self.detected - self.started) * 1000.0, 3) if self.detected else None
            ),
            "culprit": as_dict(self.culprit),
            "stack": [as_dict(frame) for frame in self.stack],
            "callback": self.callback,
            "task": self.task,
            "gil_held": self.gil_held,
            "source": self.source,
            "stack_source": self.stack_source,
        }


class StallWatchdog(Detector):
    name = "stalls"

    def __init__(self, settings: Settings) -> None:
        self.threshold = settings.threshold_s
        heartbeat = settings.heartbeat_ms / 1000.0
        # Look often enough that a run is dated to within a look and a stall is
        # seen within threshold + one look.
        self.poll = min(0.010, max(0.002, self.threshold / 10.0, heartbeat / 2.0))
        self.gil_late = max(0.020, self.threshold / 2.0)
        self.use_faulthandler = settings.gil_capture
        self.limit = settings.max_stalls
        self.kept: list[Stall] = []
        self.count = 0
        self.total = 0.0
        self.longest = 0.0
        self.current: Stall | None = None
        self.state: Any = None
        self.qt = False
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._dump: IO[bytes] | None = None
        self._armed_at = 0.0
        self._lock = threading.Lock()
        self._recent_slow: deque[tuple[float, float, Any]] = deque(maxlen=8)
        # What the watchdog has seen of the loop thread (its own thread only):
        self._n = 0  # the run counter at the last look
        self._alive = time.perf_counter()  # the last time the loop was seen back
        self._run_t0: float | None = None  # when the run in progress began, as dated
        self._jobs: list[Callable[[float], Any]] = []  # run on each look (asyncio probes)

    # -- lifecycle (loop thread) --------------------------------------------
    def attach(self, state: Any, plugin: Any) -> None:
        self.state = state
        self.qt = bool(plugin.is_qt)
        if self.use_faulthandler:
            self._dump = tempfile.TemporaryFile(prefix="looptools-dump-")
            # O_APPEND so that faulthandler always writes at the end, even after
            # we truncate the file between stalls.
            try:
                import fcntl

                flags = fcntl.fcntl(self._dump.fileno(), fcntl.F_GETFL)
                fcntl.fcntl(self._dump.fileno(), fcntl.F_SETFL, flags | os.O_APPEND)
            except (ImportError, OSError):
                pass
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="looptools-watchdog", daemon=True)
        self._thread.start()

    def detach(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        if self._dump is not None:
            faulthandler.cancel_dump_traceback_later()
            self._dump.close()
            self._dump = None
        if self.current is not None:
            self._finish(self.current, self._end_of(self.current))

    def loop_started(self, now: float) -> None:
        self._alive = now
        self._run_t0 = None
        if self.state is not None:
            self._n = self.state.n

    def loop_stopped(self, now: float) -> None:
        # The loop stopping is the loop thread coming back: end any stall now.
        current = self.current
        if current is not None:
            self._finish(current, now)

    def slow_callback(self, handle: Any, started: float, duration: float) -> None:
        # Loop thread, only for callbacks over the threshold.  Lets a GIL-holding
        # stall that the watchdog could only see afterwards still name its callback.
        self._recent_slow.append((started, started + duration, handle))

    def _name_from_recent(self, stall: Stall) -> None:
        end = stall.ended or time.perf_counter()
        for started, finished, handle in reversed(list(self._recent_slow)):
            if started < end and finished > stall.started:
                self._describe(stall, handle)
                return

    def _describe(self, stall: Stall, handle: Any) -> None:
        try:
            kind, name, location, task = describe_handle(handle)
        except Exception:
            kind, name, location, task = "callback", "<unknown>", None, None
        stall.source = kind
        if task is not None:
            stall.task = describe_task(task)
            stall.callback = f"{name} step"
        else:
            stall.callback = f"{name} ({location})" if location else name

    def add_job(self, job: Callable[[float], Any]) -> None:
        """Run ``job(now)`` on this thread at each look (it wakes every few ms anyway)."""
        self._jobs = [*self._jobs, job]

    def remove_job(self, job: Callable[[float], Any]) -> None:
        self._jobs = [j for j in self._jobs if j is not job]

    def _run_jobs(self, now: float) -> None:
        for job in self._jobs:
            try:
                job(now)
            except Exception:  # e.g. the loop was closed: that job is done
                self.remove_job(job)

    # -- the watchdog thread -----------------------------------------------
    def _run(self) -> None:
        # The watchdog sleeps until the moment the loop's last sign of life would
        # turn into a stall (last seen + threshold), not at a fixed rate: on a
        # healthy loop it wakes ~20 times a second instead of ~200, and each wake
        # costs the loop thread a GIL hand-off.  Detection is as early as before.
        poll = self.poll
        idle_wait = min(0.05, self.threshold)
        # faulthandler dumps every thread's stack from its own C thread, without
        # the GIL.  That is safe for a thread stuck in a C call, but reading the
        # frames of a thread that is running Python races with it (we saw it
        # crash an app when dumps fired every few ms).  So the dump timer is set
        # to twice the threshold and re-armed every half threshold: it fires only
        # if this thread was kept from running for 1.5 x threshold, which on a
        # healthy machine means a C call holding the GIL.  GIL-held stalls
        # shorter than that are sampled right after they end instead.
        rearm_every = self.threshold / 2.0
        dump_after = self.threshold * 2.0
        wait = poll
        expected = time.perf_counter() + wait
        previous = time.perf_counter()
        while not self._stop.wait(wait):
            now = time.perf_counter()
            late = now - expected
            try:
                # Look first: re-arming faulthandler waits for its old thread with
                # the GIL released, and the loop thread would run on meanwhile.
                self._check(now, previous, late)
                if self._dump is not None and now - self._armed_at >= rearm_every:
                    faulthandler.dump_traceback_later(dump_after, file=self._dump)
                    self._armed_at = now
                self._run_jobs(now)
                # A dump from a short hiccup that was no stall: drop it so it
                # cannot be mistaken for the stack of a later stall.
                if self._dump is not None and late < self.gil_late \
                        and os.fstat(self._dump.fileno()).st_size:
                    os.ftruncate(self._dump.fileno(), 0)
                wait = self._next_wait(now, poll, idle_wait)
            except Exception as exc:
                if self.hub is not None:
                    self.hub.disable(self, exc, "watchdog")
                # Others' jobs (asyncio probes for the heartbeat) go on without us.
                while self._jobs and not self._stop.wait(0.01):
                    self._run_jobs(time.perf_counter())
                return
            previous = now
            expected = now + wait

    def _next_wait(self, now: float, poll: float, idle_wait: float) -> float:
        # While the loop runs, look every poll: a run is dated by the first look
        # that sees it, so the looks must not stop while the loop is healthy.
        state = self.state
        if state is None or not state.running:
            return idle_wait
        return poll

    def _observe(self, now: float, dated: float) -> tuple[float, Any]:
        """When the loop thread was last seen back in the loop, and the handle running.

        A run first seen at this look is dated ``dated``, or exactly if the
        precise hot path stamped it, and never before another sign of life.
        """
        state = self.state
        cur = state.cur
        n = state.n
        if n != self._n:
            # Runs began since the last look.  One in progress began after that
            # look; it is dated now (or exactly, if the precise hot path stamped
            # it), and armed, so that its end is timed exactly.
            self._n = n
            if cur is not None:
                if state.t0_n == n:
                    started = state.t0
                else:  # after every other sign of life
                    started = max(dated, state.last_beat, state.last_end, state.idle_seen)
                self._alive = self._run_t0 = started
                if state.armed != n:
                    state.armed_t0 = started
                    state.armed = n
            else:
                self._alive = now
                self._run_t0 = None
        elif cur is None:
            self._run_t0 = None
        seen = max(self._alive, state.last_beat, state.last_end, state.idle_seen)
        return seen, cur

    def _end_of(self, stall: Stall) -> float | None:
        """The first sign of life after ``stall`` began: when it ended."""
        state = self.state
        if state is None:
            return None
        after = [t for t in (state.last_end, state.last_beat, state.idle_seen, self._alive)
                 if t > stall.started + 1e-6]
        return min(after) if after else None

    def _check(self, now: float, previous: float, late: float) -> None:
        state = self.state
        if state is None:
            return
        gil = late >= self.gil_late
        current = self.current
        if not state.running:
            if current is not None:
                self._finish(current, self._end_of(current))
            return
        # A run first seen now began after the previous look.  Date it now, the
        # latest it can have begun, when looks are on time; if this thread was
        # kept from looking by a held GIL, the run most likely held it: date it
        # at the previous look; if the OS woke us late, split the difference.
        if gil:
            dated = previous
        elif now - previous > 2.0 * self.poll:
            dated = (previous + now) / 2.0
        else:
            dated = now
        seen, cur = self._observe(now, dated)
        if current is not None:
            if seen > current.started + 1e-6:
                self._finish(current, self._end_of(current))
            elif gil and not current.gil_held:
                current.gil_held = True
            return
        if now - seen > self.threshold:
            check = state.idle_check
            if check is not None and cur is None and not gil:
                frame = sys._current_frames().get(state.thread_id)
                if check(frame):
                    state.idle_seen = now  # waiting for I/O: alive, not stalled
                    return
            self._begin(seen, now, gil, cur)
        elif gil and late > self.threshold and seen > previous:
            # A GIL-holding stall that began after our last look and had already
            # ended when we could run again: record it after the fact.
            stall = Stall(started=previous, detected=None, gil_held=True, source="loop")
            self._fill_from_dump(stall)
            if not stall.stack:
                stall.stack = stack_of(sys._current_frames().get(state.thread_id))
                stall.stack_source = "after" if stall.stack else "none"
            self._finish(stall, self._end_of(stall), already_current=False)

    def _begin(self, started: float, now: float, gil: bool, handle: Any) -> None:
        state = self.state
        stall = Stall(started=started, detected=None if gil else now, gil_held=gil)
        run_t0 = self._run_t0
        if handle is not None and run_t0 is not None and run_t0 >= started - 1e-6:
            self._describe(stall, handle)
        else:
            stall.source = "qt" if self.qt else "loop"
        if gil:
            self._fill_from_dump(stall)
        if not stall.stack:
            frame = sys._current_frames().get(state.thread_id)
            stall.stack = stack_of(frame)
            # With the GIL held we could only look once it was released: the
            # function is right, the line may be the one after the C call.
            stall.stack_source = ("after" if gil else "sampled") if stall.stack else "none"
        stall.culprit = culprit_of(stall.stack)
        self.current = stall
        if self.hub is not None:
            self.hub.call("stall_started", stall)
            self.hub.emit("stall_started", **stall.as_dict(self.hub.started))

    def _fill_from_dump(self, stall: Stall) -> None:
        dump = self._dump
        if dump is None:
            return
        try:
            size = os.fstat(dump.fileno()).st_size
            text = os.pread(dump.fileno(), min(size, 1 << 20), max(0, size - (1 << 20)))
            os.ftruncate(dump.fileno(), 0)
        except OSError:
            return
        frames = parse_faulthandler(text.decode("utf-8", "replace"), self.state.thread_id)
        if frames:
            stall.stack = frames
            stall.stack_source = "faulthandler"
            stall.culprit = culprit_of(frames)

    def _finish(self, stall: Stall, ended: float | None, already_current: bool = True) -> None:
        with self._lock:
            if already_current:
                if self.current is not stall:
                    return  # the other thread finished it first
                self.current = None
        stall.ended = ended if ended is not None else time.perf_counter()
        if stall.culprit is None:
            stall.culprit = culprit_of(stall.stack)
        if stall.callback is None and stall.gil_held:
            self._name_from_recent(stall)
        duration = stall.duration()
        if duration <= self.threshold * 0.5:
            return
        self.count += 1
        self.total += duration
        self.longest = max(self.longest, duration)
        if len(self.kept) < self.limit:
            self.kept.append(stall)
        else:
            shortest = min(range(len(self.kept)), key=lambda i: self.kept[i].duration())
            if self.kept[shortest].duration() < duration:
                self.kept[shortest] = stall
        if self.hub is not None:
            self.hub.call("stall_ended", stall)
            self.hub.emit("stall_ended", **stall.as_dict(self.hub.started))

    # -- reporting (off the loop thread) -------------------------------------
    def stalls(self, origin: float) -> list[dict[str, Any]]:
        kept = sorted(list(self.kept), key=lambda stall: stall.started)
        return [stall.as_dict(origin) for stall in kept]

    def contribute(self, report: dict[str, Any]) -> None:
        origin = self.hub.started if self.hub else 0.0
        report["stalls"] = self.stalls(origin)
        report["stall_summary"] = {
            "count": self.count,
            "total_ms": round(self.total * 1000.0, 3),
            "max_ms": round(self.longest * 1000.0, 3),
            "dropped": max(0, self.count - len(self.kept)),
        }

    def snapshot(self) -> dict[str, Any]:
        origin = self.hub.started if self.hub else 0.0
        current = self.current
        recent = sorted(list(self.kept), key=lambda stall: stall.started)[-8:]
        return {
            "stall_now": current.as_dict(origin) if current is not None else None,
            "recent_stalls": [stall.as_dict(origin) for stall in recent],
            "stall_summary": {
                "count": self.count,
                "total_ms": round(self.total * 1000.0, 3),
                "max_ms": round(self.longest * 1000.0, 3),
            },
        }
