"""Cross-thread hand-offs: how long work posted to the loop from another thread waited.

A worker thread hands work to the loop with ``loop.call_soon_threadsafe(cb, ...)``
(and ``asyncio.run_coroutine_threadsafe``, which calls it).  While the loop is
blocked, that work waits: the audio thread's chunks pile up behind a 300 ms parse.
This detector shadows the attached loop's ``call_soon_threadsafe`` (an instance
attribute, see ``looptools.inapp._patch``; the class is left alone and the app's own
override is chained to) and wraps each callback posted *from another thread*:

* at posting, on the worker thread: the time, the worker's thread name and its
  call site (the first application frame above the call: the line of the worker
  that called ``run_coroutine_threadsafe``, not asyncio's);
* when it starts, on the loop thread: the wait, added to that site's record
  (count, p50, p99, max; the last 1024 waits per site for the percentiles).

Calls made on the loop thread itself are not hand-offs and pass straight through;
so does everything after detach.  The cost is paid per hand-off only (a frame walk
on the worker thread and two clock reads), never per loop callback.  asyncio's own
posts are not hand-offs either; the commonest, a standard executor's result
(``run_in_executor``, ``to_thread``; a ``ThreadPoolExecutor``'s or qasync's
``QThreadExecutor``'s), is recognised three callers up and passes through without
the walk or the thread's name.

On a Qt loop (qasync, QtAsyncio, or a Qt main thread without asyncio) the
same is done for ``QTimer.singleShot`` called from another thread with a Python
callable, in the forms where each binding runs it on the GUI thread
(``looptools.inapp.detectors._qt_handoffs``); the wait is counted from when the timer
was due (the post plus the requested delay); and for a queued
``QMetaObject.invokeMethod`` from another thread to a GUI-thread object, by a marker
event posted right before the app's (Qt delivers a thread's posted events in order).
Queued signals are not measured: nothing tells, at emission, which connections post
to the GUI thread (that module says why).

The longest wait of each site is linked to the stall that held the loop then
(its culprit), when one did: "waited up to 310 ms while ``build_index`` held the
loop".
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from looptools._frames import Frame, as_dict, frame_tuple, is_app_file
from looptools.inapp._patch import dress_as, shadow
from looptools.inapp._threadnames import current_thread_name
from looptools.inapp.hub import Detector
from looptools.settings import Settings

#: Waits kept per site for the percentiles.
KEEP = 1024
#: Sites kept (a worker posting from many lines is summarised by its first ones).
MAX_SITES = 64
#: Sites in a live snapshot (those with the longest waits).
SNAPSHOT_ROWS = 5


class _Site:
    __slots__ = ("count", "max_at", "max_s", "thread", "via", "waits", "where")

    def __init__(self, via: str, where: Frame | None, thread: str) -> None:
        self.via = via
        self.where = where
        self.thread = thread
        self.count = 0
        self.max_s = 0.0
        self.max_at = 0.0  # when the longest wait ended (the callback started)
        self.waits: deque[float] = deque(maxlen=KEEP)


#: ``(asyncio's _call_set_state code, {the executors' worker files})``, found at attach
#: from the modules the app imported (see :func:`_executor_result`).
_EXECUTOR_RESULT: list[Any] = []


def _find_executor_result() -> None:
    """Fill ``_EXECUTOR_RESULT`` from the modules imported now (a loop is attached:
    asyncio is; qasync when its loop is the one, or when the app imported it)."""
    chain = getattr(sys.modules.get("asyncio.futures"), "_chain_future", None)
    codes = getattr(getattr(chain, "__code__", None), "co_consts", ())
    set_state = next((c for c in codes if getattr(c, "co_name", None) == "_call_set_state"),
                     None)
    workers = set()
    package = getattr(sys.modules.get("concurrent.futures"), "__file__", None)
    if package:  # ThreadPoolExecutor's _WorkItem.run
        workers.add(os.path.join(os.path.dirname(package), "thread.py"))
    qasync = getattr(sys.modules.get("qasync"), "__file__", None)
    if qasync:  # qasync's QThreadExecutor (its default executor): _QThreadWorker.run
        workers.add(qasync)
    if set_state is not None and workers:
        _EXECUTOR_RESULT[:] = [set_state, frozenset(workers)]


def _executor_result(frame: Any) -> bool:
    """True when ``frame`` (the poster) is asyncio handing the loop a result that a
    standard ``ThreadPoolExecutor`` worker, or qasync's ``QThreadExecutor`` worker,
    computed (``run_in_executor``, ``to_thread``): ``_call_set_state`` <-
    ``_invoke_callbacks`` <- ``set_result`` <- the worker's ``run``, with only the
    worker's own loop and ``threading`` (or Qt) above: no application frame to find,
    so the walk is cut short (three callers, not eight)."""
    known = _EXECUTOR_RESULT
    if not known or frame.f_code is not known[0]:
        return False
    completer = frame.f_back
    for _ in range(2):
        if completer is None:
            return False
        completer = completer.f_back
    if completer is None:
        return False
    code = completer.f_code
    return code.co_name == "run" and code.co_filename in known[1]


def _posted_from(frame: Any) -> tuple[str, Frame | None]:
    """How and where the work was posted: ``run_coroutine_threadsafe`` when asyncio's
    helper is the caller, and the first application frame above (None: no app frame
    within a few callers, e.g. an executor thread completing a future)."""
    via = "call_soon_threadsafe"
    code = frame.f_code
    if code.co_name == "run_coroutine_threadsafe" and "asyncio" in code.co_filename:
        via = "run_coroutine_threadsafe"
    elif _executor_result(frame):
        return via, None
    depth = 8
    while frame is not None and depth > 0:
        if is_app_file(frame.f_code.co_filename):
            return via, frame_tuple(frame)
        frame = frame.f_back
        depth -= 1
    return via, None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


class HandOffs(Detector):
    name = "handoffs"

    def __init__(self, settings: Settings) -> None:
        self.sites: dict[tuple[str, Frame | None, str], _Site] = {}
        self.dropped = 0
        self._undo: Callable[[], None] | None = None
        self._stalls: deque[tuple[float, float, Any]] = deque(maxlen=256)
        self.unsupported: str | None = None
        self._qt: Any = None  # Qt's hand-offs (_qt_handoffs.QtHandOffs)

    # -- attach / detach ---------------------------------------------------------------
    def attach(self, state: Any, plugin: Any) -> None:
        if getattr(plugin, "is_qt", False):
            self._attach_qt(state, plugin)
        loop = state.loop
        if loop is None or not hasattr(loop, "call_soon_threadsafe"):
            return
        _find_executor_result()
        record = self._record
        loop_thread = state.thread_id
        get_ident = threading.get_ident
        clock = time.perf_counter
        detector = self

        def wrap(original: Callable[..., Any]) -> Callable[..., Any]:
            def call_soon_threadsafe(callback: Callable[..., Any], *args: Any,
                                     **kwargs: Any) -> Any:
                if get_ident() == loop_thread or detector._undo is None:
                    return original(callback, *args, **kwargs)
                try:
                    posted = clock()
                    via, site = _posted_from(sys._getframe(1))
                    # No thread name for asyncio's own posts, which are not recorded:
                    # every run_in_executor/to_thread result comes this way.
                    thread = current_thread_name() if site is not None else ""
                except Exception:  # our failure never becomes the worker's
                    return original(callback, *args, **kwargs)
                if site is None:  # asyncio's own (an executor's result, shutdown)
                    return original(callback, *args, **kwargs)

                def handed_off(*inner: Any) -> Any:
                    try:
                        record(via, site, thread, posted, clock())
                    except Exception:
                        pass
                    return callback(*inner)

                return original(dress_as(handed_off, callback), *args, **kwargs)

            return call_soon_threadsafe

        self._undo = shadow(loop, "call_soon_threadsafe", wrap)
        if self._undo is None:
            self.unsupported = f"{type(loop).__name__} takes no instance attributes"

    def _attach_qt(self, state: Any, plugin: Any) -> None:
        # The binding the app's loop runs on (plugins/_qtbinding): never another one.
        from looptools.inapp.detectors._qt_handoffs import QtHandOffs

        binding = getattr(plugin, "binding", None)
        if binding is None or not QtHandOffs.supports(binding):
            return
        qt = QtHandOffs(binding, state.thread_id, self._record)
        if qt.install():
            self._qt = qt

    def heartbeat(self, now: float, lag: float) -> None:
        qt = self._qt
        if qt is not None:
            qt.poll(now)

    def detach(self) -> None:
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()
        qt, self._qt = self._qt, None
        if qt is not None:
            qt.undo()

    # -- recording (loop thread) ------------------------------------------------------
    def _record(self, via: str, where: Frame | None, thread: str, posted: float,
                started: float) -> None:
        # ``posted``: when the work was due (a timer's requested delay is not waiting);
        # a coarse Qt timer may fire a little early.
        waited = max(0.0, started - posted)
        key = (via, where, thread)
        site = self.sites.get(key)
        if site is None:
            if len(self.sites) >= MAX_SITES:
                self.dropped += 1
                return
            site = self.sites[key] = _Site(via, where, thread)
        site.count += 1
        site.waits.append(waited)
        if waited > site.max_s:
            site.max_s = waited
            site.max_at = started

    def stall_ended(self, stall: Any) -> None:
        ended = stall.ended if stall.ended is not None else time.perf_counter()
        self._stalls.append((stall.started, ended, stall.culprit))

    # -- output -----------------------------------------------------------------------
    def _during(self, site: _Site) -> dict[str, Any] | None:
        """The culprit of the stall that held the loop through most of the longest wait."""
        start, end = site.max_at - site.max_s, site.max_at
        best, best_overlap = None, 0.0
        for stalled, ended, culprit in list(self._stalls):
            overlap = min(end, ended) - max(start, stalled)
            if overlap > best_overlap:
                best, best_overlap = culprit, overlap
        if best is None or best_overlap < 0.5 * site.max_s:
            return None
        return as_dict(best)

    def rows(self, sites: list[_Site] | None = None) -> list[dict[str, Any]]:
        """One row per posting site (of ``sites``, default all), longest wait first."""
        rows: list[dict[str, Any]] = []
        for site in list(self.sites.values()) if sites is None else sites:
            waits = [w * 1000.0 for w in list(site.waits)]
            rows.append({
                "via": site.via,
                "thread": site.thread,
                "site": as_dict(site.where),
                "count": site.count,
                "p50_ms": round(_percentile(waits, 0.5), 3),
                "p99_ms": round(_percentile(waits, 0.99), 3),
                "max_ms": round(site.max_s * 1000.0, 3),
                "worst_during_stall_in": self._during(site),
            })
        rows.sort(key=lambda row: float(row["max_ms"]), reverse=True)
        return rows

    def contribute(self, report: dict[str, Any]) -> None:
        # None: this loop's call_soon_threadsafe could not be wrapped (uvloop's Cython loop).
        report["handoffs"] = None if self.unsupported else self.rows()

    def snapshot(self) -> dict[str, Any]:
        # The live dashboard's: percentiles of the SNAPSHOT_ROWS sites with the longest
        # waits only (sorting 64 sites' 1,024 waits every 0.25 s would not be cheap).
        sites = list(self.sites.values())
        if not sites:
            return {}
        slowest = sorted(sites, key=lambda site: site.max_s, reverse=True)[:SNAPSHOT_ROWS]
        return {"handoffs": self.rows(slowest), "handoff_sites": len(sites)}
