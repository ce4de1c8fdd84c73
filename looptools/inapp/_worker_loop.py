"""One asyncio loop running on a worker thread: its state and its per-loop hooks.

A worker loop (``asyncio.run`` inside a ``QRunnable``, a thread running its own
loop) is timed by hooks on **that loop object only** — never a class-wide patch,
so the main loop's hot path and every other loop are untouched:

* its ready queue ``loop._ready`` becomes a :class:`TimedReady` (a ``deque``
  subclass) whose ``append`` dates each callback made ready (beside it, in a
  plain deque of stamps) and whose ``popleft`` — called by
  ``BaseEventLoop._run_once`` right before each callback — reads the clock once:
  the start of this callback, the end of the one before, and how long this one
  waited since it was ready (the loop's **lag**; a timer's since it was due, in
  the loop's own clock);
* its selector's ``select`` is shadowed on the selector instance: entering the
  wait for I/O ends the last callback of an iteration (and, at most every
  ``task_audit_s``, counts the pending tasks: :meth:`WorkerLoop.audit`);
* its ``create_task`` is shadowed on the loop instance: each task made while the
  loop runs is kept weakly with the first frame outside asyncio that made it
  (:meth:`WorkerLoop.track`), for the task audit.

So each callback costs the worker two clock reads and a few stores, and each
loop iteration one more; a callback over the threshold calls
:meth:`WorkerLoop.over` (the rare path).  The watchdog thread reads ``cur`` and
``t0`` to see a callback running for longer than the threshold, while it lasts.
Never ``vars(loop)``: a loop whose attributes live inline would build a real
dictionary, and each of its callbacks would pay for it (``looptools.inapp._patch``).

Swapping ``_ready`` is done on the loop's own thread only, outside
``_run_once`` (at start and stop, and in the ``select`` wrapper): another
thread's ``call_soon_threadsafe`` appends to whichever deque
``loop._ready`` names when it looks, so the new deque is bound *before* the
old one's items are moved into it, and a callback appended to the old one
after that is moved at the next ``select`` (which then does not wait).
"""

from __future__ import annotations

import asyncio
import asyncio.base_events
import asyncio.events
import collections
import os
import selectors
import sys
import weakref
from collections.abc import Callable
from time import monotonic, perf_counter
from typing import Any

from looptools.inapp._describe import stall_names
from looptools.inapp._patch import _MISSING, _own_attribute
from looptools.inapp._stats import LogHistogram

_popleft = collections.deque.popleft
_append = collections.deque.append
_clear = collections.deque.clear
#: a callback that waited no longer than this (the lag histogram's first bucket, 0.05
#: ms) is only counted (``WorkerLoop.prompt``): most do, and counting is cheaper
_PROMPT = LogHistogram().floor / 1000.0
_TimerHandle = asyncio.events.TimerHandle
#: asyncio's own files: a task's creator is the first frame outside them
_ASYNCIO_DIR = os.path.join(os.path.dirname(os.path.abspath(asyncio.__file__)), "")

#: (thread name, thread ident, row key, loop kind) of a worker loop
Info = tuple[str, int, str, str]
#: what a worker thread hands over for a callback over the threshold:
#: (info, the live stall the watchdog had begun or None, the callback described
#: (kind, name, task) when there was none, started, ended)
Finished = tuple[Info, Any, "tuple[str, str, str | None] | None", float, float]


def loop_kind(loop: Any) -> str:
    """The kind of a loop, in the report's words (``loop.kind``), by what it is."""
    for module, name, kind in _KINDS:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(loop, cls):
            return kind
    return "asyncio" if hookable(loop) else "unknown"


#: (module, class, kind) of the loops that are not asyncio's own, looked up only if
#: the app imported the module (as looptools.plugins.plugin_for does)
_KINDS = (("qasync", "_QEventLoop", "qasync"),
          ("PySide6.QtAsyncio.events", "QAsyncioEventLoop", "qtasyncio"),
          ("uvloop", "Loop", "uvloop"))


def hookable(loop: Any) -> bool:
    """asyncio's own selector loop (or a subclass keeping its iteration): only there
    does ``_run_once`` pop ``loop._ready`` before each callback and wait in
    ``loop._selector.select``."""
    base = asyncio.base_events.BaseEventLoop
    if not isinstance(loop, base) or getattr(type(loop), "_run_once", None) \
            is not getattr(base, "_run_once", None):
        return False
    # Never through vars(loop): a loop whose attributes live inline would build a
    # real dictionary, and every callback of it would pay for it (looptools.inapp._patch).
    ready = getattr(loop, "_ready", None)
    selector = getattr(loop, "_selector", None)
    return type(ready) is collections.deque and isinstance(selector, selectors.BaseSelector) \
        and type(selector).__dictoffset__ != 0


