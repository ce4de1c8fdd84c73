"""The cyclic garbage collector's runs on the loop thread, for the stalls they fall in.

A full collection of a large heap holds the loop thread for as long as a slow
callback: 185-290 ms was measured on this project's CI machine inside pytest-asyncio's
own test suite (a pytest process that had run a few hundred in-process sessions), with
an event loop running.  It runs in whichever frame allocated the object that tipped a
generation's threshold, so the stall's stacks all point at an innocent line (a
``Handle`` made by the loop itself: "(loop internals)"; an app line that built one
list).  Only the collector can say it ran: ``gc.callbacks`` calls every function on it
at the start and the end of each collection, on the collecting thread.

:class:`Collections` appends one such function while the monitor is attached and
removes it (only it: the app's own callbacks stay where they are) at detach.  It
keeps the collections that ran on the loop thread for at least :data:`FLOOR_S`, as
:class:`Run` rows in ``perf_counter`` time, ``where`` being the frame
that allocated (``(co_name, file, line)``, as a faulthandler dump names it: the dumps the
loop thread takes during the collection show that frame, see ``StallWatchdog._vote_dump``);
a collection on another thread costs one ``get_ident`` call.  A collection of an
older generation (1 or 2: a tenth and a hundredth of them) also reads the loop
thread's CPU time at both ends, so that a busy machine's share of it is known: a
collection is all CPU, and what it took longer than its CPU time was the run queue.

A collection the app asked for (``gc.collect()``, seen by the call its frame is at)
is not kept: that line is what held the loop, and the stall is the app's.
"""

from __future__ import annotations

import collections
import dis
import gc
import sys
import threading
import time
from typing import Any, NamedTuple

#: (co_name, file, line) of a frame
Where = tuple[str, str, "int | None"]

#: Shorter collections are not kept: young-generation runs of a fraction of a
#: millisecond are part of the allocating code's own cost.
FLOOR_S = 0.001
#: Collections kept (the newest): enough for any stall's span to look back on.
KEEP = 256


class Run(NamedTuple):
    """One collection on the loop thread."""

    began: float
    ended: float
    generation: int
    #: the frame that allocated the object that set it off (None: C code did)
    where: Where | None
    #: the loop thread's CPU seconds in it (None: not read, a young generation's)
    cpu: float | None


#: Opcodes that load the object a call is made on, by name.
_LOADS = frozenset({"LOAD_ATTR", "LOAD_METHOD", "LOAD_GLOBAL", "LOAD_NAME", "LOAD_FAST",
                    "LOAD_DEREF", "LOAD_CLASSDEREF"})
#: Opcodes that end a statement: a scan back for the callable stops there.
_ENDS = frozenset({"POP_TOP", "RETURN_VALUE", "STORE_FAST", "STORE_NAME", "STORE_GLOBAL",
                   "STORE_ATTR", "STORE_SUBSCR", "STORE_DEREF"})


