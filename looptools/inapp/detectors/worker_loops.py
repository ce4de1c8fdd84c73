"""Asyncio loops on worker threads: their stalls, named by thread and loop kind.

Real Qt apps run asyncio loops off the main thread: a ``QRunnable`` whose ``run()``
calls ``asyncio.run(job())`` for each job, a ``threading.Thread`` running its own
loop, a short-lived daemon thread per command.  A ``time.sleep(0.2)`` in a worker's
coroutine stalls *that* loop: the worker's own queue of callbacks waits, not the GUI.

* **Seen** through the same ``asyncio.events._set_running_loop`` wrapper that finds
  the main loop (``looptools.inapp._attach``): every loop that starts or stops running on
  another thread, however it was made.
* **Timed** (asyncio's selector loops only) by hooks on that loop object
  (``looptools.inapp._worker_loop``): two clock reads per callback, on the worker;
  nothing class-wide, so the main loop's hot path is untouched.  A callback over the
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

What the main loop gets besides, per thread row, from the same hooks:

* **lag**: how long each callback waited to start since it was made ready (appended
  to the ready queue; a timer: since it was due), in a log-bucket histogram per run
  (``WorkerLoop.lag``), merged into the row as the run ends;
* **slow callbacks**: the stalls again, summed per callback (on a worker loop the two
  thresholds are one: every callback over it is a stall);
* **tasks**: those its ``create_task`` made while watched, counted at the loop's first
  wait for I/O, every ``task_audit_s`` and as each run ends (the peak); the ones still
  pending as a run ends are remembered (at most ``MAX_PENDING`` per loop) and judged
  later: cancelled by ``asyncio.run``'s shutdown (its ``_cancel_all_tasks`` runs the
  loop again), or never finished (the thread moved to another loop, or the report is
  made with the loop stopped), they are the loop's leaked tasks; finished normally, or
  ended by the app's own next run of the loop, they are not;
* **blocking calls**: the blocking-call detector (``detectors/blocking.py``) hands over
  those made on a worker thread while its loop runs a callback
  (:meth:`WorkerLoops.blocking_call`), per call and application site.

uvloop, qasync and QtAsyncio loops on worker threads are counted (``kinds``) but
not timed: their callbacks do not pass through an asyncio ready queue we can date.
"""

from __future__ import annotations

import re
import sys
import threading
import time
import weakref
from collections import deque
from typing import Any

from looptools._frames import Frame, as_dict, culprit_of, stack_of
from looptools.inapp._describe import awaiting_frame, coro_name, coro_of, stall_names, task_name
from looptools.inapp._stats import LogHistogram
from looptools.inapp._threadnames import DUMMY_NAME, os_thread_name
from looptools.inapp._worker_loop import Finished, Hooks, Info, WorkerLoop, hookable, loop_kind
from looptools.inapp.detectors.stalls import Stall
from looptools.inapp.hub import Detector
from looptools.settings import Settings

#: Rows of the per-thread summary (further thread names share the last row).
MAX_THREADS = 64
OTHER_THREADS = "(other threads)"
#: Threads remembered (for their name and the last loop they ran).
MAX_SEEN = 256
#: Thread rows (and loops stalled now) in a live snapshot.
SNAPSHOT_ROWS = 5
#: Stacks sampled per worker stall (enough to vote; a worker blocked for minutes must
#: not keep the watchdog looking every few ms), and how often, at most.
MAX_SAMPLES = 200
SAMPLE_EVERY_THRESHOLD = 0.2
#: Python's numbered default names: ``Thread-12 (run)``, ``Thread-12``, ``Dummy-3``.
_NUMBERED = re.compile(r"^(Thread|Dummy)-\d+")
#: Tasks pending as a run ends remembered per loop, to be judged later.
MAX_PENDING = 20
#: Callback identities summed per thread row (the rest share one ``<other>`` entry),
#: and application sites per blocking call per row.
MAX_SLOW = 10
MAX_SITES = 10