class WorkerLoop:
    """The state of one worker loop while it runs (loop thread writes, watchdog reads)."""

    __slots__ = ("audit_every", "created", "cur", "finished", "hooks", "info", "lag",
                 "mono0", "next_audit", "peak", "prompt", "stall", "started", "t0", "tasks",
                 "thr")

    def __init__(self, info: Info, threshold_s: float,
                 finished: collections.deque[Finished], audit_every: float = 1.0,
                 tasks: weakref.WeakKeyDictionary[Any, tuple[Any, int] | None] | None = None,
                 ) -> None:
        self.info = info
        self.thr = threshold_s
        #: the handle running now (None: between callbacks or waiting for I/O)
        self.cur: Any = None
        #: when ``cur`` began
        self.t0 = 0.0
        #: the stall the watchdog began for the run starting at ``stall.started``
        self.stall: Any = None
        #: where callbacks over the threshold go (the detector's queue)
        self.finished = finished
        self.started = perf_counter()
        self.hooks: Hooks | None = None
        #: this run's lag: how long each callback waited to start (ms) since it was
        #: made ready (a timer: since it was due), the first made when one waited
        #: longer than _PROMPT (None: none yet); the prompt ones only counted
        self.lag: LogHistogram | None = None
        self.prompt = 0
        #: this run's start in the loop's own clock (None: a loop whose ``time()`` is
        #: not asyncio's, whose timers cannot be dated: no lag)
        self.mono0: float | None = None
        #: the loop's tasks created while watched (over all its runs: the detector
        #: hands it from run to run) -> (code, line) of their creator; None until one
        self.tasks = tasks
        #: tasks created in this run, and the most pending at once at an audit
        self.created = 0
        self.peak = 0
        self.audit_every = audit_every
        #: the pending tasks are counted at the first wait for I/O from then on
        self.next_audit = self.started

    def timer(self, handle: Any) -> None:
        """Loop thread: one of the app's timers starts: how late, in the loop's clock
        (since it was due, or since this run began if it was due before)."""
        start = self.mono0
        if start is None or handle._cancelled:  # (start: see popleft)
            return
        when = handle._when
        late = monotonic() - (when if when > start else start)
        if late > _PROMPT:
            self.waited(late)
        else:
            self.prompt += 1

    def waited(self, seconds: float) -> None:
        """Loop thread: the callback starting now waited ``seconds`` since it was ready."""
        lag = self.lag
        if lag is None:
            lag = self.lag = LogHistogram()
        lag.add(seconds * 1000.0)

    def lag_into(self, target: LogHistogram) -> None:
        """Add this run's lag so far to ``target`` (any thread)."""
        if self.lag is not None:
            target.merge(self.lag)
        prompt = self.prompt
        if prompt:
            target.buckets[0] = target.buckets.get(0, 0) + prompt
            target.count += prompt

    def track(self, task: Any, frame: Any) -> None:
        """Loop thread: ``task`` was just created (``frame``: the caller of
        ``create_task``); kept weakly, with the first frame outside asyncio."""
        self.created += 1
        tasks = self.tasks
        if tasks is None:
            tasks = self.tasks = weakref.WeakKeyDictionary()
        while frame is not None and frame.f_code.co_filename.startswith(_ASYNCIO_DIR):
            frame = frame.f_back
        tasks[task] = (frame.f_code, frame.f_lineno) if frame is not None else None

    def audit(self) -> list[Any]:
        """Loop thread: the tasks created while watched that are pending now."""
        tasks = self.tasks
        pending = [task for task in list(tasks) if not task.done()] if tasks else []
        if len(pending) > self.peak:
            self.peak = len(pending)
        self.next_audit = self.t0 + self.audit_every
        return pending

    def over(self, handle: Any, started: float, ended: float) -> None:
        """Loop thread, rare path: a callback ran longer than the threshold."""
        stall = self.stall
        if stall is not None and stall.started == started:
            self.stall = None
            described = None
        else:
            stall = None  # not seen while it lasted: name the callback now
            described = stall_names(handle)
        self.finished.append((self.info, stall, described, started, ended))

    def end(self) -> None:
        """Loop thread: the callback in progress (if any) is over now."""
        cur = self.cur
        if cur is not None:
            self.cur = None  # no more samples of it (see WorkerLoops.look)
            now = perf_counter()
            if now - self.t0 > self.thr:
                self.over(cur, self.t0, now)


class TimedReady(collections.deque):  # type: ignore[type-arg]
    """A worker loop's ready queue: ``append`` dates each callback made ready,
    ``popleft`` the callback about to run (and so how long it waited: the lag)."""

    __slots__ = ("stamps", "w")
    w: WorkerLoop | None
    #: when each item was appended, in the same order (a plain deque)
    stamps: collections.deque[float]

    def append(self, handle: Any) -> None:
        # The stamp first: whichever thread appends, an item popped has its stamp
        # there already (two threads appending at once may swap their two stamps).
        _append(self.stamps, perf_counter())
        _append(self, handle)

    def clear(self) -> None:
        _clear(self)
        _clear(self.stamps)

    def popleft(self) -> Any:
        handle = _popleft(self)
        w = self.w
        if w is not None:
            now = perf_counter()
            stamps = self.stamps
            ready = _popleft(stamps) if stamps else now
            if now - w.t0 > w.thr and w.cur is not None:  # rare: the last one was long
                prev, w.cur = w.cur, None  # no more samples of it (see WorkerLoops.look)
                w.over(prev, w.t0, now)
            w.t0 = now  # before cur: a watchdog that sees the new cur sees its start
            w.cur = handle
            if type(handle) is _TimerHandle and w.mono0 is not None:
                w.timer(handle)  # one of the app's timers: late since it was due
            elif now - ready > _PROMPT:
                w.waited(now - ready)
            else:
                w.prompt += 1
        return handle


