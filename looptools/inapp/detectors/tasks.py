"""Pending-task audits: counts over time, long-pending tasks, leaks, lost exceptions.

* Creation is recorded by wrapping the loop's ``create_task`` (an instance
  attribute, removed on detach): the creation time and one application frame,
  not a traceback.
* Every ``task_audit_s`` the loop thread counts ``asyncio.all_tasks(loop)`` and
  notes tasks pending longer than ``long_pending_s``.
* When the loop stops, the tasks still pending are remembered; those that never
  finished normally afterwards are the tasks pending at exit (``asyncio.run``
  cancels them; they were leaked by the app), but for those the app then ran the
  loop until they were done itself (``run_until_complete(task)`` after a stop: how
  aiohttp's ``run_app`` cancels its main task and waits for it, which is the app
  ending it, not a leak), and the task a ``run_until_complete`` on the stack at
  the stop runs the loop for (``asyncio.run``'s or ``qasync.run``'s main task:
  that call hands the app its outcome).  Their outcome is read while they
  are still alive (at the next stop, at the report) or from the exception handler
  ("destroyed but pending", "never retrieved"), never through a done callback: a
  callback added at a stop is scheduled when the task ends and, with the loop
  stopped, its handle would keep the task alive (qasync's own suite saw its
  exception handler go uncalled).
* A live count kept exact between audits (so short bursts still show in the
  peak) by a done callback added at creation, O(1) per task.  The same effect
  is undone where it would show: a task that ends in the iteration the loop
  stops in would wait in the stopped loop's queue for our callback; when the
  loop is left (``loop_left``) the callbacks of ours still queued on asyncio's
  loops and qasync's (the plugin's ``queued_handles()``) are run and cancelled,
  which frees the task as it would be without us.  Not on uvloop and QtAsyncio,
  whose queues cannot be read (QtAsyncio keeps such a task alive itself).
  Counting the alive tasks instead at each possible new peak cost O(n) per
  creation: a burst of n tasks took O(n²).
* "Task exception was never retrieved" is caught by chaining the loop's
  exception handler.
* Where a task is suspended comes from its coroutine's ``cr_await`` chain, so it
  works on QtAsyncio, whose ``Task.get_stack()`` raises ``NotImplementedError``.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from collections.abc import Callable
from time import perf_counter
from typing import Any

from looptools._frames import Frame, as_dict, caller_site
from looptools.inapp._describe import awaiting_frame, coro_name, coro_of, task_name
from looptools.inapp._patch import dress_as, shadow
from looptools.inapp._stats import Series
from looptools.inapp.hub import Detector
from looptools.settings import Settings

#: this file, as its code objects name it (a frame of ours on a task's creation stack)
_HERE = (lambda: None).__code__.co_filename


def _run_futures(frame: Any) -> list[Any]:
    """The futures the ``run_until_complete`` calls on this stack run the loop for.

    asyncio's, qasync's and QtAsyncio's keep it in their local ``future``; a loop
    whose method has no Python frame (uvloop) has none to find.
    """
    found = []
    while frame is not None:
        if frame.f_code.co_name == "run_until_complete":
            future = frame.f_locals.get("future")
            if future is not None:
                found.append(future)
        frame = frame.f_back
    return found


def _finished_normally(task: Any) -> bool:
    try:
        return not task.cancelled() and task.exception() is None
    except Exception:
        return False


#: points of ``tasks.pending_over_time`` at most (one per audit for the first 20 minutes)
TASK_POINTS = 1200


class TaskAudit(Detector):
    name = "tasks"

    def __init__(self, settings: Settings) -> None:
        self.long_after = settings.long_pending_s
        self.limit = settings.max_tasks
        self.loop: Any = None
        #: task -> (created at, perf_counter; where; serial number, its id in the report)
        self.created: weakref.WeakKeyDictionary[Any, tuple[float, Frame | None, int]] = (
            weakref.WeakKeyDictionary()
        )
        self.created_count = 0
        self.live = 0
        self.peak = 0
        self._finished: Callable[[Any], None] | None = None
        self._plugin: Any = None
        self.pending_now = 0
        #: the pending count over the whole run: the largest of each window, at most
        #: TASK_POINTS points (windows merge as the run grows: memory stays flat)
        self.samples = Series(TASK_POINTS, max(settings.task_audit_s, 0.01) / 2.0)
        self.long_pending: dict[int, dict[str, Any]] = {}
        self.at_stop: list[tuple[weakref.ref[Any], dict[str, Any]]] = []
        self.unretrieved: list[dict[str, Any]] = []
        #: id(entry) of ``at_stop`` -> whether its task finished normally, read while it lived
        self._outcomes: dict[int, bool] = {}
        #: id(entry) of ``at_stop`` whose task the app ran the loop until it was done
        self._awaited: set[int] = set()
        self._undo: list[Callable[[], None]] = []
        self._recording = False

    # -- install / uninstall (loop thread) ----------------------------------
    def attach(self, state: Any, plugin: Any) -> None:
        loop = state.loop
        if loop is None:
            return
        self.loop = loop
        self._plugin = plugin
        self._recording = True
        created = self.created

        def finished(task: Any) -> None:
            self.live -= 1

        self._finished = finished

        # The loop's own shutdown coroutines (asyncio.run and qasync.run end by running
        # them as tasks): not the app's tasks, so not counted (an app that made one
        # task read "created: 3").
        own = {code for name in ("shutdown_asyncgens", "shutdown_default_executor")
               if (code := getattr(getattr(type(loop), name, None), "__code__", None))
               is not None}

        def wrap_create(original: Callable[..., Any]) -> Callable[..., Any]:
            def create_task(coro: Any, *args: Any, **kwargs: Any) -> Any:
                task = original(coro, *args, **kwargs)
                source = getattr(task, "_source_traceback", None)
                if source and source[-1].filename == _HERE:
                    # Debug mode (-X dev): the loop took its own frame off the task's
                    # creation stack; ours is under it.  Off too, so that asyncio's
                    # "created at" names the app's line, as without us.
                    del source[-1]
                if not self._recording or getattr(coro, "cr_code", None) in own:
                    return task
                try:
                    serial = self.created_count + 1
                    site = caller_site(sys._getframe(1), library=True)
                    created[task] = (perf_counter(), site, serial)
                    self.created_count = serial
                    task.add_done_callback(finished)
                    self.live += 1
                    if self.live > self.peak:
                        self.peak = self.live
                except TypeError:  # a task type without weakref support
                    pass
                return task

            return create_task

        def wrap_handler(original: Callable[..., Any]) -> Callable[..., Any]:
            # The loop's own call_exception_handler is shadowed, not its handler:
            # whatever handler the app set (or sets later) stays the app's, and
            # every loop kind reads it back as it would without us (qasync keeps
            # it in a private attribute that get_exception_handler() does not see).
            def call_exception_handler(context: dict[str, Any]) -> Any:
                if self._recording:
                    try:
                        self._record_exception(context)
                    except Exception as exc:
                        if self.hub is not None:
                            self.hub.disable(self, exc, "exception handler")
                return original(context)

            return call_exception_handler

        def wrap_run(original: Callable[..., Any]) -> Callable[..., Any]:
            def run_until_complete(future: Any, *args: Any, **kwargs: Any) -> Any:
                if self.at_stop:
                    # A task pending at a stop that the app now runs the loop for
                    # itself (aiohttp's run_app: cancel the main task, then run until
                    # it is done) is the app's to end, however it ends: not leaked.
                    for ref, entry in self.at_stop:
                        if ref() is future:
                            self._awaited.add(id(entry))
                return original(future, *args, **kwargs)

            return dress_as(run_until_complete, original)

        for name, wrap in (("create_task", wrap_create),
                           ("call_exception_handler", wrap_handler),
                           ("run_until_complete", wrap_run)):
            undo = shadow(loop, name, wrap)
            if undo is not None:
                self._undo.append(undo)
            elif name == "call_exception_handler":
                self._chain_handler(loop)  # e.g. uvloop: no instance attributes

    def _chain_handler(self, loop: Any) -> None:
        """Chain to the loop's exception handler where its method cannot be shadowed."""
        try:
            previous = loop.get_exception_handler()
        except (AttributeError, NotImplementedError):
            return

        def handler(*args: Any) -> None:
            # asyncio calls handler(loop, context); QtAsyncio calls handler(context).
            context: dict[str, Any] = args[-1]
            if self._recording:
                try:
                    self._record_exception(context)
                except Exception as exc:
                    if self.hub is not None:
                        self.hub.disable(self, exc, "exception handler")
            if previous is not None:
                previous(*args)
            else:
                loop.default_exception_handler(context)

        try:
            loop.set_exception_handler(handler)
        except (AttributeError, NotImplementedError):
            return

        def undo() -> None:
            if loop.get_exception_handler() is handler:
                loop.set_exception_handler(previous)

        self._undo.append(undo)

    def detach(self) -> None:
        self._recording = False
        undo, self._undo = self._undo, []
        for step in reversed(undo):
            try:
                step()
            except Exception:
                pass

    def _record_exception(self, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        future = context.get("future")
        exc = context.get("exception")
        if self.at_stop:
            # A task pending at a stop that dies unfinished ("destroyed but it is
            # pending") or with an exception nobody read did not end normally.
            gone = context.get("task", future)
            for ref, stopped in self.at_stop:
                if gone is not None and ref() is gone:
                    self._outcomes[id(stopped)] = False
                    break
        if "never retrieved" not in message or len(self.unretrieved) >= self.limit:
            return
        entry: dict[str, Any] = {
            "task": task_name(future) if future is not None else None,
            "coro": coro_name(coro_of(future)) if future is not None else None,
            "exception": f"{type(exc).__name__}: {exc}" if exc else "<none>",
            "message": message,
            "created_at": as_dict(self._created_site(future)),
        }
        self.unretrieved.append(entry)
        if self.hub is not None:
            self.hub.emit("unretrieved_exception", **entry)

    def _created_site(self, task: Any) -> Frame | None:
        try:
            meta = self.created.get(task)
        except TypeError:
            return None
        return meta[1] if meta else None

    def loop_left(self, now: float) -> None:
        """The loop's ``run_forever`` returned: run and cancel our done callbacks it
        left queued, so that a task that ended in its last iteration is freed now,
        as it would be without us (see the module's docstring)."""
        finished, plugin = self._finished, self._plugin
        if finished is None or self.loop is None or plugin is None:
            return
        ours = [handle for handle in plugin.queued_handles() or ()
                if getattr(handle, "_callback", None) is finished and not handle._cancelled]
        for handle in ours:
            finished(*handle._args)
            handle.cancel()

    # -- audits (loop thread) --------------------------------------------------
    def _pending(self) -> list[Any]:
        if self.loop is None:  # asyncio.all_tasks(None) would read whatever loop runs now
            return []
        try:
            return [task for task in asyncio.all_tasks(self.loop) if not task.done()]
        except RuntimeError:
            return []

    def describe(self, task: Any, now: float) -> dict[str, Any]:
        try:
            meta = self.created.get(task)
        except TypeError:
            meta = None
        coro = coro_of(task)
        origin = self.hub.started if self.hub is not None else 0.0
        return {
            "name": task_name(task),
            "coro": coro_name(coro),
            # Two tasks can share a name: the serial number tells them apart.
            "id": meta[2] if meta else None,
            "started_at_s": round(meta[0] - origin, 6) if meta else None,
            "age_s": round(now - meta[0], 3) if meta else None,
            "created_at": as_dict(meta[1]) if meta else None,
            "awaiting": as_dict(awaiting_frame(coro)),
            "state": "pending" if not task.done() else "done",
        }

    def tick(self, now: float) -> None:
        if self.loop is None:
            return
        pending = self._pending()
        self.pending_now = self.live = len(pending)
        self.peak = max(self.peak, self.pending_now)
        origin = self.hub.started if self.hub is not None else 0.0
        self.samples.add(now - origin, float(self.pending_now))
        for task in pending:
            try:
                meta = self.created.get(task)
            except TypeError:
                continue
            if meta is None or now - meta[0] < self.long_after:
                continue
            key = id(task)
            if key in self.long_pending or len(self.long_pending) < self.limit:
                self.long_pending[key] = self.describe(task, now)

    def loop_started(self, now: float) -> None:
        self.tick(now)

    def loop_stopped(self, now: float) -> None:
        # The last stop's tasks ran again since (asyncio.run's cancelling pass is
        # such a run): read how they ended while they are still alive.
        self._read_outcomes()
        pending = self._pending()
        self.peak = max(self.peak, len(pending))
        if pending:
            self.at_stop = [(weakref.ref(task), self.describe(task, now))
                            for task in pending[: self.limit]]
            self._outcomes = {}
            # The task a run_until_complete on the stack runs the loop for (asyncio.run's
            # and qasync.run's main task) is the app's: how it ends, it is given to the
            # app by that call.  qasync's README quits that way: aboutToQuit cancels the
            # future main awaits, the loop stops with main pending, and its last
            # processEvents ends it cancelled (a fresh-eyes trial found it reported as
            # pending at exit on every run).
            running = {id(future) for future in _run_futures(sys._getframe(1))}
            self._awaited = {id(entry) for ref, entry in self.at_stop if id(ref()) in running}

    def _read_outcomes(self) -> None:
        for ref, entry in self.at_stop:
            task = ref()
            if task is not None and task.done() and id(entry) not in self._outcomes:
                self._outcomes[id(entry)] = _finished_normally(task)

    # -- reporting ---------------------------------------------------------------
    def pending_at_exit(self) -> list[dict[str, Any]]:
        """The tasks pending at the last stop that did not finish normally after it.

        A task freed unseen since that stop ended while the loop ran (a task that
        died unfinished or raised unread was noted by the exception handler).
        """
        self._read_outcomes()
        out = []
        for ref, entry in self.at_stop:
            if id(entry) in self._awaited:
                continue
            outcome = self._outcomes.get(id(entry))
            if outcome is None:  # alive and pending, or freed unseen (then it ended)
                outcome = ref() is None
            if not outcome:
                out.append(entry)
        # In the order they were made (all_tasks is a set): the report's and the summary's.
        out.sort(key=lambda entry: (entry["id"] is None, entry["id"] or 0))
        return out

    def contribute(self, report: dict[str, Any]) -> None:
        report["tasks"] = {
            "peak_pending": self.peak,
            "pending_now": self.pending_now,
            "created": self.created_count,
            "long_pending_after_s": self.long_after,
            "pending_over_time": self.samples.snapshot(),
            "long_pending": list(self.long_pending.values()),
            "pending_at_exit": self.pending_at_exit(),
            "unretrieved_exceptions": list(self.unretrieved),
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "tasks": {
                "pending_now": self.pending_now,
                "peak_pending": self.peak,
                "long_pending": len(self.long_pending),
                "unretrieved_exceptions": len(self.unretrieved),
            }
        }
