"""One asyncio loop running on a worker thread: its state and its per-loop hooks.

A worker loop (``asyncio.run`` inside a ``QRunnable``, a thread running its own
loop) is timed by hooks on **that loop object only** — never a class-wide patch,
so the main loop's hot path and every other loop are untouched:

* its ready queue ``loop._ready`` becomes a :class:`TimedReady` (a ``deque``
  subclass) whose ``popleft`` — called by ``BaseEventLoop._run_once`` right
  before each callback — reads the clock once: the start of this callback and
  the end of the one before;
* its selector's ``select`` is shadowed on the selector instance: entering the
  wait for I/O ends the last callback of an iteration.

So each callback costs the worker one clock read and a few stores, and each
loop iteration one more; a callback over the threshold calls
:meth:`WorkerLoop.over` (the rare path).  The watchdog thread reads ``cur`` and
``t0`` to see a callback running for longer than the threshold, while it lasts.

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
import collections
import selectors
import sys
from collections.abc import Callable
from time import perf_counter
from typing import Any

from looptools.inapp._describe import stall_names

_popleft = collections.deque.popleft

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
    ready = vars(loop).get("_ready")
    selector = vars(loop).get("_selector")
    return type(ready) is collections.deque and isinstance(selector, selectors.BaseSelector) \
        and hasattr(selector, "__dict__")


class WorkerLoop:
    """The state of one worker loop while it runs (loop thread writes, watchdog reads)."""

    __slots__ = ("cur", "finished", "hooks", "info", "stall", "started", "t0", "thr")

    def __init__(self, info: Info, threshold_s: float,
                 finished: collections.deque[Finished]) -> None:
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
    """A worker loop's ready queue: ``popleft`` dates the callback about to run."""

    __slots__ = ("w",)
    w: WorkerLoop | None

    def popleft(self) -> Any:
        handle = _popleft(self)
        w = self.w
        if w is not None:
            now = perf_counter()
            if now - w.t0 > w.thr and w.cur is not None:  # rare: the last one was long
                prev, w.cur = w.cur, None  # no more samples of it (see WorkerLoops.look)
                w.over(prev, w.t0, now)
            w.t0 = now  # before cur: a watchdog that sees the new cur sees its start
            w.cur = handle
        return handle


_NOTHING = object()


class Hooks:
    """The two per-loop hooks of one worker loop; installed and removed on its thread."""

    def __init__(self, loop: Any, state: WorkerLoop) -> None:
        self.loop = loop
        self.state = state
        self.retiring = False
        self.installed = False
        self._original_ready: collections.deque[Any] | None = None
        self._timed: TimedReady | None = None
        self._selector: Any = None
        self._had_select: Any = _NOTHING
        self._select: Callable[..., Any] | None = None

    def install(self) -> None:
        """Loop thread, as the loop starts running."""
        loop = self.loop
        selector = vars(loop)["_selector"]
        own = vars(selector)
        inner = selector.select
        self._had_select = own.get("select", _NOTHING)
        hooks = self
        state = self.state
        original = vars(loop)["_ready"]

        def select(timeout: float | None = None) -> Any:
            try:
                # Entering the wait for I/O: the last callback of the iteration is over.
                if state.cur is not None:
                    state.end()
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
        timed = TimedReady()
        timed.w = self.state
        # Bound first, then filled: a thread appending meanwhile appends to one of
        # the two, and what went to the old one is moved (here or at select).
        self._original_ready = original
        self._timed = timed
        loop._ready = timed
        _move(original, timed)
        own["select"] = select
        self.installed = True

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
            if vars(loop).get("_ready") is timed:
                loop._ready = original
            _move(timed, original)
            timed.w = None
        own = vars(self._selector) if self._selector is not None else {}
        if own.get("select") is self._select:
            if self._had_select is _NOTHING:
                own.pop("select", None)
            else:
                own["select"] = self._had_select
        self._had_select = _NOTHING

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