class Collections:
    """Collections on one thread, kept while installed."""

    def __init__(self, thread_id: int, floor_s: float = FLOOR_S) -> None:
        self.thread_id = thread_id
        self.floor = floor_s
        self.runs: collections.deque[Run] = collections.deque(maxlen=KEEP)
        # The collection under way (from its start callback to its stop callback):
        # when it began (0.0: none), its generation, the frame that allocated.
        self._began = 0.0
        self._generation = 0
        self._frame: Any = None
        self._cpu = -1.0  # the thread's CPU time at the start (-1: not read)
        self.installed = False
        self.taken_off = False  # found gone from gc.callbacks at remove()
        # (code, offset) -> is the instruction there a call of ``collect``?
        self._calls: dict[tuple[Any, int], bool] = {}

    def install(self) -> None:
        if not self.installed:
            gc.callbacks.append(self._event)
            self.installed = True

    def remove(self) -> None:
        if self.installed:
            self.installed = False
            # By identity: a bound method equal to ours (none should be) stays.
            for i, callback in enumerate(gc.callbacks):
                if self._ours(callback):
                    del gc.callbacks[i]
                    break
            else:
                self.taken_off = True
            self._frame = None

    def lost(self) -> bool:
        """Installed, and no longer on ``gc.callbacks``: the app took it off (a
        ``gc.callbacks.clear()``).  It is not put back: the list is the app's."""
        return self.taken_off or (self.installed and not any(
            self._ours(callback) for callback in gc.callbacks))

    def _ours(self, callback: Any) -> bool:
        """Is ``callback`` this one's function?  (By identity: a bound method equal
        to ours, none should be, is not.)"""
        return getattr(callback, "__self__", None) is self \
            and getattr(callback, "__func__", None) is Collections._event

    def _event(self, phase: str, info: dict[str, Any]) -> None:
        if threading.get_ident() != self.thread_id:
            return
        now = time.perf_counter()
        if phase == "start":
            try:
                self._frame = sys._getframe(1)  # the frame that allocated, below this call
            except ValueError:  # none: set off from C with no Python frame under it
                self._frame = None
            generation = self._generation = info["generation"]
            self._cpu = time.thread_time() if generation else -1.0
            self._began = now  # last, and no call after it: see _under_way
            return
        # The watchdog thread, kept waiting for the GIL through the collection, may
        # take it as this function is entered, before what follows: _under_way.
        began, self._began = self._began, 0.0
        frame, self._frame = self._frame, None
        if began and now - began >= self.floor and not self._asked(frame):
            cpu = time.thread_time() - self._cpu if self._cpu >= 0.0 else None
            self.runs.append(Run(began, now, self._generation, _where(frame), cpu))

    def _under_way(self) -> Run | None:
        """The collection whose start callback has run and whose stop callback has
        not, seen from another thread: it ran to its end (it holds the GIL all along),
        and the stop callback has not got the GIL back yet.  Ends now."""
        began, frame = self._began, self._frame
        if not began or threading.get_ident() == self.thread_id or self._asked(frame):
            return None
        return Run(began, time.perf_counter(), self._generation, _where(frame), None)

    def _all(self) -> list[Run]:
        runs = list(self.runs)
        under_way = self._under_way()
        if under_way is not None:
            runs.append(under_way)
        return runs

    def within(self, start: float, end: float) -> Within:
        """The collector's runs on the thread between ``start`` and ``end``."""
        total = queued = 0.0
        oldest: int | None = None
        longest, where = 0.0, None
        for run in self._all():
            overlap = min(end, run.ended) - max(start, run.began)
            if overlap > 0.0:
                total += overlap
                wall = run.ended - run.began
                if run.cpu is not None and wall > 0.0:
                    queued += overlap * max(0.0, 1.0 - run.cpu / wall)
                oldest = run.generation if oldest is None else max(oldest, run.generation)
                if overlap > longest:
                    longest, where = overlap, run.where
        return Within(total, oldest, where, queued)

    def began_after(self, since: float) -> list[Run]:
        """The collections kept (and the one under way) that began after ``since``,
        oldest first."""
        return [run for run in self._all() if run.began > since]

    def _asked(self, frame: Any) -> bool:
        """Did ``frame`` call ``gc.collect()`` (or any ``collect`` by that name) itself?"""
        if frame is None:
            return False
        try:
            key = (frame.f_code, frame.f_lasti)
            known = self._calls.get(key)
            if known is None:
                if len(self._calls) > 1024:
                    self._calls.clear()
                known = self._calls[key] = _calls_collect(*key)
            return known
        except Exception:  # a frame torn down meanwhile, a code object dis cannot read
            return False


class Within(NamedTuple):
    """What the collector did in a span of time."""

    #: seconds it ran
    seconds: float
    #: the oldest generation it collected (None: it did not run)
    generation: int | None
    #: the frame that set off the longest collection
    where: Where | None
    #: of ``seconds``, about how long the loop thread waited for a CPU (from the
    #: older generations' CPU time; 0 where it was not read)
    queued: float


def _calls_collect(code: Any, offset: int) -> bool:
    """Is the instruction at ``offset`` of ``code`` a call whose callable was
    loaded by the name ``collect`` in the same statement?  (``gc.collect()``,
    ``collect(2)`` after ``from gc import collect``.)  A collection set off by
    an allocation stops at the allocating instruction: a ``CALL`` there is of a
    function that allocated."""
    instructions = list(dis.get_instructions(code))
    index = next((i for i, ins in enumerate(instructions) if ins.offset == offset), None)
    if index is None or not instructions[index].opname.startswith("CALL"):
        return False
    for before in reversed(instructions[max(0, index - 24):index]):
        if before.opname in _ENDS:
            return False
        if before.opname in _LOADS and before.argval == "collect":
            return True
    return False


def _where(frame: Any) -> Where | None:
    if frame is None:
        return None
    return (frame.f_code.co_name, frame.f_code.co_filename, frame.f_lineno)