def row_key(name: str) -> str:
    """The per-thread row a thread's loops count in: Python's numbered names folded."""
    return _NUMBERED.sub(lambda m: f"{m.group(1)}-*", name, count=1)


def _cancelling_all(frame: Any, depth: int = 16) -> bool:
    """True when ``asyncio.run``'s shutdown (``asyncio.runners._cancel_all_tasks``) is
    among the callers of ``frame``: the loop runs again to cancel what is left."""
    while frame is not None and depth > 0:
        code = frame.f_code
        if code.co_name == "_cancel_all_tasks" and code.co_filename.endswith("runners.py"):
            return True
        frame = frame.f_back
        depth -= 1
    return False


def _finished_normally(task: Any) -> bool:
    try:
        return bool(task.done() and not task.cancelled() and task.exception() is None)
    except Exception:
        return False


class _Blocking:
    """One blocking call's figures in a thread row: in all, and per application site."""

    __slots__ = ("count", "longest", "sites", "total")

    def __init__(self) -> None:
        self.count = 0
        self.total = 0.0
        self.longest = 0.0
        #: site -> [count, total s, longest s] (at most MAX_SITES; the rest in all only)
        self.sites: dict[Frame | None, list[float]] = {}

    def add(self, site: Frame | None, spent: float) -> None:
        self.count += 1
        self.total += spent
        self.longest = max(self.longest, spent)
        figures = self.sites.get(site)
        if figures is None:
            if len(self.sites) >= MAX_SITES:
                return
            figures = self.sites[site] = [0, 0.0, 0.0]
        figures[0] += 1
        figures[1] += spent
        figures[2] = max(figures[2], spent)

    def as_dict(self, call: str) -> dict[str, Any]:
        sites = sorted(self.sites.items(), key=lambda item: -item[1][0])
        return {"call": call, "count": self.count, "total_ms": _ms(self.total),
                "max_ms": _ms(self.longest),
                "sites": [{**(as_dict(site) or {"function": "?", "file": "?", "line": None}),
                           "count": int(n), "total_ms": _ms(total), "max_ms": _ms(longest)}
                          for site, (n, total, longest) in sites]}


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def _lag_dict(histogram: LogHistogram | None) -> dict[str, Any] | None:
    """A lag histogram as the report shows it: null when no timer ran."""
    if histogram is None or not histogram.count:
        return None
    return {"samples": histogram.count, "p50_ms": round(histogram.percentile(50), 3),
            "p99_ms": round(histogram.percentile(99), 3), "max_ms": round(histogram.max, 3)}


class _Thread:
    """A thread that ran a worker loop: its name and the last loop it ran."""

    __slots__ = ("cancel_all", "hookable", "key", "kind", "last", "name", "pending", "tasks",
                 "thread")

    def __init__(self, thread: Any, name: str, key: str) -> None:
        self.thread = thread
        self.name = name
        self.key = key
        self.last: Any = None  # a weak reference to the last loop, or its id()
        #: the last loop's kind, and whether its callbacks can be timed
        self.kind = "asyncio"
        self.hookable = False
        #: the last loop's tasks made while watched (``WorkerLoop.tasks``), over its runs
        self.tasks: Any = None
        #: its tasks still pending as its last run ended: (weak reference, entry)
        self.pending: list[tuple[weakref.ref[Any], dict[str, Any]]] = []
        #: the run going on is asyncio.run's cancelling of those (its _cancel_all_tasks)
        self.cancel_all = False