class Hooks:
    """The per-loop hooks of one worker loop; installed and removed on its thread."""

    def __init__(self, loop: Any, state: WorkerLoop) -> None:
        self.loop = loop
        self.state = state
        self.retiring = False
        self.installed = False
        self._original_ready: collections.deque[Any] | None = None
        self._timed: TimedReady | None = None
        self._selector: Any = None
        self._had_select: Any = _MISSING
        self._select: Callable[..., Any] | None = None
        self._had_create: Any = _MISSING
        self._create: Callable[..., Any] | None = None

    def install(self) -> None:
        """Loop thread, as the loop starts running."""
        loop = self.loop
        selector = loop._selector
        inner = selector.select
        self._had_select = _own_attribute(selector, "select")
        hooks = self
        state = self.state
        original = loop._ready

        def select(timeout: float | None = None) -> Any:
            try:
                # Entering the wait for I/O: the last callback of the iteration is over.
                if state.cur is not None:
                    state.end()
                if state.t0 >= state.next_audit and state.tasks:
                    state.audit()  # between two iterations: count the pending tasks
                if original or hooks.retiring:
                    if hooks.retiring:  # the monitor stopped: undo it here, on the loop thread
                        hooks.remove()
                    if hooks.straggled():
                        timeout = 0  # a callback came in through the old queue: run it now
            except Exception:  # ours: never the app's loop's failure
                pass
            return inner(timeout)

        select.__wrapped__ = inner  # type: ignore[attr-defined]
        self._select = select
        self._selector = selector
        made = loop.create_task
        self._had_create = _own_attribute(loop, "create_task")

        def create_task(*args: Any, **kwargs: Any) -> Any:
            task = made(*args, **kwargs)
            try:
                state.track(task, sys._getframe(1))
            except Exception:  # ours (a task type without weak references): not theirs
                pass
            return task

        create_task.__wrapped__ = made  # type: ignore[attr-defined]
        self._create = create_task
        if type(loop).time is asyncio.base_events.BaseEventLoop.time:
            state.mono0 = monotonic()
        timed = TimedReady()
        timed.stamps = collections.deque()
        timed.w = self.state
        # Bound first, then filled: a thread appending meanwhile appends to one of
        # the two, and what went to the old one is moved (here or at select).
        self._original_ready = original
        self._timed = timed
        loop._ready = timed
        _move(original, timed)
        selector.select = select
        self.installed = True
        try:
            loop.create_task = create_task
        except (AttributeError, TypeError):  # no such attribute on this loop: no task audit
            self._create = None

    def straggled(self) -> bool:
        """Loop thread: move what another thread appended to the queue not in use."""
        original, timed = self._original_ready, self._timed
        if original is None or timed is None:
            return False
        source: collections.deque[Any] = original if self.installed else timed
        target: collections.deque[Any] = timed if self.installed else original
        if not source:
            return False
        _move(source, target)
        return True

    def remove(self) -> None:
        """Loop thread (outside ``_run_once``): end the callback in progress and put
        the loop's queue and its selector's ``select`` back exactly as they were."""
        if not self.installed:
            return
        self.state.end()
        self.installed = False
        loop, timed, original = self.loop, self._timed, self._original_ready
        if timed is not None and original is not None:
            if getattr(loop, "_ready", None) is timed:
                loop._ready = original
            _move(timed, original)
            timed.w = None
        selector = self._selector
        if selector is not None and _own_attribute(selector, "select") is self._select:
            if self._had_select is _MISSING:
                del selector.select
            else:
                selector.select = self._had_select
        self._had_select = _MISSING
        if self._create is not None and _own_attribute(loop, "create_task") is self._create:
            if self._had_create is _MISSING:
                del loop.create_task
            else:
                loop.create_task = self._had_create
        self._had_create = _MISSING
        self._create = None

    def retire(self) -> None:
        """Any thread: have the loop thread remove the hooks at its next wait for I/O,
        and wake it so that this is now (a loop stopped meanwhile removed them)."""
        if not self.installed:
            return
        self.retiring = True
        try:
            self.loop.call_soon_threadsafe(_nothing)
        except Exception:  # closed, or being closed: its stop removes them
            pass


def _move(source: collections.deque[Any], target: collections.deque[Any]) -> None:
    """Move every item of ``source`` to the end of ``target``, in order, one at a time
    (an item appended to ``source`` meanwhile is moved too, or stays for next time)."""
    while source:
        try:
            target.append(_popleft(source))
        except IndexError:
            break


def _nothing() -> None:
    """Posted to wake a worker loop so that it removes our hooks."""