class _Row:
    """The per-thread-name summary."""

    __slots__ = ("blocking", "count", "created", "kinds", "lag", "leaked", "longest", "loops",
                 "peak", "run_s", "slow", "total", "worst")

    def __init__(self) -> None:
        self.loops = 0
        self.kinds: dict[str, int] = {}
        self.run_s = 0.0
        self.count = 0
        self.total = 0.0
        self.longest = 0.0
        self.worst: tuple[Stall, Info] | None = None
        #: its loops' timer lateness (ms), merged as each run ends
        self.lag: LogHistogram | None = None
        #: tasks made while watched, the most pending at once, and the leaked ones
        self.created = 0
        self.peak = 0
        self.leaked = 0
        #: (source, callback) -> [count, total s, longest s] of its callbacks over the threshold
        self.slow: dict[tuple[str, str], list[float]] = {}
        #: call -> its blocking calls made in the row's callbacks
        self.blocking: dict[str, _Blocking] = {}

    def figures(self, running: list[WorkerLoop], unjudged: int) -> dict[str, Any]:
        """What the row adds to the stalls (``running``: its loops running now;
        ``unjudged``: tasks its loops left pending, not judged yet)."""
        lag = self.lag
        if any(state.lag is not None or state.prompt for state in running):
            lag = LogHistogram()
            if self.lag is not None:
                lag.merge(self.lag)
            for state in running:
                state.lag_into(lag)
        slow = sorted(self.slow.items(), key=lambda item: -item[1][1])
        return {
            "lag": _lag_dict(lag),
            "tasks": {"created": self.created + sum(state.created for state in running),
                      "peak_pending": max([self.peak] + [state.peak for state in running]),
                      "leaked": self.leaked + unjudged},
            "slow_callbacks": [{"kind": kind, "name": name, "count": int(n),
                                "total_ms": _ms(total), "max_ms": _ms(longest)}
                               for (kind, name), (n, total, longest) in slow],
            "blocking_calls": sorted((b.as_dict(call) for call, b in self.blocking.items()),
                                     key=lambda row: -row["count"]),
        }


class WorkerLoops(Detector):
    name = "worker_loops"

    def __init__(self, settings: Settings) -> None:
        self.threshold = settings.threshold_s
        self.limit = settings.max_stalls
        self.audit_every = settings.task_audit_s
        self.tasks_limit = settings.max_tasks
        #: every worker loop's timer lateness (ms) together
        self.lag = LogHistogram()
        self.created = 0
        self.peak = 0
        #: the leaked tasks kept (at most ``max_tasks``) and how many there were
        self.leaked: list[dict[str, Any]] = []
        self.leaked_count = 0
        self.blocking_count = 0
        self.blocking_total = 0.0
        self.blocking_longest = 0.0
        #: the blocking-call detector, once asked to see worker threads too
        self._blocking: Any = None
        #: held while the first worker loop asks it (others starting meanwhile wait)
        self._blocking_lock = threading.Lock()
        self._blocking_done = False
        # Reentrant: a blocking call recorded (blocking_call) on a thread that holds it
        # (reading the OS's thread name opens a file) must not wait for itself.
        self._lock = threading.RLock()
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
        self._blocking_done = False
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
        with self._blocking_lock:  # (after an install going on)
            blocking, self._blocking = self._blocking, None
            self._blocking_done = True
        if blocking is not None:
            try:
                blocking.serve_workers(None)
            except Exception as exc:
                if self.hub is not None:
                    self.hub.disable(blocking, exc, "worker loops")
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
        self._lock = threading.RLock()
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
        self._blocking = None  # its own forget() undoes its wrappers
        self._blocking_lock = threading.Lock()

    # -- worker threads ------------------------------------------------------------------
    def loop_changed(self, loop: Any) -> None:
        """On a worker thread: ``loop`` starts running there, or (None) the one stops."""
        if not self._on:
            return
        ident = threading.get_ident()
        if loop is None:
            ending = self._running.get(ident)
            # On the loop's own thread, as its run ends: its tasks pending now.
            pending = ending.audit() if ending is not None and ending.hooks is not None else []
            described = [self._describe(task, ending) for task in pending[:MAX_PENDING]] \
                if pending and ending is not None else []
            with self._lock:
                state = self._running.pop(ident, None)
                if state is None:
                    return
                self._ran(ident, state, None)
                if state is ending and state.hooks is not None:
                    self._judge(ident, state, pending, described)
            self._drain()
            return
        if not self._blocking_done and hookable(loop):
            self._serve_blocking()  # before the hooks: what it costs is no callback's wait
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
                self._abandon(seen)  # what the thread's last loop left pending
                seen.tasks = None
            elif seen.pending:  # the same loop again, some of its tasks pending
                seen.cancel_all = _cancelling_all(sys._getframe(1))
            info: Info = (seen.name, ident, seen.key, seen.kind)
            state = WorkerLoop(info, self.threshold, self._finished, self.audit_every,
                               seen.tasks)
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

    def _serve_blocking(self) -> None:
        """A worker thread, as the first timed loop starts: have the blocking-call
        detector record the calls made on worker threads too (``blocking_call``).  It
        may install its wrappers now (a Qt main thread without asyncio: the import of
        blockbuster); a loop starting on another thread meanwhile waits until that is
        done, so that its blocking calls are not missed."""
        with self._blocking_lock:
            if self._blocking_done or not self._on:
                return
            blocking = self.hub.get("blocking") if self.hub is not None else None
            try:
                if blocking is not None and hasattr(blocking, "serve_workers"):
                    blocking.serve_workers(self)
                    self._blocking = blocking
            except Exception as exc:
                if self.hub is not None and blocking is not None:
                    self.hub.disable(blocking, exc, "worker loops")
            finally:
                self._blocking_done = True

    def _ran(self, ident: int, state: WorkerLoop, now: float | None) -> None:
        """(Under the lock) ``state``'s run is over: remove its hooks (when on its own
        thread), count its running time."""
        hooks = state.hooks
        if hooks is not None and now is None:
            hooks.remove()
        ended = time.perf_counter() if now is None else now
        ran = max(0.0, ended - state.started)
        self.run_s += ran
        row = self._row(state.info[2])
        row.run_s += ran
        if state.lag is not None or state.prompt:
            state.lag_into(self.lag)
            if row.lag is None:
                row.lag = LogHistogram()
            state.lag_into(row.lag)
        row.created += state.created
        self.created += state.created
        row.peak = max(row.peak, state.peak)
        self.peak = max(self.peak, state.peak)
        seen = self._threads.get(ident)
        if seen is not None and state.tasks is not None:
            seen.tasks = state.tasks  # for the loop's next run

    def _describe(self, task: Any, state: WorkerLoop) -> dict[str, Any]:
        """The loop thread, as a run ends: a task still pending, as the report shows it."""
        coro = coro_of(task)
        made = state.tasks.get(task) if state.tasks is not None else None
        created_at = None
        if made is not None:
            code, line = made
            created_at = {"function": getattr(code, "co_qualname", code.co_name),
                          "file": code.co_filename, "line": line}
        name, ident, _key, kind = state.info
        return {"name": task_name(task), "coro": coro_name(coro), "created_at": created_at,
                "awaiting": as_dict(awaiting_frame(coro)), "state": "pending",
                "thread": name, "thread_ident": ident, "loop_kind": kind}

    def _judge(self, ident: int, state: WorkerLoop, pending: list[Any],
               described: list[dict[str, Any]]) -> None:
        """(Under the lock, the loop thread, as a run ends.)  The tasks its last run left
        pending that ended since: leaked if ``asyncio.run``'s shutdown cancelled them;
        those pending now are remembered for the next judgement."""
        seen = self._threads.get(ident)
        if seen is None:
            return
        still = {id(task) for task in pending}
        cancel_all, seen.cancel_all = seen.cancel_all, False
        for ref, entry in seen.pending:
            task = ref()
            if task is None or id(task) in still or not cancel_all or _finished_normally(task):
                continue  # pending yet, or ended by the app's own run of the loop
            entry["state"] = "cancelled" if task.cancelled() else "failed"
            self._leak(entry)
        seen.pending = [(weakref.ref(task), entry)
                        for task, entry in zip(pending, described, strict=False)]

    def _abandon(self, seen: _Thread) -> None:
        """(Under the lock.)  ``seen``'s last loop will not run again (the thread runs
        another, or is forgotten): the tasks it left pending never finished."""
        for ref, entry in seen.pending:
            task = ref()
            if task is None or not task.done():
                self._leak(entry)
        seen.pending = []
        seen.cancel_all = False

    def _leak(self, entry: dict[str, Any]) -> None:
        self.leaked_count += 1
        self._row(row_key(entry["thread"])).leaked += 1
        if len(self.leaked) < self.tasks_limit:
            self.leaked.append(entry)

    def _thread(self, ident: int) -> _Thread:
        # threading._active: the thread's object without making a _DummyThread for
        # a thread Python did not start (asyncio.run already made one, if any).
        thread = threading._active.get(ident)  # type: ignore[attr-defined]
        seen = self._threads.get(ident)
        if seen is not None and seen.thread is thread:
            return seen
        if seen is not None:
            self._abandon(seen)  # another thread with the ident of one that ended
        name = thread.name if thread is not None else f"thread {ident}"
        if thread is None or (isinstance(thread, threading._DummyThread)  # type: ignore[attr-defined]
                              and DUMMY_NAME.fullmatch(name)):  # not a name the app gave it
            name = os_thread_name() or name
        if len(self._threads) >= MAX_SEEN:
            for other in [i for i in self._threads if i not in self._running]:
                self._abandon(self._threads.pop(other))
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
        key = (stall.source, stall.callback or "<unknown>")
        slow = row.slow.get(key)
        if slow is None:
            if len(row.slow) >= MAX_SLOW:
                key = ("callback", "<other>")
            slow = row.slow.setdefault(key, [0, 0.0, 0.0])
        slow[0] += 1
        slow[1] += duration
        slow[2] = max(slow[2], duration)
        if duration > row.longest:
            row.longest = duration
            row.worst = (stall, info)
        if len(self.kept) < self.limit:
            self.kept.append((stall, info))
        else:
            shortest = min(range(len(self.kept)), key=lambda i: self.kept[i][0].duration())
            if self.kept[shortest][0].duration() < duration:
                self.kept[shortest] = (stall, info)

    # -- blocking calls (the blocking-call detector's wrappers, on worker threads) --------
    def in_callback(self, ident: int) -> WorkerLoop | None:
        """The timed loop of thread ``ident`` if it is running one of its callbacks now."""
        state = self._running.get(ident)
        if state is None or state.cur is None or state.hooks is None:
            return None
        return state

    def blocking_call(self, state: WorkerLoop, call: str, site: Frame | None,
                      spent: float) -> None:
        """A worker thread: a blocking ``call`` made at ``site`` in a callback of
        ``state``'s loop took ``spent`` seconds."""
        with self._lock:
            self.blocking_count += 1
            self.blocking_total += spent
            self.blocking_longest = max(self.blocking_longest, spent)
            calls = self._row(state.info[2]).blocking
            figures = calls.get(call)
            if figures is None:
                figures = calls[call] = _Blocking()
            figures.add(site, spent)

    # -- reporting -----------------------------------------------------------------------
    def contribute(self, report: dict[str, Any]) -> None:
        self._drain()
        origin = self.hub.started if self.hub is not None else 0.0
        now = time.perf_counter()
        with self._lock:
            running = {state.info[2]: now - state.started for state in self._running.values()}
            live: dict[str, list[WorkerLoop]] = {}
            for state in self._running.values():
                live.setdefault(state.info[2], []).append(state)
            # Left pending by a loop that is not running now and not judged yet: pending.
            unjudged: list[dict[str, Any]] = []
            waiting: dict[str, int] = {}
            for ident, seen in self._threads.items():
                if ident in self._running:
                    continue
                for ref, entry in seen.pending:
                    task = ref()
                    if task is None or not task.done():
                        unjudged.append(entry)
                        where = seen.key if seen.key in self._rows else OTHER_THREADS
                        waiting[where] = waiting.get(where, 0) + 1
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
                    **row.figures(live.get(key, []), waiting.get(key, 0)),
                })
            rows.sort(key=lambda r: (-r["stalls"]["total_ms"], -r["loops"], r["thread"]))
            lag = self.lag
            if any(s.lag is not None or s.prompt for s in self._running.values()):
                lag = LogHistogram()
                lag.merge(self.lag)
                for state in self._running.values():
                    state.lag_into(lag)
            tasks = {
                "created": self.created + sum(s.created for s in self._running.values()),
                "peak_pending": max([self.peak] + [s.peak for s in self._running.values()]),
                "leaked": self.leaked_count + len(unjudged),
                "pending_at_close": (self.leaked + unjudged)[:self.tasks_limit],
            }
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
                "lag": _lag_dict(lag),
                "tasks": tasks,
                "blocking_summary": {"count": self.blocking_count,
                                     "total_ms": _ms(self.blocking_total),
                                     "max_ms": _ms(self.blocking_longest)},
            }

    def snapshot(self) -> dict[str, Any]:
        """For the live dashboard (the writer thread, every 0.25 s): the totals, the
        ``SNAPSHOT_ROWS`` most stalled thread rows as in the report, and the worker loops
        stalled right now (seen by the watchdog: how long so far, the culprit so far)."""
        self._drain()
        origin = self.hub.started if self.hub is not None else 0.0
        now = time.perf_counter()
        with self._lock:
            if not self.loops:
                return {}
            running = list(self._running.values())
            rows = sorted(self._rows.items(),
                          key=lambda item: (-item[1].total, -item[1].loops, item[0]))
            threads = [_row_dict(key, row, origin) for key, row in rows[:SNAPSHOT_ROWS]
                       if row.count]
        stalled_now = []
        for state in running:
            stall, cur = state.stall, state.cur
            if cur is None or stall is None or stall.started != state.t0:
                continue
            name, ident, _key, kind = state.info
            stalled_now.append({"thread": name, "thread_ident": ident,
                                "loop_kind": kind,
                                "started_at_s": round(stall.started - origin, 6),
                                "duration_ms": round((now - stall.started) * 1000.0, 3),
                                "culprit": as_dict(stall.culprit), "callback": stall.callback})
        stalled_now.sort(key=lambda s: -float(s["duration_ms"]))
        return {"worker_loops": {
            "loops": self.loops,
            "running": len(running),
            "stall_summary": {"count": self.count,
                              "total_ms": round(self.total * 1000.0, 3),
                              "max_ms": round(self.longest * 1000.0, 3)},
            "threads": threads,
            "stalled_now": stalled_now[:SNAPSHOT_ROWS],
        }}


def _row_dict(key: str, row: _Row, origin: float) -> dict[str, Any]:
    """A stalled thread row for a snapshot: the report's fields, ``worst`` without stack."""
    worst = None
    if row.worst is not None:
        stall, info = row.worst
        worst = {"started_at_s": round(stall.started - origin, 6),
                 "duration_ms": round(stall.duration() * 1000.0, 3),
                 "culprit": as_dict(stall.culprit), "callback": stall.callback,
                 "task": stall.task, "thread": info[0], "thread_ident": info[1]}
    return {"thread": key, "loops": row.loops, "kinds": dict(sorted(row.kinds.items())),
            "stalls": {"count": row.count, "total_ms": round(row.total * 1000.0, 3),
                       "max_ms": round(row.longest * 1000.0, 3)},
            "worst": worst}


def _stall_dict(stall: Stall, info: Info, origin: float) -> dict[str, Any]:
    out = stall.as_dict(origin)
    out["thread"] = info[0]
    out["thread_ident"] = info[1]
    out["loop_kind"] = info[3]
    return out
