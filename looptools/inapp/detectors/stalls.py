"""The stall watchdog: sees, while it happens, that the loop thread has not come back.

A daemon thread looks every few milliseconds.  The loop thread leaves evidence
of being alive in :class:`~looptools.inapp.state.LoopState`: the run counter and the
running handle (the lean hot path), exact callback times (the precise one),
the heartbeat.  The watchdog dates what it sees (a run first seen at a look
began at most one look earlier) and *arms* each run it sees in progress, so
that the loop thread reads the clock once when that run ends.  When the
evidence is older than the threshold the loop is stalled, whatever holds it —
an asyncio callback, a Qt slot, timer or paint event, or a C call.  The loop
thread's stack is sampled *during* the stall with ``sys._current_frames()``, at
every look while it lasts; the culprit is the application function most
samples were in.

A C call that holds the GIL starves this thread too, so it cannot sample; it
notices afterwards by waking up late.  For those, ``faulthandler``'s C watchdog
(which needs no GIL), re-armed by this thread while it is healthy, has already
dumped the stacks to a private file during the stall.

**Ticks.**  A thread that wakes every few ms is costly in a busy loop that
releases the GIL often (every ``select``): CPython 3.11 hands the GIL to no one
in particular, so the woken thread waits for it, often for tens of ms, and
every release by the loop thread meanwhile signals it (measured: a 5 ms ticker
thread slowed an ``asyncio.Queue`` workload by 15-20 %).  So when the loop runs
on the main thread, a timer signal comes every look period (on Linux a POSIX
timer sends a free real-time signal to the loop thread alone; elsewhere
``setitimer``'s ``SIGALRM``, if the app does not use it) and its handler — on
the loop thread, between two bytecodes — does the looking that dates runs (and
sends asyncio's probes).  The thread then wakes only when the last sign of life would turn into
a stall (about once per threshold), and when it is due, the next tick hands it
the GIL (waits, with the GIL released, until it has looked).  When no Python
runs on the loop thread the ticks stop (a C call, Qt idle); the thread then
looks every few ms itself, as before, and it is cheap because the GIL is free.
"""

from __future__ import annotations

import _thread
import contextlib
import ctypes
import dataclasses
import faulthandler
import gc
import itertools
import linecache
import opcode
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import IO, Any

from looptools._frames import (
    Frame,
    as_dict,
    culprit_of,
    is_app_file,
    is_ours,
    parse_faulthandler_all,
    stack_of,
    without_ours,
)
from looptools.inapp import _fdtable, _posix_timer, _shield, _sigdump, _sigtaken, _wakeup
from looptools.inapp._collections import Collections
from looptools.inapp._describe import stall_names
from looptools.inapp._fdtable import private_fd_table, stderr_fds
from looptools.inapp._ourthreads import block_process_signals
from looptools.inapp._threadtimes import (
    ThreadTimes,
    open_times,
    pread_holding_gil,
    reads_holding_gil,
)
from looptools.inapp.hub import Detector
from looptools.plugins.asyncio_loop import BETWEEN_RUNS, running_handle
from looptools.settings import Settings

#: How long a tick waits, with the GIL released, for the watchdog thread to look.
HANDOFF_S = 0.002
#: ``no_ticks`` while the app has a signal wakeup descriptor (looptools.inapp._wakeup).
_APP_WAKEUP_FD = ("a signal wakeup fd is set (signal.set_wakeup_fd, by the app or a "
                  "library): each tick would write to it")

def _own_self_pipe(loop: Any) -> set[int]:
    """The descriptors of ``loop``'s own self-pipe, to which a signal's byte written
    as the signal wakeup descriptor is dropped if the loop has no handler for it.

    asyncio's selector loops (and qasync's): ``_csock``, set as the wakeup descriptor
    by ``add_signal_handler``.  uvloop sets its own as it starts to run on the main
    thread, always, and reads and drops such bytes (``Loop._handle_signal``); its
    sockets are Cython attributes, but the loop's garbage-collector referents name
    them.  Any other loop: none known (a byte may be read as the app's).
    """
    if loop is None:
        return set()
    own = getattr(loop, "_csock", None)
    if own is not None:
        return {own.fileno()}
    if type(loop).__module__.partition(".")[0] == "uvloop":
        return {o.fileno() for o in gc.get_referents(loop) if isinstance(o, socket.socket)}
    return set()


#: What the watchdog reads of both threads at each look (StallWatchdog._times_before):
#: its own CPU and run-queue seconds, the loop thread's, and its own time slices.
_Times = tuple[float, float, float, float, float]


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
    #: how long the GIL was held against the watchdog in it: what the looks it kept
    #: waiting waited (wall time: the CPU the loop thread burned meanwhile, which
    #: _gil_held says, is less on a busy machine)
    gil_s: float = 0.0
    #: how long the cyclic garbage collector ran on the loop thread in it, and the
    #: oldest generation it collected (None: it did not run); set as it ends
    gc_s: float = 0.0
    gc_generation: int | None = None
    #: the collector's stall: no culprit line (see _finish)
    collected: bool = False
    source: str = "loop"
    stack_source: str = "none"
    samples: int = 0  # stacks sampled during the stall
    culprit_samples: int = 0  # of those, in the culprit's function
    idle_samples: int = 0  # of those, at the loop's own wait (no Python below it)
    idle_frame: tuple[str, str] | None = None  # (function, file) of that wait
    #: when the last look's sample was taken, and the function it was in (_weights)
    last_look: tuple[float, tuple[str, str] | None] = (0.0, None)
    _votes: dict[Frame, int] = dataclasses.field(default_factory=dict, repr=False)
    _stacks: dict[Frame, tuple[list[Frame], str]] = dataclasses.field(default_factory=dict,
                                                                       repr=False)

    def vote(self, stack: list[Frame], source: str = "sampled", weight: int = 1) -> None:
        """Count one stack taken during the stall (``weight`` looks' worth of it).

        The culprit is the application function most samples were in (a stall
        that calls a hot function in a loop is that function's, even when one
        sample lands in the loop around it), at its most-sampled line; the
        stack kept is the first one taken there, and ``stack_source`` says how
        that one was taken.  Ties go to the earliest.  A dump taken while a C
        call held the GIL stands for every look the watchdog could not make.
        """
        self.samples += weight
        stack = _without_tick(stack)
        waiting = (self.idle_frame is not None and _at_wait(stack, self.idle_frame)) \
            or _in_qt_loop_call(stack)
        culprit = None if waiting else culprit_of(stack)
        if waiting or (culprit is not None and _started_the_loop(stack, culprit)):
            # The loop thread was not in a callback: at its idle wait (no Python ran:
            # Qt's own C++ — a paint, a layout, a native dialog — or the machine), or
            # between callbacks (a stack taken just after a GIL-holding call, under
            # load, can land there).  The app's frame below is the line that started
            # the loop (``qasync.run(main())``, ``app.exec()``, ``asyncio.run(main())``),
            # not what held it: no vote.  The stack is kept when nothing better is found.
            if waiting:
                self.idle_samples += weight
            if not self._votes and not self.stack:
                self.stack, self.stack_source = stack, source
            return
        if culprit is None:
            return
        votes = self._votes
        if culprit in votes:
            votes[culprit] += weight
        elif len(votes) < _MAX_VOTES:
            votes[culprit] = weight
            self._stacks[culprit] = (stack, source)
        else:
            return
        per_function: dict[tuple[str, str], int] = {}
        for (name, file, _line), n in votes.items():
            per_function[name, file] = per_function.get((name, file), 0) + n
        top = max(per_function, key=per_function.__getitem__)
        best = max((f for f in votes if (f[0], f[1]) == top), key=votes.__getitem__)
        self.culprit = best
        self.stack, self.stack_source = self._stacks[best]
        self.culprit_samples = per_function[top]

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
            "stack": [as_dict(frame) for frame in without_ours(self.stack)],
            "callback": self.callback,
            "task": self.task,
            "gil_held": self.gil_held,
            "gc_ms": round(self.gc_s * 1000.0, 3),
            "gc_generation": self.gc_generation,
            "collected": self.collected,
            "source": self.source,
            "stack_source": self.stack_source,
            "samples": self.samples,
            "culprit_samples": self.culprit_samples,
        }


def _sample(thread_id: int | None) -> list[Frame]:
    """The loop thread's stack now, without our tick handler on top of it (when
    a tick handed us the GIL, the loop thread is waiting in it)."""
    stack = stack_of(sys._current_frames().get(thread_id)) if thread_id is not None else []
    return _without_tick(stack)


def _without_tick(stack: list[Frame]) -> list[Frame]:
    """``stack`` cut below our tick handler, if it is on it.  Any stack can hold it:
    a sample taken while a tick handed the GIL over, a dump the loop thread made
    while in a tick (a busy machine once kept ``StallWatchdog._tick`` as the top of a
    stall's stack)."""
    here = _sample.__code__.co_filename
    for i in range(len(stack) - 1, -1, -1):
        name, file = stack[i][0], stack[i][1]
        if file == here and (name == "_tick" or name.endswith("._tick")):
            return stack[:i]
    return stack


_LOOP_RUNS = frozenset({"run_forever", "_run_once"})


def _started_the_loop(stack: list[Frame], culprit: Frame) -> bool:
    """``culprit`` (an app frame of ``stack``, outermost first) has the event loop's
    own run frames inside it and none outside: it is the line that started the loop
    and the loop was between callbacks.  (A callback that runs a loop of its own has
    the running loop's frames outside it too: it stays the culprit.)"""
    try:
        at = stack.index(culprit)
    except ValueError:
        return False

    def runs(frame: Frame) -> bool:
        return frame[0].rsplit(".", 1)[-1] in _LOOP_RUNS and not is_app_file(frame[1])

    return any(runs(f) for f in stack[at + 1:]) and not any(runs(f) for f in stack[:at])


def _same_callback(stack: list[Frame], other: list[Frame]) -> bool:
    """Both stacks were taken in one callback: they agree (function and file) from
    the outermost frame down to an application frame inside the loop's run frames
    (two callbacks share only the frames down to the loop's, and the line that
    started it)."""
    common: list[Frame] = []
    for mine, theirs in zip(stack, other, strict=False):
        if mine[:2] != theirs[:2]:
            break
        common.append(mine)
    culprit = culprit_of(common)
    return culprit is not None and not _started_the_loop(common, culprit)


def _slot_under(frame: Any, loop_frame: Any) -> Any:
    """The frame of ``frame``'s stack that Qt's loop called (its ``f_back`` is
    ``loop_frame``, the frame the loop runs under), or None: the loop at its wait,
    or not under the loop."""
    depth = 0
    while frame is not None and frame.f_back is not loop_frame:
        frame, depth = frame.f_back, depth + 1
        if depth > 256:
            return None
    return frame


def _app_caller(frame: Any) -> Any:
    """(On the loop thread, in a slot Qt's loop called.)  The innermost frame below
    ours: the Python frame Qt's loop runs under (the one that called exec, or a
    nested processEvents), which a slot called by the loop has as ``f_back``."""
    while frame is not None and is_ours(frame.f_code.co_filename):
        frame = frame.f_back
    return frame


def _weights(samples: list[tuple[float, list[Frame]]], poll: float,
             holds: Mapping[float, float] | None = None) -> list[int]:
    """How many looks' worth each of ``samples`` (time, stack), taken about every
    look period while the loop thread ran, stands for.  A sample after a gap stands
    for the gap when the one before it was in the same function: the thread was in
    it at both ends, most likely all along (a busy machine kept it off the CPU
    there; a 50 ms spin then 10 ms of other lines, preempted 12 ms in the spin,
    had two samples in each and was named by the other lines).  Otherwise it
    stands for one look: what ran in the gap is not known (a look late for the
    GIL while the thread ran on).  But a sample a tick took at the end of a hold
    (``holds``: the time a tick ran, after the loop thread burned CPU with no
    bytecode boundary, to when the hold began as far as its span tells, see
    StallWatchdog._holds) stands for the hold whatever came before it: one C call,
    made from the frame the tick found (a C call returns to its caller, where the
    tick runs at the first check after it)."""
    out = []
    last: tuple[float, tuple[str, str] | None] = (0.0, None)
    for when, stack in samples:
        began = holds.get(when) if holds else None
        if began is not None:
            weight = max(1, round((when - max(began, last[0])) / poll))
            last = (when, _where(stack))
        else:
            weight, last = _weight(when, stack, last, poll)
        out.append(weight)
    return out


def _where(stack: list[Frame]) -> tuple[str, str] | None:
    """The function (name, file) a sample was taken in: its culprit's, if any."""
    culprit = culprit_of(stack)
    return culprit[:2] if culprit is not None else None


def _weight(when: float, stack: list[Frame], last: tuple[float, tuple[str, str] | None],
            poll: float) -> tuple[int, tuple[float, tuple[str, str] | None]]:
    """The weight of a sample taken at ``when`` after the one ``last`` (its time and
    function), as :func:`_weights` says, and this one's time and function."""
    here = _where(stack)
    since, before = last
    weight = max(1, round((when - since) / poll)) if here is not None and here == before else 1
    return weight, (when, here)


def _same_slot(stack: list[Frame], other: list[Frame], at: int) -> bool:
    """Both stacks were taken in one Qt slot, whose frame is the ``at``-th from the
    outermost: they agree (function and file) down to it.  (On a Qt main thread
    without asyncio two slots share only the line that started the loop, so
    _same_callback cannot tell them apart.)"""
    return len(stack) > at < len(other) and all(
        mine[:2] == theirs[:2] for mine, theirs in zip(stack[:at + 1], other[:at + 1],
                                                        strict=True))


def _at_wait(stack: list[Frame], idle_frame: tuple[str, str]) -> bool:
    """The loop thread is at its idle wait: the frame that called into Qt's event
    loop is on top of ``stack``, or nothing but our own frames are above it.

    Those are the heartbeat's slot (and our hook on ``exec``): Qt woke the loop
    thread to run it, and its first bytecode runs the tick that hands this thread
    the GIL, so a busy machine's late wake-up is often sampled there (seen: a
    starved idle qasync loop counted as a 100 ms stall because one of its
    samples was in ``QtHeartbeat``'s slot).
    """
    for frame in reversed(stack):
        if frame[:2] == idle_frame:
            return True
        if not is_ours(frame[1]):
            return False
    return False


#: a line that runs a Qt event loop: ``app.exec()``, ``dialog.exec_()``.  (Not
#: ``processEvents()``: an app's code that calls it runs the events it chose to
#: run, and is named by them.)
_QT_LOOP_CALL = re.compile(r"\.\s*exec_?\s*\(")


def _in_qt_loop_call(stack: list[Frame]) -> bool:
    """The innermost app frame of ``stack`` (outermost first), with nothing but our
    own frames above it, is at a line that runs Qt's event loop: the loop thread was
    in Qt's C++ under that call (a paint, a layout, a C++ slot, or the wait).

    That line is not what held the loop: a Python slot Qt ran would be on the stack
    above it.  Without this, a repaint run by a C++ timer on a Qt main thread was
    named by the ``app.exec()`` line whenever the frame the loop idles in was not
    known yet (a stall before the first heartbeat: the window's first paint), or
    was learnt in another loop (a nested ``QEventLoop.exec`` before ``app.exec``).
    """
    for frame in reversed(stack):
        if is_ours(frame[1]):
            continue
        if not is_app_file(frame[1]):
            return False
        line = frame[2]
        return line is not None \
            and bool(_QT_LOOP_CALL.search(linecache.getline(frame[1], line)))
    return False


# os.open, but not as the blocking-call detector may have wrapped it (None where
# there is no posix module: no schedstat either).
_posix_open: Callable[..., int] | None = getattr(sys.modules.get("posix"), "open", None)


def _loop_thread_times(native_id: int | None) -> ThreadTimes | None:
    """``open_times`` for the loop thread, called on it: the descriptor goes in the
    app's table, and is opened without the ``os.open`` the blocking-call detector
    wraps (ours is not the app's blocking call; in strict mode it would raise)."""
    if native_id is None or _posix_open is None:
        return None
    try:
        fd = _posix_open(f"/proc/self/task/{native_id}/schedstat", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    times = ThreadTimes(fd)
    try:
        times.read()
    except Exception:  # no pread (OSError), a format we cannot read: none
        times.close()
        return None
    return times


def _read_at(fd: int, size: int, offset: int) -> bytes:
    """``os.pread``, or where there is none (Windows) a seek and a read."""
    pread = getattr(os, "pread", None)
    if pread is not None:
        return bytes(pread(fd, size, offset))
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, size)


def _clear_dump(fd: int) -> None:
    """Empty the dump file; faulthandler's next dump goes at its start (where
    there is no O_APPEND, the file's offset is where it writes)."""
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)


#: Files a watchdog thread with a descriptor table of its own could not close.
_LEFT_OPEN: list[IO[bytes]] = []

_RESUME = opcode.opmap.get("RESUME")
_ENTRY: dict[Any, int] = {}  # code -> offset of its RESUME (3.11+), or 0


def _at_entry(frame: Any) -> bool:
    """Is ``frame`` at its first instruction?  A signal handler runs there when
    Python was not running on that thread before: the code was just called from C."""
    if frame is None:
        return False
    code = frame.f_code
    entry = _ENTRY.get(code)
    if entry is None:
        entry = 0
        if _RESUME is not None:
            raw = code.co_code
            for offset in range(0, len(raw), 2):
                if raw[offset] == _RESUME:
                    entry = offset
                    break
        if len(_ENTRY) > 512:
            _ENTRY.clear()
        _ENTRY[code] = entry
    return bool(frame.f_lasti <= entry)


_MAX_VOTES = 64  # distinct culprit frames counted per stall
_MAX_SAMPLES = 2000  # stacks sampled per stall (10 s at one a look): enough to vote
_AIM_PAST = 0.0003  # a tick brought to this long past a slot's threshold (_aim_tick)
#: how late a Qt loop's idle wait may end after its heartbeat timer is due (a
#: ``PreciseTimer`` fired 0.6-1.1 ms late here: Qt's wait rounds to whole ms)
_BEAT_SLACK = 0.0015



_IDLE_GAP = 0.001  # a reading's interval this much short of busy had the loop thread idle


def _busy_to_end(points: list[tuple[float, float, float | None]], seen: float) -> float:
    """How long the loop thread was busy without a break (running, or ready to run
    with no CPU to run on) up to the last of ``points``: readings of (clock, its
    CPU clock, its delay by the machine) in order, the first at or before ``seen``
    (its time before ``seen`` is taken as busy, and not counted).

    The readings are walked back from the last: the stretch began in the latest
    interval that was not busy throughout (at least ``_IDLE_GAP`` of it idle),
    at its end (a stall is one stretch, and its loop waited before it).  Taken
    as one stretch from the first reading, Python that ran after ``seen`` and
    before an idle wait counted in: a 130 ms repaint beside burners was dated
    5.9 ms before its timer was due.

    A delay is counted when the wait ends, all of it (``schedstat``), and a
    tick's reading carries the last one read: an interval's excess over its own
    length was waited in the interval before, and is carried back to it (and
    dropped before the first reading).  The last interval is never taken as
    the break: a wait in progress there is not counted yet.
    """
    spans: list[tuple[float, float]] = []  # (length, busy) of each interval
    for (t0, cpu0, delay0), (t1, cpu1, delay1) in itertools.pairwise(points):
        waited = 0.0 if delay0 is None or delay1 is None else max(0.0, delay1 - delay0)
        spans.append((max(0.0, t1 - t0), max(0.0, cpu1 - cpu0) + waited))
    carried = 0.0
    for index in range(len(spans) - 1, -1, -1):
        length, busy = spans[index]
        busy += carried
        carried = max(0.0, busy - length)
        spans[index] = (length, min(busy, length))
    total = 0.0
    for index in range(len(spans) - 1, -1, -1):
        length, busy = spans[index]
        if index == 0 and points[0][0] < seen:
            # (The first reading was before seen: all it can have spent till then.)
            busy = max(0.0, busy - (seen - points[0][0]))
        total += busy
        if index < len(spans) - 1 and length - busy > _IDLE_GAP:
            break
    return total

class StallWatchdog(Detector):
    name = "stalls"

    def __init__(self, settings: Settings) -> None:
        self.threshold = settings.threshold_s
        heartbeat = settings.heartbeat_ms / 1000.0
        # Look often enough that a run is dated to within a look and a stall is
        # seen within threshold + one look.
        self.poll = min(0.010, max(0.002, self.threshold / 10.0, heartbeat / 2.0))
        self.gil_late = max(0.020, self.threshold / 2.0)
        # A look this late (two GIL switch intervals) is asked why it was late.
        self.gil_trigger = max(0.010, 2.0 * self.poll)
        self.use_faulthandler = settings.gil_capture
        # How the stack of a stall that holds the GIL is taken: the loop thread
        # dumps its own from a signal (looptools.inapp._sigdump), or, where that cannot
        # be set up, faulthandler's timer thread dumps every thread's.
        self.use_thread_dump = settings.thread_dump
        self.dump_after = max(0.020, self.threshold * 0.4)
        self._dumper: _sigdump.ThreadDump | None = None
        self._one_byte = ctypes.create_string_buffer(1)
        self.dump_kind: str | None = None  # "signal", "timer-thread" or None
        # Why not (None: in use), for the report; see contribute().
        self.no_gil_stacks: str | None = "no loop ran"
        self.no_thread_dump: str | None = "no loop ran"
        # Why the watchdog ran late (looptools.inapp._threadtimes): read in its thread.
        self.use_thread_times = settings.thread_times
        self._times_w: ThreadTimes | None = None
        self._times_l: ThreadTimes | None = None
        self.thread_times = False
        self.no_thread_times: str | None = "no loop ran"
        self.gil_waits = 0  # looks that found the GIL held against them
        self.starved = 0  # would-be stalls that were the machine's time (not stalls)
        # (when, the machine's delay of the loop thread so far): its time on a run
        # queue, plus _held_queued (see _starved); read by this thread as each look
        # begins and ends, and on a Qt loop by the loop thread itself at each tick
        # and heartbeat (_loop_marks, through _times_loop: a descriptor in the app's
        # table).
        self._rq_marks: deque[tuple[float, float]] = deque(maxlen=2048)
        self._loop_marks: deque[tuple[float, float]] = deque(maxlen=256)
        self._times_loop: ThreadTimes | None = None
        self._held_queued = 0.0  # seconds this thread sat on a run queue holding the GIL
        # (from, to): spans in which the whole process was stopped (see _stopped)
        self._stops: deque[tuple[float, float]] = deque(maxlen=64)
        self.stops = 0  # times the whole process was seen stopped (see _stopped)
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
        # Reentrant: the monitor stops from a SIGTERM handler, which may run on
        # the loop thread in the middle of _finish.
        self._lock = threading.RLock()
        self._recent_slow: deque[tuple[float, float, Any]] = deque(maxlen=8)
        #: GIL-held stalls finished before their callback was reported (the
        #: watchdog can get there first on a busy machine): named when it is.
        self._unnamed: deque[Stall] = deque(maxlen=8)
        #: Callbacks over the threshold (``slow_callback``) not yet checked against
        #: the stalls recorded: one that no stall covers was missed live (see
        #: _record_missed), and is recorded after the fact by this thread's next look.
        #: Each with the last sign of other Python on the loop thread as it ended
        #: (``_quiet_since``).
        self._missed: deque[tuple[float, float, Any, float]] = deque(maxlen=16)
        #: the stalls begun or recorded last (live, GIL-held, after the fact): a slow
        #: callback overlapping one of them is that stall, or was judged with it
        self._recorded: deque[Stall] = deque(maxlen=16)
        #: (when, run number, id of its handle, stack) of the loop thread, sampled by
        #: the ticks and looks while one run went on past half the threshold with no
        #: stall begun: the evidence and votes of a stall recorded after the fact
        self._run_samples: deque[tuple[float, int, int, list[Frame]]] = deque(maxlen=32)
        #: (when, the loop's last sign of life then, stack) of the loop thread, sampled
        #: by the ticks and looks while Python ran in one of Qt's slots (no asyncio run)
        #: past half the threshold after that sign: the votes of its stall
        self._slot_samples: deque[tuple[float, float, list[Frame]]] = deque(maxlen=32)
        self._slot_seen = 0.0  # the sign of life before the slot last seen running
        #: (a sign of life, the latest a slot found running after it began): a tick
        #: that finds Python in a slot, not at its entry, found one begun before
        #: that tick was due (_began_by); so does a look of this thread while ticks
        #: flow.  The slot's stall is dated then, not from the sign of life (up to
        #: a poll before the slot: 45 ms slots read 50.5 ms, false stalls)
        self._slot_due = (0.0, 0.0)
        self._entered = 0.0  # when a tick last ran at a slot's entry (its start, exact)
        #: when a tick last ran at a slot's entry while this thread held the look, so
        #: that it could not say so (_tick); read by the looks after (_back_at_entry)
        self._entry_skipped = 0.0
        self._looked = 0.0  # when the thread last looked (_check)
        self._slot_at = 0  # how many frames are outside that slot's (the loop's chain)
        self.after_the_fact = 0  # stalls missed live, recorded from their callback's end
        # What the watchdog has seen of the loop thread (its own thread only):
        self._n = 0  # the run counter at the last look
        self._alive = time.perf_counter()  # the last time the loop was seen back
        self._run_t0: float | None = None  # when the run in progress began, as dated
        self._jobs: list[Callable[[float, float], Any]] = []  # asyncio probes
        # Ticks (see the module docstring).  The tick runs on the loop thread;
        # _look serialises looking between it and the thread (the tick never
        # blocks on it: it skips).
        self.use_ticks = settings.signal_ticks
        self.ticking = False
        self.use_wake_timer = settings.wake_timer
        #: the thread's wake-up timer was set up at the last loop's attach (_sleep)
        self.wake_timer = False
        #: why not (None: it was, or no loop was attached)
        self.no_wake_timer: str | None = "no loop ran"
        self._wake_signal: int | None = None
        self._wake_timer: _posix_timer.ThreadTimer | None = None
        # The thread waits for the loop's last sign of life + threshold (_next_wait),
        # on its wake-up timer: a tick that sees the loop alive may put it back.
        self._by_sign = False
        self.sleeps_on = 0  # wake-ups of the thread that found the loop alive: no look
        self.ticks = 0  # ticks run
        self.handoffs = 0  # looks of the thread handed the GIL by a tick
        self.looks = 0  # looks of the thread
        self.no_ticks: str | None = "no loop ran"  # why the last loop start set no ticks
        # Without ticks on a Qt loop: every run stamped by the plugin's precise hook,
        # so the thread looks about twice per threshold, handed the GIL by the Qt
        # heartbeat (see _stamp_runs).
        self._plugin: Any = None
        self.stamped = False
        self.stamped_ever = False  # for the report: at any time while attached
        self._wakeup_watched = False  # looptools.inapp._wakeup: the app's wakeup descriptor
        self._signals_watched = False  # looptools.inapp._sigtaken: the app's own handlers
        # A descriptor table of the thread's own (looptools.inapp._fdtable): the
        # descriptors to keep in it, None for a shared table.
        self.use_private_fds = settings.private_fds
        self._fd_keep: set[int] | None = None
        self.private_fds = False  # the thread runs with a table of its own
        self.no_private_fds: str | None = "no loop ran"
        self._guard_gc = False  # pause cyclic GC while the thread runs Python
        self._collections: Collections | None = None  # the collector's runs on the loop thread
        self._gc_voted = 0.0  # the start of the last collection _vote_dump took off dumps
        self._ready = threading.Event()  # the thread has set its table up
        self._gc_paused = False
        self._in_tick = False
        self._retiring = False  # stopped off the main thread: the next tick undoes it
        # The signal the ticks come on (no SIGALRM on Windows: set before use).
        self._tick_signal: int = getattr(signal, "SIGALRM", 0)
        self._tick_timer: _posix_timer.ThreadTimer | None = None
        self.tick_timer: str | None = None  # what sends them: "posix-timer" or "setitimer"
        self._tick_t = 0.0  # when the last tick ran
        self._tick_before = 0.0  # when the one before it ran
        self._tick_gap = (0.0, 0.0)  # (the tick before, the late tick): the last late tick
        self._tick_gaps: deque[tuple[float, float]] = deque(maxlen=16)  # the last ones
        # (when, what ran then, the latest it began) at the last late tick (see _tick
        # and _observe)
        self._late_seen: tuple[float, Any, float] = (0.0, None, 0.0)
        #: (a Qt loop) the frame Qt's loop runs under, as of the last heartbeat
        self._loop_frame: Any = None
        self._tick_cpu = 0.0  # the loop thread's CPU clock then
        self._look_cpu = 0.0  # the loop thread's CPU clock at the thread's last look
        # ... as that look began, when this thread had just got the GIL: the loop
        # thread was in no C call that holds it.  (Not at its end: a look that lets
        # the GIL go midway, preempted beside burners, let the loop thread run a
        # 40 ms C call, whose CPU its end's reading took from the tick after it.)
        self._look_began_cpu = 0.0
        self._cpu_clock: int | None = None  # the loop thread's CPU clock, read from here
        # (A Qt loop) how the loop thread had spent its time, read on it when it ran
        # Python (a tick, a heartbeat) and by this thread at each look: (when, its
        # CPU clock, the machine's delay of it so far as in _rq_marks, or None),
        # for _in_qt_since; and that clock, read from the watchdog thread (exact:
        # schedstat's CPU time lags a running thread by up to a scheduler tick).
        self._cpu_refs: deque[tuple[float, float, float | None]] = deque(maxlen=256)
        self._loop_clock: int | None = None
        self._loop_delay: float | None = None  # the last _mark_loop's reading
        self._burst = (0.0, 0.0)  # (when, CPU seconds) of the last C call seen by a tick
        # (the tick before, the tick after) of each such call: the last ones (_holds)
        self._bursts: deque[tuple[float, float]] = deque(maxlen=16)
        self._jobs_t = 0.0  # when the jobs last ran
        self._last_look = time.perf_counter()  # when a look (tick or thread) last dated runs
        # Held while faulthandler's timer is (re-)armed, and across a fork: a
        # child must not inherit the timer's C thread half-way (its exit would
        # wait for that thread forever).
        self._arm = _thread.allocate_lock()
        self._look = _thread.allocate_lock()
        self._wake = _thread.allocate_lock()  # released to wake the thread
        self._wake.acquire()
        self._done = _thread.allocate_lock()  # released by the thread after a handed-off look
        self._done.acquire()
        self._due = float("inf")  # when the thread next wants to look
        # Stamped runs: how long before its own wake-up (at _due + _early) the Qt
        # heartbeat may hand the thread the GIL (see _next_wait).
        self._early = 0.0
        self._beat_every = settings.heartbeat_ms / 1000.0
        self._waiting = False  # the thread is (or is just back from) waiting to look
        self._handoff = False  # a tick is waiting for the thread's look
        # Worker-thread loops (looptools.inapp.detectors.worker_loops), looked at by this
        # thread too; _workers_only: the thread runs for them alone (no main loop).
        self._workers: Any = None
        self._workers_only = False
        #: detached: no thread is started for worker loops any more (a worker loop
        #: starting as the monitor stops would start one that nothing stops)
        self._detached = False
        self._attaching = False

    # -- lifecycle (loop thread) --------------------------------------------
    def attach(self, state: Any, plugin: Any) -> None:
        with self._lock:
            self._detached = False
            # Until this loop's thread is started below, a worker loop starting now
            # must not start a thread of its own (this one would orphan it).
            self._attaching = True
            # Running for worker loops alone: set up again below, for this loop too.
            stopped = self._stop_thread() if self._workers_only else None
        if stopped is not None:
            stopped.join(timeout=1.0)
        self.state = state
        self.qt = bool(plugin.is_qt)
        self._plugin = plugin
        self._rq_marks.clear()  # another loop thread's, if any
        self._cpu_refs.clear()
        self._loop_clock = None
        if self.qt:
            try:
                clock = time.pthread_getcpuclockid(state.thread_id)
                time.clock_gettime(clock)
                self._loop_clock = clock
            except (AttributeError, OSError):  # not on this platform
                pass
        on_main = state.thread_id == threading.main_thread().ident
        if self._collections is not None:
            self._collections.remove()
        self._collections = Collections(state.thread_id)
        self._collections.install()
        self._set_up_dumps(state, on_main)
        self._choose_wake_signal(on_main)
        self._fd_keep = None
        self.private_fds = False
        fds = plugin.thread_fds() if self.use_private_fds else None
        if not self.use_private_fds:
            self.no_private_fds = "switched off (private_fds)"
        elif not on_main:
            self.no_private_fds = "the loop runs off the main thread"
        elif fds is None:
            self.no_private_fds = "the loop's descriptors the watchdog uses are not known"
        else:
            # Only a loop on the main thread gains: one off it shares the
            # table with the main thread anyway.
            self.no_private_fds = None  # unless the thread cannot (see _run)
            self._fd_keep = stderr_fds() | set(fds)
            if self._dump is not None:
                self._fd_keep.add(self._dump.fileno())
        self._stop = threading.Event()  # the new thread's: an old one stopping keeps its own
        self._ready.clear()
        self._thread = threading.Thread(target=self._run, args=(self._stop,),
                                        name="looptools-watchdog", daemon=True)
        self._thread.start()
        with self._lock:
            self._attaching = False
        if self._fd_keep is not None:
            # Wait (~0.1 ms) while the thread sets its table up: done while the
            # loop runs, every GIL release there (each close) would cost a
            # GIL convoy of several ms against the busy loop.
            self._ready.wait(0.5)

    def serve_workers(self, workers: Any) -> None:
        """Any thread: at each look, look at worker-thread loops too
        (``WorkerLoops.look``), or (None) no more.  With no loop attached the
        thread runs for them alone, until a loop is attached or they are done."""
        if workers is not None and self._workers is workers and self._thread is not None:
            return
        stopped = None
        with self._lock:
            self._workers = workers
            if workers is not None:
                self._kick()  # (asleep on its wake-up timer: look at them now)
            if workers is None:
                if self._workers_only:
                    stopped = self._stop_thread()
            elif self._thread is None and not self._detached and not self._attaching \
                    and self.hub is not None \
                    and self in self.hub.detectors:
                self._workers_only = True
                self._fd_keep = None  # a table of its own only for a main loop (see attach)
                self._stop = threading.Event()
                self._ready.clear()
                self._thread = threading.Thread(target=self._run, args=(self._stop,),
                                                name="looptools-watchdog", daemon=True)
                self._thread.start()
        if stopped is not None:
            stopped.join(timeout=1.0)

    def _stop_thread(self) -> threading.Thread | None:
        """Tell the thread running for worker loops alone to stop (under ``_lock``);
        returns it, for the caller to join once the lock is released."""
        self._workers_only = False
        self._stop.set()
        self._kick()
        thread, self._thread = self._thread, None
        return thread if thread is not threading.current_thread() else None

    def _choose_wake_signal(self, on_main: bool) -> None:
        """The real-time signal of the thread's wake-up timer (_sleep), chosen here,
        before the ticks choose theirs; the timer is made by the thread itself."""
        self._wake_signal = None
        self.wake_timer = False
        if not self.use_wake_timer:
            self.no_wake_timer = "switched off (wake_timer)"
        elif not self.use_ticks:
            self.no_wake_timer = "it needs the ticks (signal_ticks is off)"
        elif not on_main:
            self.no_wake_timer = "the loop runs off the main thread"
        else:
            # (Its signal must be blocked in the thread: its default ends the process.)
            self.no_wake_timer = _posix_timer.missing() or (
                None if hasattr(signal, "pthread_sigmask") else "no signal.pthread_sigmask") \
                or (None if hasattr(signal, "sigwait") else "no signal.sigwait")
            if self.no_wake_timer is None:
                taken = (self._dumper.signum,) if self._dumper is not None else ()
                found = _posix_timer.free_signals(1, taken)
                if found:
                    self._wake_signal = found[0]
                else:
                    self.no_wake_timer = "no free real-time signal"

    def _set_up_dumps(self, state: Any, on_main: bool) -> None:
        """How the stack of a stall that holds the GIL will be taken (``dump_kind``).

        Best: the loop thread dumps its own (looptools.inapp._sigdump: Linux, ticks on
        the main thread).  Else faulthandler's timer thread dumps every thread's,
        later.  Else, or with ``gil_capture`` off, no dump at all: the stack is
        sampled the moment the GIL comes back (``stack_source: "after"``).
        """
        self._dumper = None
        self.dump_kind = None
        self.no_gil_stacks = self.no_thread_dump = None
        if not self.use_faulthandler:
            self.no_gil_stacks = self.no_thread_dump = "switched off (gil_capture)"
            return
        if not self.use_thread_dump:
            self.no_thread_dump = "switched off (thread_dump)"
        elif not self.use_ticks:
            # Its timer is re-armed by every tick (see looptools.inapp._sigdump).
            self.no_thread_dump = "it needs the ticks (signal_ticks is off)"
        elif not on_main:
            self.no_thread_dump = "the loop runs off the main thread"
        else:
            self.no_thread_dump = _sigdump.missing()
        later = hasattr(faulthandler, "dump_traceback_later") \
            and hasattr(faulthandler, "cancel_dump_traceback_later")
        if self.no_thread_dump is not None and not later:
            self.no_gil_stacks = "no faulthandler.dump_traceback_later on this platform"
            return
        self._dump = tempfile.TemporaryFile(prefix="looptools-dump-")
        # O_APPEND so that faulthandler always writes at the end, even after
        # we truncate the file between stalls (without fcntl, _clear_dump
        # also moves the file's offset back to the start).
        try:
            import fcntl

            flags = fcntl.fcntl(self._dump.fileno(), fcntl.F_GETFL)
            fcntl.fcntl(self._dump.fileno(), fcntl.F_SETFL, flags | os.O_APPEND)
        except (ImportError, OSError, AttributeError):
            pass
        if self.no_thread_dump is None:
            try:
                self._dumper = _sigdump.create(state.thread_id, state.native_id,
                                               self._dump, self.dump_after)
            except Exception:  # ours, not the app's: fall back
                self._dumper = None
            if self._dumper is None:
                self.no_thread_dump = "its signal or timer could not be set up"
        if self._dumper is not None:
            self.dump_kind = "signal"
        elif later:
            self.dump_kind = "timer-thread"
        else:
            self._dump.close()
            self._dump = None
            self.no_gil_stacks = "no faulthandler.dump_traceback_later on this platform"

    def detach(self) -> None:
        with self._lock:
            self._detached = True
            self._attaching = False
            self._workers_only = False
        self._stop_ticks()
        self._stamp_runs(False)
        self._plugin = None
        if self._wakeup_watched:
            self._wakeup_watched = False
            _wakeup.unwatch(self._wakeup_changed)
        if self._signals_watched:
            self._signals_watched = False
            _sigtaken.unwatch(self._signal_taken)
        self._stop.set()
        self._kick()
        self._wake_signal = None
        thread, self._thread = self._thread, None
        itself = thread is threading.current_thread()
        if thread is not None and not itself:
            thread.join(timeout=1.0)
        dumper, self._dumper = self._dumper, None
        if dumper is not None:
            dumper.close(on_target_thread=threading.get_ident() == getattr(
                self.state, "thread_id", None))
        if self._dump is not None:
            if dumper is None and self.dump_kind == "timer-thread":
                with self._arm:
                    faulthandler.cancel_dump_traceback_later()
            if self.private_fds and itself:
                # Switching itself off after a failure: a close here would hit
                # this thread's table and leak the app's copy; the file is left
                # for the interpreter to close at exit, from the main thread.
                _LEFT_OPEN.append(self._dump)
            else:
                self._dump.close()
            self._dump = None
        if self.current is not None:
            self._finish(self.current, self._end_of(self.current))
        self._record_missed_now()
        if self._collections is not None:
            self._collections.remove()  # (kept, not cleared: a report may follow)
        if not (self.private_fds and itself):  # (its table is not the app's)
            times, self._times_loop = self._times_loop, None
            if times is not None:
                times.close()

    # -- fork (the forking thread) ----------------------------------------------
    def before_fork(self) -> None:
        if self._dump is not None and self._dumper is None and self.dump_kind == "timer-thread":
            self._arm.acquire()
            faulthandler.cancel_dump_traceback_later()
            self._armed_at = 0.0  # re-armed at the next look, in the parent

    def after_fork_in_parent(self) -> None:
        if self._arm.locked():
            self._arm.release()

    def forget(self) -> None:
        # In the child: the watchdog thread is gone, faulthandler's timer was
        # cancelled before the fork, timers are not inherited; put the tick
        # signal's handler back.
        self._thread = None
        self.current = None
        self.state = None
        collections, self._collections = self._collections, None
        if collections is not None:
            collections.remove()
        self._tick_timer = None  # POSIX timers and itimers are not inherited
        self._wake_timer, self._wake_signal, self._by_sign = None, None, False
        self._wakeup_watched = False  # (the monitor puts set_wakeup_fd back)
        self._signals_watched = False  # (and signal.signal)
        times, self._times_loop = self._times_loop, None
        if times is not None:
            times.close()  # the parent's loop thread's
        if self.ticking:
            self.ticking = False
            try:
                if signal.getsignal(self._tick_signal) == self._tick:
                    signal.signal(self._tick_signal, signal.SIG_DFL)
            except (OSError, ValueError):
                pass
        dumper, self._dumper = self._dumper, None
        if dumper is not None:
            dumper.forget()
        dump, self._dump = self._dump, None
        if dump is not None:
            try:
                dump.close()
            except OSError:
                pass
        if self._arm.locked():
            self._arm.release()

    def loop_started(self, now: float) -> None:
        self._alive = self._last_look = now
        self._run_t0 = None
        self._late_seen = (0.0, None, 0.0)
        if self.state is not None:
            self._n = self.state.n
            self._loop_marks.clear()
            if self.qt and self.use_thread_times and self._times_loop is None:
                # Where a Qt loop idles, a busy machine's delay is not a stall (see
                # _starved): each tick and heartbeat reads the loop thread's
                # run-queue time.
                self._times_loop = _loop_thread_times(self.state.native_id)
        if self.qt:
            # The frame Qt's loop runs under, as a heartbeat learns it, known now: an
            # app slot that runs before the first heartbeat is seen in (a 52 ms slot
            # of a QTimer.singleShot(0) on QtAsyncio was named by the 10 ms after it
            # in 3 of 15 runs).  A Qt main thread without asyncio is attached from a
            # slot Qt's loop called: the frame below ours.  qasync and QtAsyncio
            # start from their run_forever, which calls exec itself; attached
            # elsewhere (a monitor started in a coroutine) the first heartbeat tells.
            frame = _app_caller(sys._getframe(1))
            if getattr(self._plugin, "kind", None) == "qt" \
                    or (frame is not None and frame.f_code.co_name == "run_forever"):
                self._loop_frame = frame
        self._start_ticks()
        self._stamp_runs(not self.ticking)

    def loop_stopped(self, now: float) -> None:
        self._stop_ticks()
        self._late_seen = (0.0, None, 0.0)
        self._loop_frame = None  # (not kept alive past its loop)
        # The loop stopping is the loop thread coming back: end any stall now.
        current = self.current
        if current is not None:
            self._finish(current, now)
        self._record_missed_now()
        times, self._times_loop = self._times_loop, None
        if times is not None:
            times.close()

    def _record_missed_now(self) -> None:
        """Record what ``_record_missed`` has waiting, outside the thread's looks (the
        loop stops, the monitor detaches: the thread may not look again)."""
        if self._missed and self._look.acquire(timeout=0.1):
            try:
                self._record_missed()
            finally:
                self._look.release()

    def heartbeat(self, now: float, lag: float) -> None:
        self._mark_loop()
        if self.qt:
            self._loop_frame = _app_caller(sys._getframe(1))
            self._cpu_refs.append((now, time.thread_time(), self._loop_delay))
        if self.stamped and self._waiting and now >= self._due \
                and not self._stop.is_set() and not self.ticking:
            self._hand_off()  # as a tick would (see _stamp_runs)

    def beat_done(self) -> None:
        """The heartbeat returns to Qt's loop: a reading of the loop thread's CPU
        clock, as it goes back to the loop's wait (_in_qt_since).  The one taken
        as the beat began left the rest of the beat (every detector's) to count
        as part of a C++ stall after it: a 94 ms repaint due 4.3 ms after a beat
        was dated 0.5 ms before its timer was due."""
        if self.qt:
            # (The delay read now, not the last _mark_loop's: a wait in the beat
            # would count after it, as the stall's.)
            self._cpu_refs.append((time.perf_counter(), time.thread_time(), self._delay_now()))

    def _mark_loop(self) -> None:
        """On the loop thread (a tick, a heartbeat of a Qt loop): its run-queue time
        now, for :meth:`_starved` (one ``pread`` that keeps the GIL, ~1.5 µs).
        Dated before the read: a wait that ends in between only makes the mark
        larger, and the delay counted from it smaller."""
        times = self._times_loop
        if times is None:
            return
        when = time.perf_counter()
        try:
            self._loop_delay = delay = times.read()[1] + self._held_queued
            self._loop_marks.append((when, delay))
        except (OSError, ValueError, IndexError):  # e.g. the app closed it
            self._times_loop = self._loop_delay = None

    # -- ticks (loop thread) -------------------------------------------------
    def _start_ticks(self) -> None:
        """Start the ticks if the loop thread is the main thread.

        Linux: a POSIX timer sends a free real-time signal to the loop thread
        alone (looptools.inapp._posix_timer).  Elsewhere: ``setitimer``'s ``SIGALRM``,
        if the app uses neither it nor the real-time interval timer.
        """
        state = self.state
        main = threading.main_thread()
        if self.ticking or state is None:
            return
        self.tick_timer = None
        if not self.use_ticks:
            self.no_ticks = "switched off (signal_ticks)"
            return
        if threading.current_thread() is not main or state.thread_id != main.ident:
            self.no_ticks = "the loop runs off the main thread"
            return
        self._watch_wakeup_fd()
        if self._wakeup_fd_in_the_way():
            self.no_ticks = _APP_WAKEUP_FD
            return
        try:
            if self._start_thread_timer(state):
                return
            if not all(hasattr(signal, name) for name in
                       ("setitimer", "getitimer", "SIGALRM", "siginterrupt")):
                self.no_ticks = "no timer signals on this platform"
                return
            if signal.getsignal(signal.SIGALRM) != signal.SIG_DFL \
                    or signal.getitimer(signal.ITIMER_REAL) != (0.0, 0.0):
                self.no_ticks = "the app uses SIGALRM or the real-time interval timer"
                return
            self.no_ticks = None
            self.tick_timer = "setitimer"
            self._tick_signal = signal.SIGALRM
            signal.signal(signal.SIGALRM, self._tick)
            self.ticking = True
            # SA_RESTART: a read or write the app has in progress restarts instead
            # of failing with EINTR (sleeps and selects return early and Python
            # retries them, running the handler in between).
            signal.siginterrupt(signal.SIGALRM, False)
            self._ticks_began()
            signal.setitimer(signal.ITIMER_REAL, self.poll, self.poll)
        except (OSError, ValueError, AttributeError) as exc:
            self._stop_ticks()
            self.tick_timer = None
            self.no_ticks = f"the timer signal could not be set up ({type(exc).__name__}: {exc})"

    def _start_thread_timer(self, state: Any) -> bool:
        """Ticks from a POSIX timer aimed at the loop thread (Linux); False if none."""
        if state.native_id is None:
            return False
        taken = tuple(signum for signum in (
            self._dumper.signum if self._dumper is not None else None, self._wake_signal)
            if signum is not None)
        signals = _posix_timer.free_signals(1, taken)
        if not signals:
            return False
        signum = signals[0]
        timer = _posix_timer.create(_posix_timer.CLOCK_MONOTONIC, state.native_id, signum,
                                    self.poll, self.poll)
        if timer is None:
            return False
        self.no_ticks = None
        self.tick_timer = "posix-timer"
        self._tick_signal = signum
        self._tick_timer = timer
        signal.signal(signum, self._tick)
        signal.siginterrupt(signum, False)
        self.ticking = True
        self._ticks_began()
        timer.arm()
        return True

    def _ticks_began(self) -> None:
        self._tick_t = self._jobs_t = time.perf_counter()
        self._tick_cpu = time.thread_time()
        if self._dumper is not None:
            self._dumper.arm()

    def _watch_wakeup_fd(self) -> None:
        """(Main thread.)  Follow the app's signal wakeup descriptor from now on."""
        if not self._wakeup_watched:
            self._wakeup_watched = _wakeup.watch(self._wakeup_changed)
        if not self._signals_watched:
            self._signals_watched = _sigtaken.watch(self._signal_taken)

    def _wakeup_fd_in_the_way(self) -> bool:
        """Would each tick write a byte the app reads?  Not into the watched loop's
        own self-pipe, which drops signals it has no handler for (see _own_self_pipe)."""
        fd = _wakeup.fd
        if fd == -1:
            return False
        try:
            return fd not in _own_self_pipe(getattr(self.state, "loop", None))
        except Exception:  # a closed socket, something else called _csock
            return True

    def _wakeup_changed(self, has_fd: bool) -> None:
        """(Main thread, the app just called ``signal.set_wakeup_fd``.)  Each tick would
        write a byte to the app's descriptor: stop them while it has one, start them
        again when it takes it away (looptools.inapp._wakeup)."""
        if self._wakeup_fd_in_the_way():
            if self.ticking:
                self._stop_ticks()
                self.no_ticks = _APP_WAKEUP_FD
                self._stamp_runs(True)
        elif self.no_ticks == _APP_WAKEUP_FD:
            # (With no loop running, the next loop start starts them; until then the
            # reason stands for the loop that ran.)
            state = self.state
            if state is not None and state.running and not self._detached:
                self._start_ticks()
                self._stamp_runs(not self.ticking)

    def _signal_taken(self, signum: Any, handler: Any) -> None:
        """(The app calls ``signal.signal``, main thread.)  A handler of its own on the
        ticks' signal, or on the dumps': stop our timer first, or it would call the
        app's handler about 200 times a second (looptools.inapp._sigtaken)."""
        if self.ticking and signum == self._tick_signal and handler != self._tick:
            self._stop_ticks()
            self.no_ticks = f"the app put a handler of its own on the ticks' signal ({signum})"
            self._stamp_runs(True)
        dumper = self._dumper
        if dumper is not None and signum == dumper.signum:
            self._dumper = None
            state = self.state
            dumper.close(on_target_thread=state is not None
                         and threading.get_ident() == state.thread_id)
            self.no_thread_dump = (f"the app put a handler of its own on the dumps' "
                                   f"signal ({signum})")
            if self._dump is not None and hasattr(faulthandler, "dump_traceback_later"):
                self.dump_kind = "timer-thread"  # (re-armed at the thread's looks)
            else:
                self.dump_kind = None

    def _stamp_runs(self, on: bool) -> None:
        """(Loop thread.)  Without ticks, have every run stamped, where that is cheap.

        Without ticks the thread must date each run by the first look that sees
        it, so it looks every poll; from a thread, in a busy loop that releases
        the GIL at each iteration, each look waits in a GIL convoy (design.md,
        "Looking": qasync's queue workload ran 1.15x so).  On a Qt loop the
        plugin's precise hook can stamp every run instead, and the Qt heartbeat,
        a timer on the loop thread, hands the thread the GIL when its look is due
        (:meth:`heartbeat`), as a tick would: the thread looks about twice per
        threshold.  Not on asyncio's own loops and uvloop: their probes are the
        thread's jobs, sent every poll, and nothing of theirs runs on the loop
        thread to hand it the GIL.
        """
        plugin = self._plugin
        on = on and self.qt and plugin is not None and not self._detached
        if on == self.stamped:
            return
        try:
            stamped = plugin.need_stamps(on) if plugin is not None else False
        except Exception as exc:  # the plugin's hook could not be changed
            stamped = False
            if self.hub is not None:
                self.hub.warn(f"looptools: the stall watchdog could not have runs stamped "
                              f"({type(exc).__name__}: {exc}); it looks every "
                              f"{self.poll * 1000:.0f} ms instead")
        self.stamped = on and stamped
        self.stamped_ever = self.stamped_ever or self.stamped

    def _stop_ticks(self) -> None:
        """Stop the ticks and put their signal back to its default.

        Python sets signal handlers only on the main thread; called from another
        thread this leaves the undoing to the next tick, which runs there.
        """
        if not self.ticking:
            return
        if threading.current_thread() is not threading.main_thread():
            self._retiring = True
            return
        self.ticking = self._retiring = False
        if self._dumper is not None:
            self._dumper.disarm()
        signum = self._tick_signal
        timer, self._tick_timer = self._tick_timer, None
        try:
            ours = signal.getsignal(signum) == self._tick
            if timer is not None:
                # A signal it already sent to this thread is delivered as the call
                # returns, and its handler (still ours) runs before the next
                # bytecode: none can arrive after the handler is put back.
                timer.delete()
            else:
                interval = signal.getitimer(signal.ITIMER_REAL)[1]
                if ours or abs(interval - self.poll) < 1e-4:  # not a timer the app set
                    signal.setitimer(signal.ITIMER_REAL, 0.0)
            if ours:
                _posix_timer.restore_default(signum, self._tick)
        except (OSError, ValueError):
            pass

    def _tick(self, signum: int, frame: Any) -> None:
        """The ticks' signal handler, on the loop thread between two bytecodes: look.

        Never blocks on a lock the loop thread may hold, never raises into the
        app: on any error the ticks stop and the thread looks by itself.
        """
        if self._retiring:  # stopped from another thread: undo it here
            self._stop_ticks()
            return
        if not self.ticking:
            return
        self._mark_loop()  # (in a nested tick too: the loop thread runs)
        if self._in_tick:
            return
        self._in_tick = True
        try:
            now = time.perf_counter()
            previous, self._tick_t = self._tick_t, now
            self._tick_before = previous
            cpu = time.thread_time()
            burst = cpu - max(self._tick_cpu, self._look_began_cpu)
            self._tick_cpu = cpu
            if self.qt:
                self._cpu_refs.append((now, cpu, self._loop_delay))
            if burst >= self.gil_late * 0.5:
                # The loop thread burned this much CPU without a bytecode
                # boundary (ticks run at each one, every poll) and without the
                # watchdog thread looking: one C call that held the GIL.
                self._burst = (now, burst)
                if previous > 0.0:  # (not the first tick)
                    self._bursts.append((previous, now))
            dumper = self._dumper
            if dumper is not None:
                dumper.arm()  # Python runs on the loop thread: no C call holds the GIL
            self.ticks += 1
            state = self.state
            if state is None or not state.running:
                return
            late = now - previous > 2.0 * self.poll
            if late:
                self._tick_gap = (previous, now)
                self._tick_gaps.append(self._tick_gap)
            at_slot = self.qt and frame is not None and frame.f_back is not None \
                and frame.f_back is self._loop_frame and _at_entry(frame)
            if not self._look.acquire(False):
                if at_slot:
                    self._entry_skipped = now  # (the look that holds it reads it)
            else:
                try:
                    if at_slot:
                        # A slot called by Qt's loop this instant (an app's slot,
                        # qasync's timer event, QtAsyncio's handle): no Python ran on
                        # the loop thread since this tick was sent, so Qt had the
                        # thread (waiting or dispatching), alive until now.  A Qt
                        # slot, which no hook stamps, is dated from here, not from
                        # the last heartbeat (up to 10 ms before: a 40 ms slot read
                        # 40-51 ms on a Qt main thread, up to 65 ms on qasync beside
                        # another process; helper 45).  (Only the loop's: Python
                        # called from C inside a callback, a gc callback, a
                        # __del__, is not the loop coming back.)
                        self._alive = self._entered = max(self._alive, now)
                    if not late:
                        # On time: whatever runs now began after the last tick, and
                        # before this one was due (_began_by).
                        began_by = self._began_by(now, frame)
                        _seen, cur = self._observe(now, began_by, frame)
                        self._last_look = now
                        if cur is not None:
                            self._sample_long_run(now, frame)
                        elif self.qt and _seen < now:  # (not at a slot's entry)
                            _seen = self._sample_slot(now, _seen, frame, began_by)
                            self._aim_tick(now, _seen)
                        check = state.idle_check
                        if cur is None and check is not None and check(frame):
                            state.idle_seen = now
                    else:
                        self._late_look(now, frame)
                    if self._jobs:
                        # Dated when a tick was due to run them: a tick that could
                        # not (a C call held the loop thread) is not lost time.
                        self._run_jobs(now, min(now, self._jobs_t + self.poll))
                finally:
                    self._look.release()
            if self._waiting and not self._stop.is_set():
                if self._by_sign and 0.0 < self._due - now < 2.0 * self.poll \
                        and self._workers is None:
                    self._put_back(now, state)
                if now >= self._due or self._stall_due(now):
                    self._hand_off()
        except Exception as exc:  # a KeyboardInterrupt goes on into the frame we interrupted
            self._stop_ticks()
            if self.hub is not None:
                self.hub.warn(f"looptools: the stall watchdog's ticks failed "
                              f"({type(exc).__name__}: {exc}); it looks by itself from now on")
        finally:
            self._in_tick = False

    def _began_by(self, now: float, frame: Any) -> float:
        """(A tick, at ``now``.)  The latest a run this tick finds in progress, and
        no look saw before, can have begun: when this tick was due.

        The loop thread runs a signal's Python handler at its next check for one:
        at each function's entry, after each call into C, at each backward jump.
        The entry of the function that runs a callback (asyncio's ``Handle._run``,
        or our hook) is such a check, and the loop's own code between callbacks
        calls C at every step.  So a tick that was due before a run began runs
        there, not in the run: one that finds the loop thread in a run found it
        begun before the tick was due (the thread ran no check since: a C call
        in the run, a collection, the OS keeping the thread off the CPU; or it
        was waiting for the GIL in the run).  The timer is periodic: this tick
        was due at most a poll after the last one ran.  Dated at this tick
        instead, a 57 ms spin whose first tick came 9-14 ms after the one before
        (5 ms apart otherwise) read under the threshold and was not reported (1
        in ~300 on an idle machine, in the whole suite's process).  A tick run
        at the callback's very entry found a run that begins now."""
        due = self._tick_before + self.poll
        if due >= now:
            return now
        state = self.state
        run_code = state.run_code if state is not None else None
        if run_code is not None and frame is not None and frame.f_code is run_code \
                and _at_entry(frame):
            return now
        return due

    def _aim_tick(self, now: float, seen: float) -> None:
        """(A tick on time, in a Qt slot running since the sign of life ``seen``.)
        If the slot turns into a stall before the next tick is due, bring that
        tick to just after it, then every poll from there.

        A slot is a stall only if a tick or look sees it running past the
        threshold from its date (no hook times its end), and it is dated up to a
        poll late (_slot_due): with the ticks a poll apart, the one that decides
        came up to a poll after the threshold, and a 60 ms slot dated 5 ms late
        ended before it now and then (1 in 120 on an idle machine).  Brought
        forward (never put back: a tick is then due sooner than _began_by's
        bound says, which stays sound), the decisive tick comes 0.3 ms past the
        threshold.  Not with ``setitimer``: the app's own signal handler could
        stop the ticks between our check and the call, and a SIGALRM sent then
        would kill the app."""
        timer = self._tick_timer
        if timer is None or self._slot_seen != seen or self.current is not None \
                or self._retiring:
            return
        delay = self._slot_start(seen) + self.threshold + _AIM_PAST - now
        if 0.0 < delay <= self.poll:
            timer.arm_in(delay)

    def _put_back(self, now: float, state: Any) -> None:
        """(A tick, the thread asleep till the loop's last sign of life + threshold,
        which is near.)  Put its wake-up back to the newest sign's: the loop lived
        since, and the look would find nothing.

        Done once the wake-up is under two polls away, so about once a threshold
        on a healthy loop (one ``timer_settime``, a few µs), not at every tick.
        A run in progress moves no sign: its wake-up stays (and _stall_due hands
        it the GIL as it nears the threshold, as before).  Never once it is due:
        a tick that comes after it (the process was stopped, the loop thread kept
        off the CPU or in a C call) lets the thread look, late — its lateness is
        what tells a stopped process and a busy machine from a stall (_stopped,
        _gil_held).  Put back then, the thread woke, found it not due, and slept
        on: a process stopped for 200 ms was not seen stopped."""
        timer = self._wake_timer
        if timer is None:
            return
        # (Never later than the sign says: a stall's look is due from there.)
        due = min(self._last_sign(state), now) + self.threshold
        if due > self._due:
            self._due = due
            if not timer.arm_at(due):
                self._kick()  # (the thread looks, and waits as without the timer)

    def _stall_due(self, now: float) -> bool:
        """The look is due before the next tick (half a poll of slack) and the run
        in progress is nearly a threshold long: hand it the GIL now.  Otherwise it
        would wake after this tick and wait for the GIL up to a switch interval, and
        a stall a little over the threshold could end unseen meanwhile (1 in ~100 of
        60 ms did, on an idle machine).  Only then: each hand-off makes the loop
        thread wait for the look, which a healthy busy loop's looks need not (a
        callback chain ran 2-4 % slower when every due look was handed off).

        And when a Qt slot is past the threshold and no look of the thread has
        been since it got there: the thread may have looked just before and be
        due a poll later, after the slot (a tick brought to just past a slot's
        threshold, _aim_tick, did not hand off, and its slot was not seen live).
        (An asyncio run's end is timed: one no look saw is recorded after it.)"""
        t0, state, slot = self._run_t0, self.state, False
        if t0 is None and self._slot_seen and state is not None:
            seen = self._last_sign(state)
            if self._slot_seen == seen:
                t0, slot = self._slot_start(seen), True  # a Qt slot (_sample_slot)
        if t0 is None or now - t0 < self.threshold - self.poll:
            return False
        return now >= self._due - self.poll / 2.0 or (
            slot and now - t0 > self.threshold and self._looked < t0 + self.threshold
            and self.current is None)

    def _late_look(self, now: float, frame: Any) -> None:
        """A late tick (loop thread): note what runs now, but do not date it.

        The tick is late after a C call, Qt's idle wait, or the OS keeping the
        loop thread off the CPU; which one is unknown, so a run first seen now
        may have begun before the gap (a C call in it) and the thread dates it.
        But whatever runs *later* and is not this began after now (a busy
        machine makes most ticks late: without this, a run first seen by the
        thread was dated back to the last tick on time, tens of ms before it
        began).  And the loop seen iterating is alive now.
        """
        state = self.state
        run_code = state.run_code
        if run_code is not None:
            found = running_handle(frame, run_code)
            if found is BETWEEN_RUNS:
                self._alive = max(self._alive, now)
                found = None
        else:
            found = state.cur
        began_by = self._began_by(now, frame)
        _seen_at, then, before = self._late_seen
        if then is found and found is not None:
            began_by = min(began_by, before)  # (seen at an earlier late tick too)
        self._late_seen = (now, found, began_by)
        if found is not None and found is state.cur and self._n == state.n:
            # The run already dated, still going: seen at two looks, so time its end
            # (a busy machine makes most ticks late: otherwise a run seen only by
            # them has no end, and a stall no look saw in time could not be
            # recorded after it), and sample it like an on-time tick.
            if state.armed == state.n and state.end_watch is not None:
                state.end_watch.arm(found, state.n)
            self._sample_long_run(now, frame)
        elif found is None and self.qt:
            seen = self._last_sign(state)
            if seen < now:  # (not at a slot's entry)
                self._sample_slot(now, seen, frame, self._began_by(now, frame))

    def _hand_off(self) -> None:
        """Let the due watchdog thread look now, with the GIL free.

        Otherwise it would wait for the GIL while this thread, releasing it at
        every ``select``, keeps taking it back first.
        """
        done = self._done
        done.acquire(False)  # drop a release left over from a handoff that timed out
        self._handoff = True
        self._kick()
        if done.acquire(timeout=HANDOFF_S):
            self.handoffs += 1
        self._handoff = False

    def _kick(self) -> None:
        """Wake the thread now, however it waits.

        The timer only when the thread sleeps on it: a signal sent while it
        looks stays pending, and its next sleep would wake at once for nothing.
        (No call that lets the GIL go, such as ``sigtimedwait`` to take one off,
        may run while the collector is paused: the app ran its allocations
        with the collector off meanwhile, and a full collection that belonged
        in a stall did not happen.)"""
        timer = self._wake_timer
        if timer is not None and self._by_sign:
            timer.fire()
        try:
            self._wake.release()
        except RuntimeError:  # already woken
            pass

    def slow_callback(self, handle: Any, started: float, duration: float) -> None:
        # Loop thread, only for callbacks over the threshold.  Lets a GIL-holding
        # stall that the watchdog could only see afterwards still name its callback,
        # and one that no look saw in time be recorded after the fact.
        self._recent_slow.append((started, started + duration, handle))
        self._missed.append((started, started + duration, handle,
                             self._quiet_since(started + duration)))
        if self._by_sign and self._waiting:
            # Asleep till the loop could stall: record it now (_record_missed),
            # not at a look that may be seconds away.
            timer = self._wake_timer
            if timer is not None:
                timer.fire()
        for stall in list(self._unnamed):
            ended = stall.ended if stall.ended is not None else started + duration
            if stall.callback is None and started < ended and started + duration > stall.started:
                self._describe(stall, handle)
                try:
                    self._unnamed.remove(stall)
                except ValueError:
                    pass

    def _quiet_since(self, ended: float) -> float:
        """Loop thread, as a run over the threshold ends: the last time anything
        but that run is known to have run Python on this thread (``ended``: not
        known).  With ticks, the last tick: one is sent every poll and runs at the
        next bytecode boundary, so none since means no Python ran since (the run
        was in a C call, a garbage collection, or off the CPU).  With every run
        stamped, the last run's start (a nested loop's callbacks are stamped too).
        The heartbeat, either way (a nested Qt loop runs it)."""
        state = self.state
        if state is None or not (self.ticking or self.stamped):
            return ended
        if not self.ticking:
            return max(state.last_beat, state.t0)
        # (A tick kept waiting by the run may run between its end and this call.)
        tick = self._tick_t if self._tick_t <= ended else self._tick_before
        return max(state.last_beat, tick)

    def _name_from_recent(self, stall: Stall) -> None:
        end = stall.ended or time.perf_counter()
        for started, finished, handle in reversed(list(self._recent_slow)):
            if started < end and finished > stall.started:
                self._describe(stall, handle)
                return

    def _describe(self, stall: Stall, handle: Any) -> None:
        stall.source, stall.callback, task = stall_names(handle)
        if task is not None:
            stall.task = task

    def add_job(self, job: Callable[[float, float], Any]) -> None:
        """Run ``job(now, dated)`` every few ms: on each tick, or at the thread's looks."""
        self._jobs = [*self._jobs, job]

    def remove_job(self, job: Callable[[float, float], Any]) -> None:
        self._jobs = [j for j in self._jobs if j is not job]

    def _run_jobs(self, now: float, dated: float = 0.0) -> None:
        self._jobs_t = now
        for job in self._jobs:
            try:
                job(now, dated)
            except Exception:  # e.g. the loop was closed: that job is done
                self.remove_job(job)

    def _ticks_flowing(self, now: float) -> bool:
        return self.ticking and now - self._tick_t <= 2.0 * self.poll

    # -- the watchdog thread -----------------------------------------------
    def _run(self, stop: threading.Event | None = None) -> None:
        # While ticks flow, the thread sleeps until the loop's last sign of life
        # would turn into a stall (last seen + threshold): ~20 wakes a second
        # instead of ~200, each handed the GIL by a tick.  Without ticks it looks
        # every poll (see _next_wait).
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
        # With a table of its own, this thread must never run the finalizer of
        # an app object that owns a descriptor: the close would hit its table,
        # not the app's, and leak the app's.  Cyclic GC runs in whichever thread
        # allocates past the threshold, so it is paused while this thread runs
        # Python (when the app cannot allocate anyway: it is waiting for the
        # GIL); the collection is deferred to the app's next allocation, not lost.
        self._guard_gc = self._fd_keep is not None
        # Before faulthandler's C thread is started from here: it inherits the mask.
        block_process_signals()
        try:
            signum = self._wake_signal
            if signum is not None and not self._workers_only:
                # Blocked here (block_process_signals): taken by sigwait alone.
                self._wake_timer = _posix_timer.create(
                    _posix_timer.CLOCK_MONOTONIC, threading.get_native_id(), signum, 0.0)
                self.wake_timer = self._wake_timer is not None
                if self._wake_timer is None:
                    self.no_wake_timer = "timer_create failed"
            self._pause_gc()
            if self._fd_keep is not None:
                self.private_fds = private_fd_table(self._fd_keep)
                if not self.private_fds:
                    self.no_private_fds = _fdtable.missing() \
                        or "unshare(CLONE_FILES) was refused"
            self._guard_gc = self.private_fds
            if self.use_thread_times and self.state is not None:
                # Opened here, after the table: in this thread's own table.
                self._times_w = open_times(threading.get_native_id())
                self._times_l = open_times(self.state.native_id)
            self.thread_times = self._times_w is not None and self._times_l is not None
            self._cpu_clock = None
            if not self.use_thread_times:
                self.no_thread_times = "switched off (thread_times)"
            elif self.thread_times:
                self.no_thread_times = None
            else:
                self.no_thread_times = "no /proc/self/task/<tid>/schedstat" \
                    if reads_holding_gil() else "no pread in the C library"
                if self.state is not None:
                    # The loop thread's CPU clock alone still tells a C call
                    # from a busy machine (with ticks: see _gil_held).
                    try:
                        clock = time.pthread_getcpuclockid(self.state.thread_id)
                        time.clock_gettime(clock)
                        self._cpu_clock = clock
                    except (AttributeError, OSError):
                        self._cpu_clock = None
            self._ready.set()
            self._watch(poll, idle_wait, rearm_every, dump_after, stop or self._stop)
        finally:
            self._by_sign = False
            timer, self._wake_timer = self._wake_timer, None
            if timer is not None:
                timer.delete()  # (a signal it sent this thread dies with it)
            self._ready.set()
            for times in (self._times_w, self._times_l):
                if times is not None:
                    times.close()
            self._times_w = self._times_l = None
            self._resume_gc()

    def _gil_held(self, late: float, wait: float, since: float, before: _Times | None,
                  now_times: _Times | None) -> tuple[bool, float]:
        """Was this thread ``late`` because a C call on the loop thread held the GIL?

        Returns the verdict and how long the GIL was held (an estimate).  Three
        things make a look late, and only one is the GIL:

        * the OS kept this thread off the CPU (a busy machine): time on the run
          queue, read from ``schedstat`` (looptools.inapp._threadtimes);
        * the loop thread ran Python but was itself kept off the CPU while
          holding the GIL: a Python loop gives the GIL up within the switch
          interval of *running*, however long that takes on a busy machine;
        * a C call held the GIL: the loop thread burned CPU without running a
          single bytecode.  The ticks tell that directly — each one reads the
          loop thread's CPU clock, and a C call shows as CPU time between two
          ticks (``_burst``).  Without ticks, the loop thread's CPU time beyond
          what it could have used while this thread slept or queued is the C
          call's.
        """
        if late < self.gil_trigger:
            return False, 0.0
        queued = 0.0
        if before is not None and now_times is not None:
            queued = (now_times[1] - before[1]) + (now_times[0] - before[0])
            if late - queued < self.gil_trigger:
                return False, 0.0  # late because the OS kept us waiting for a CPU
        if self.ticking:
            # CPU the loop thread burned since the last tick that ran on it, and
            # since this thread last looked: a C call that kept both away,
            # however it ended (this thread usually gets the GIL at the first
            # bytecode after it, before the next tick can say so itself).  A C
            # call that released the GIL (zlib) let this thread look meanwhile.
            since_cpu = self._since_cpu()
            burst = self._burst[1] if self._burst[0] >= since else 0.0
            if now_times is not None:
                burst = max(burst, now_times[2] - since_cpu)
            elif self._cpu_clock is not None:
                burst = max(burst, time.clock_gettime(self._cpu_clock) - since_cpu)
            else:
                return True, late
            return burst >= self.gil_late * 0.5, burst
        if before is not None and now_times is not None:
            # The loop thread's CPU time while this thread was not asleep nor
            # queued, less one switch interval: time it ran without letting go.
            excess = (now_times[2] - before[2]) - wait - queued - sys.getswitchinterval()
            return excess >= self.gil_late * 0.5, max(0.0, excess)
        return True, late  # nothing to tell by: judge by lateness alone

    def _note_hold(self, now: float, loop_cpu: float | None) -> None:
        """(This thread, at a look not late enough to be judged a wait for the GIL.)
        The loop thread burned a hold's worth of CPU (``loop_cpu``: its clock now)
        since it last ran Python that we know of: a C call, which returned as this
        look began (the look got the GIL before the tick after it could run), made
        from the frame this look samples.  Noted as a hold that sample stands for
        (_holds), as a tick's is."""
        if self.ticking and loop_cpu is not None and self._tick_t > 0.0 \
                and loop_cpu - max(self._tick_cpu, self._look_began_cpu) >= self.gil_late * 0.5:
            self._bursts.append((self._tick_t, now))

    def _since_cpu(self) -> float:
        """The loop thread's CPU clock when it last ran Python that we know of: at
        the last tick, or at this thread's last look."""
        return max(self._tick_cpu, self._look_cpu)

    def _stopped(self, now: float, expected: float, previous: float, late: float,
                 before: _Times | None, now_times: _Times | None) -> None:
        """Note the span in which the whole process was stopped, if it just was.

        SIGSTOP, a debugger, a container pause, or the OS or hypervisor not
        running the process at all: no thread of it is queued, none runs.  This
        thread then wakes late by more than anything explains — its own time
        queued or running, the loop thread's CPU since it last ran Python — and
        did not wake meanwhile (a thread waiting for the GIL wakes every switch
        interval to ask for it), and the loop thread ran no Python either (no
        tick since this thread was due).  The stop began when both were last
        seen running: the loop thread's last tick before it (a poll after it),
        or this thread's last look, whichever is later; it ended when this
        thread woke, less what it did since.  Only with ticks, which witness
        the loop thread.  Not called after a held GIL.
        """
        if before is None or now_times is None or not self.ticking:
            return
        if late < self.gil_trigger:
            return
        explained = (now_times[1] - before[1]) + (now_times[0] - before[0]) \
            + max(0.0, now_times[2] - self._since_cpu())
        blind = late - explained
        if blind < self.gil_trigger \
                or (now_times[4] - before[4]) * sys.getswitchinterval() * 1.5 >= blind:
            return
        last_tick = self._tick_t
        if last_tick > expected + self.poll:  # (one due then may hand this thread the GIL)
            # The loop thread ran Python after this thread was due: only after
            # the stop, the first tick late across it.
            gap_from, gap_to = self._tick_gap
            if not gap_from <= expected < gap_to:
                return
            last_tick = gap_from
        self._stops.append((max(previous, last_tick + self.poll), now - explained))
        self.stops += 1

    def _times_before(self) -> _Times | None:
        w, lt = self._times_w, self._times_l
        if w is None or lt is None:
            return None
        try:
            w_cpu, w_queued, w_slices = w.read_all()
            return (w_cpu, w_queued, *lt.read(), float(w_slices))
        except (OSError, ValueError, IndexError):
            return None

    def _pause_gc(self) -> None:
        if self._guard_gc and gc.isenabled():
            gc.disable()
            self._gc_paused = True

    def _resume_gc(self) -> None:
        if self._gc_paused:
            self._gc_paused = False
            gc.enable()

    def _watch(self, poll: float, idle_wait: float, rearm_every: float,
               dump_after: float, stop: threading.Event) -> None:
        # ``stop``: this thread's own (attach and serve_workers give each thread a new
        # one), so that a thread told to stop never runs on beside its successor.
        wait = poll
        expected = time.perf_counter() + wait
        previous = time.perf_counter()
        before = self._times_before()
        if before is not None:
            self._look_cpu = self._look_began_cpu = before[2]
            self._rq_marks.append((time.perf_counter(), before[3] + self._held_queued))
        while True:
            self._due = expected - self._early
            self._waiting = True
            timer = self._wake_timer
            if self._by_sign and timer is not None and self._sleep(timer, stop):
                expected = self._due  # (put back by the ticks meanwhile)
            else:
                self._resume_gc()
                # Stamped runs: until it is due, counted from the look's start.  The
                # look's own time, and a wait for the GIL back within it
                # (faulthandler's re-arm releases it), are part of the wait, not
                # added to it: else the looks sampling a long run came too far
                # apart to see a stall a little over the threshold (and with ticks
                # they are right as they are: a tick hands the due look the GIL).
                self._wake.acquire(timeout=max(0.001, expected - time.perf_counter())
                                   if self.stamped else wait)
            self._waiting = False
            if stop.is_set():
                return
            self._pause_gc()
            now = time.perf_counter()
            late = now - expected
            self.looks += 1
            # Held the GIL from here to the end of the look (but in the rare calls
            # that release it): time on a run queue till then kept the loop from it.
            queued_from = self._own_queue()
            try:
                dumper = self._dumper
                now_times = self._times_before() if before is not None else None
                delay = None
                if now_times is not None:
                    delay = now_times[3] + self._held_queued
                    self._rq_marks.append((now, delay))
                loop_cpu = None
                if self._loop_clock is not None:
                    # (Read after ``now``: a reading is never older than it says.)
                    loop_cpu = time.clock_gettime(self._loop_clock)
                    self._cpu_refs.append((now, loop_cpu, delay))
                elif now_times is not None:
                    loop_cpu = now_times[2]  # (exact: the thread waits for the GIL)
                elif self._cpu_clock is not None and self.ticking:
                    loop_cpu = time.clock_gettime(self._cpu_clock)
                # Late by more than the GIL's switch interval allows: why?
                gil, held = self._gil_held(late, wait, previous, before, now_times) \
                    if self.state is not None else (False, 0.0)
                if gil:
                    self.gil_waits += 1
                elif self.state is not None:
                    self._stopped(now, expected, previous, late, before, now_times)
                    self._note_hold(now, loop_cpu)
                if loop_cpu is not None:
                    self._look_began_cpu = loop_cpu
                # Look first: re-arming faulthandler waits for its old thread with
                # the GIL released, and the loop thread would run on meanwhile.
                # Never wait for a tick that is looking this instant: it let the GIL
                # go in the middle (a heartbeat probe's send), and this thread, once
                # it had the lock, waited for the GIL holding it, so the ticks skipped
                # their looks meanwhile: a 63 ms spin went unsampled for its last
                # 12 ms and could not be recorded after it (_record_missed).  The
                # tick looks now; this look is not needed.  Nor while a tick that has
                # not looked yet is under way (the GIL switched to us in the middle
                # of it; unless it hands us the look): it knows when it was due,
                # which bounds the start of a run it finds (_began_by), and a look
                # of ours before it dated a run only by when it ran (a 77 ms step
                # read 51 ms beside two burners).
                if not (self._in_tick and not self._handoff) and self._look.acquire(False):
                    try:
                        self._check(now, max(previous, self._last_look), late, gil, held)
                        self._last_look = now
                        if not self._ticks_flowing(now):
                            self._run_jobs(now)
                    finally:
                        self._look.release()
                if dumper is None and self._dump is not None \
                        and self.dump_kind == "timer-thread" \
                        and now - self._armed_at >= rearm_every:
                    with self._arm:
                        if self._dump is not None:
                            faulthandler.dump_traceback_later(dump_after, file=self._dump)
                            self._armed_at = now
                # A dump from a hiccup that held no GIL against us (a C call that
                # released it, the loop thread off the CPU): drop it so it cannot
                # be mistaken for the stack of a later stall.
                if self._dump is not None and not gil and self._dump_written():
                    _clear_dump(self._dump.fileno())
                wait = self._next_wait(now, poll, idle_wait)
                workers = self._workers
                if workers is not None:  # worker-thread loops: not under _look
                    workers.look(now)
                    wait = min(wait, workers.next_wait(now, poll))
                    self._by_sign = False
                elif self._by_sign and dumper is None and self._dump is not None \
                        and self.dump_kind == "timer-thread":
                    self._by_sign = False  # (faulthandler's timer is re-armed by looks)
                before = self._times_before()
                if before is not None:
                    if queued_from is not None:
                        self._held_queued += max(0.0, before[1] - queued_from)
                    self._rq_marks.append((time.perf_counter(), before[3] + self._held_queued))
                    self._look_cpu = before[2]
                elif self._cpu_clock is not None:
                    self._look_cpu = time.clock_gettime(self._cpu_clock)
            except Exception as exc:
                self._stop_ticks()
                if self.hub is not None:
                    self.hub.disable(self, exc, "watchdog")
                # Others' jobs (asyncio probes for the heartbeat) go on without us.
                while self._jobs:
                    self._resume_gc()
                    if stop.wait(0.01):
                        return
                    self._pause_gc()
                    self._run_jobs(time.perf_counter())
                return
            finally:
                if self._handoff:
                    try:
                        self._done.release()
                    except RuntimeError:
                        pass
            self._wake.acquire(False)  # a wake-up that came while we looked: spent
            previous = now
            expected = now + wait

    def _sleep(self, timer: _posix_timer.ThreadTimer, stop: threading.Event) -> bool:
        """Wait for the wake-up timer, which the ticks put back while the loop lives
        (_put_back): wake when the loop could be stalled, or when woken (a hand-off,
        a stop, a stall to record), not about once a threshold to find it alive.

        On plain asyncio those routine looks cost a busy loop 1.5-3 %, more than
        their own time: each is a thread that wakes and waits for the GIL while
        the loop drops and retakes it at every ``select``, then holds it
        (docs/benchmarks.md, "What any thread costs plain asyncio").  A wake-up
        that finds the deadline put back sleeps on without looking.  Returns
        False if the timer could not be armed (the thread waits as without it).

        The collector stays paused (_pause_gc) but in the wait itself: nothing
        this thread allocates may set off a collection here (``sigwait`` returns
        a small int; ``sigtimedwait``'s ``siginfo`` is a tracked object: a full
        collection of the app's heap ran on this thread, split a stall in two,
        and ran the app's finalizers where its descriptors are not)."""
        signals = {timer.signum}
        if not timer.arm_at(self._due):
            return False
        while True:
            self._resume_gc()
            try:
                signal.sigwait(signals)
            except (OSError, ValueError) as exc:
                # Never again (each wait would fail at once): wait as without it.
                self._wake_timer, self.wake_timer = None, False
                self.no_wake_timer = f"sigwait failed ({type(exc).__name__}: {exc})"
                timer.delete()
                return False
            finally:
                self._pause_gc()
            if stop.is_set() or self._handoff or self._missed \
                    or time.perf_counter() >= self._due - 0.0001:
                return True
            self.sleeps_on += 1

    def _next_wait(self, now: float, poll: float, idle_wait: float) -> float:
        self._by_sign = False
        state = self.state
        if state is None or not state.running:
            return idle_wait
        self._early = 0.0
        stamped = self.stamped and not self.ticking
        if self.current is not None or not (stamped or self._ticks_flowing(now)):
            # A run is dated by the first look that sees it: without ticks, this
            # thread must look every poll while the loop runs.
            return poll
        # Ticks date the runs, or every run is stamped: look when the last sign of
        # life would turn into a stall (the next tick or heartbeat hands this
        # thread the GIL then; with the wake-up timer, the ticks put it back while
        # the loop lives, _put_back).
        seen = self._last_sign(state)
        wait = min(max(poll, seen + self.threshold - now), self.threshold)
        self._by_sign = not stamped and self._wake_timer is not None
        if stamped:
            # Every half threshold at least, and from halfway through a run in
            # progress every poll, as a tick would: a run that becomes a stall is
            # sampled while it lasts (_sample_long_run), the stall's votes.  A
            # stall first seen as it ends (a look that waited for the GIL) was
            # otherwise named by one sample of its run's last lines; one that
            # ends before its look gets the GIL is recorded from them
            # (_record_missed).  Only runs that long are looked at every poll.
            half = self.threshold / 2.0
            t0 = self._run_t0
            if t0 is None and self._slot_seen == seen:
                t0 = self._slot_start(seen)  # a Qt slot in progress (_sample_slot)
            if t0 is not None:
                return min(wait, max(poll, t0 + half - now)) if now < t0 + half else poll
            # No run in progress: the loop lives, so its heartbeat hands the thread
            # the GIL when the look is due (without the convoy of a thread that
            # wakes by itself into a busy loop).  The thread wakes by itself a
            # heartbeat later, when none came: the loop is stalled.
            self._early = self._beat_every + 0.001
            return max(poll, min(wait, half) - self._early) + self._early
        return wait

    def _observe(self, now: float, dated: float, frame: Any = None) -> tuple[float, Any]:
        """When the loop thread was last seen back in the loop, and the handle running.

        A run first seen at this look is dated ``dated``, or exactly if the
        precise hot path stamped it, and never before another sign of life.
        ``frame`` is the loop thread's innermost frame when a tick looks (on
        that thread); without a hook on callbacks the running handle is found
        from it (see looptools.inapp.state).
        """
        state = self.state
        run_code = state.run_code
        if run_code is not None:
            if frame is None:
                frame = sys._current_frames().get(state.thread_id)
            found = running_handle(frame, run_code)
            frame = None
            if found is BETWEEN_RUNS:
                # The loop iterates, in no callback: alive now (the hook's run count
                # told the same when the look fell between two callbacks).
                found = None
                self._alive = max(self._alive, now)
            if found is not state.cur:
                state.cur = found
                state.n += 1
            elif found is not None and state.armed == state.n \
                    and state.end_watch is not None:
                # The same run at two looks: time its end exactly.
                state.end_watch.arm(found, state.n)
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
                    seen_at, then, began_by = self._late_seen
                    if then is cur:
                        # A late tick saw it: begun before that tick was due.  (Else
                        # the next tick on time dated it, up to two polls late.)
                        dated = min(dated, began_by)
                    started = max(dated, state.last_beat, state.last_end, state.idle_seen)
                    if seen_at > started and then is not cur:
                        started = min(seen_at, now)  # not running at that late tick
                self._alive = self._run_t0 = started
                if state.armed != n:
                    state.armed_t0 = started
                    state.armed = n
                if state.end_watch is not None and now - started > self.poll:
                    # Already long (seen late, after a C call held the GIL).
                    state.end_watch.arm(cur, n)
            elif self.qt and state.t0_n == n:
                # Every run timed (the precise hot path, while the dispatcher
                # detector watches): the last one ended at last_end.  Qt's loop
                # may have gone on into C++ since (a paint, a layout, a C++
                # slot), stalled, with no run in progress: it is not alive now.
                # (Taken for alive here, a repaint that began 5 ms after the
                # last run was dated from this look, 10-16 ms into it, and 9 of
                # 25 repaints of 54-76 ms on qasync were not reported.)
                self._run_t0 = None
            elif not self.stamped or self.ticking:
                self._alive = now
                self._run_t0 = None
            else:
                # Every run is stamped: the loop was last seen at the last one's end
                # (or heartbeat), not now; a Qt slot may have run since, stalled.
                self._run_t0 = None
        elif cur is None:
            self._run_t0 = None
        return self._last_sign(state), cur

    def _last_sign(self, state: Any) -> float:
        """The loop's last sign of life: when it was last seen back in the loop."""
        return max(self._alive, state.last_beat, state.last_end, state.idle_seen)

    def _end_of(self, stall: Stall) -> float | None:
        """The first sign of life after ``stall`` began: when it ended."""
        state = self.state
        if state is None:
            return None
        after = [t for t in (state.last_end, state.last_beat, state.idle_seen, self._alive)
                 if t > stall.started + 1e-6]
        return min(after) if after else None

    def _check(self, now: float, previous: float, late: float, gil: bool,
               held: float) -> None:
        self._looked = now
        self._check_now(now, previous, late, gil, held)
        if self._missed:
            self._record_missed()

    def _sample_long_run(self, now: float, frame: Any = None) -> None:
        """Keep the loop thread's stack (from ``frame``, else sampled) when the run in
        progress has gone on past half the threshold and no stall is begun: if no
        look sees it in time, these are the votes of the stall recorded after it."""
        t0, state, samples = self._run_t0, self.state, self._run_samples
        if t0 is None or state is None or state.cur is None or self.current is not None \
                or now - t0 < self.threshold / 2.0:
            return
        if samples and samples[-1][1] == self._n and now - samples[-1][0] < self.poll / 2.0:
            return  # (a tick and a look at once: one sample, one poll's worth)
        stack = _without_tick(stack_of(frame)) if frame is not None else _sample(state.thread_id)
        if stack:
            samples.append((now, self._n, id(state.cur), stack))

    def _sample_slot(self, now: float, seen: float, frame: Any = None,
                     began_by: float | None = None, sample: bool = True) -> float:
        """Keep the loop thread's stack (from ``frame``, else sampled) when it runs
        Python in a slot Qt's loop called (no asyncio run in progress: an app's own
        slot), half the threshold after the loop's last sign of life ``seen``, and
        no stall is begun.  Such a slot has no run of its own to sample (no hook
        sees it), so these are the votes of the stall begun from ``seen``: without
        them a slot stall first seen as it ended was named by what ran after it
        (a 48 ms slot beside a growing heap on qasync, helper 46).

        ``began_by``, given while ticks flow, is the latest the slot found can
        have begun (see _slot_due); the earliest such bound is kept.  Python
        found in a slot of ours (the heartbeat's) is the loop alive now.
        Not ``sample``: only that bound.  Returns the loop's last sign of life,
        so updated."""
        loop_frame, state, current = self._loop_frame, self.state, self.current
        half = now - seen >= self.threshold / 2.0
        # (Every run stamped: this thread looks every half threshold, so it notes a
        # slot in progress at any age, and looks every poll from halfway through it:
        # see _next_wait.)  A stall begun is over if the loop has shown life since
        # (the thread's next look ends it): without this, a tick that found the next
        # slot before that look did not date it, and a later one dated it ~10 ms
        # late (the timer's next slot right after a slot stall).
        if (current is not None and seen <= current.started + 1e-6) \
                or loop_frame is None or state is None \
                or not (began_by is not None
                        or (sample and (half or (self.stamped and not self.ticking)))):
            return seen
        if began_by is not None and not (sample and half) and self._slot_seen == seen \
                and seen in (self._slot_due[0], self._entered):
            return seen  # (dated already, no sample due: a tick's, not walked again)
        if frame is None:
            frame = sys._current_frames().get(state.thread_id)
        inner = _slot_under(frame, loop_frame)
        if inner is None:
            return seen  # the loop at its wait, or not under the loop: no slot runs
        if inner.f_code is _shield.SLOT_CODE:
            # Our heartbeat (or another slot of ours): Qt's loop runs it, alive.
            # Else an app's slot right after it was dated from in it (qasync,
            # QtAsyncio and Qt alike: up to 3.6 ms before the slot began).
            self._alive = max(self._alive, now)
            return self._last_sign(state)
        if began_by is not None and seen != self._entered:
            # (A slot whose entry a tick saw is dated exactly, from that tick.)
            key, due = self._slot_due
            if key != seen or began_by < due:
                self._slot_due = (seen, began_by)
        self._slot_seen = seen
        samples = self._slot_samples
        if not sample or not half:
            return seen
        # A tick and a look at once: one sample, one poll's worth, the later one (a
        # slot is a stall only if sampled past the threshold: see _slot_missed).
        again = bool(samples) and samples[-1][1] == seen \
            and now - samples[-1][0] < self.poll / 2.0
        if again and now - seen <= self.threshold:
            return seen
        outer, at = loop_frame, 0
        while outer is not None and at <= 256:
            outer, at = outer.f_back, at + 1
        self._slot_at = at
        stack = _without_tick(stack_of(frame))
        if stack:
            if again:
                samples.pop()
            samples.append((now, seen, stack))
        return seen

    def _in_loop_slot(self, thread_id: int | None) -> bool:
        """The loop thread runs Python in a slot that Qt's loop called (the frame Qt's
        loop runs under, as of the last heartbeat, is below it)."""
        loop_frame = self._loop_frame
        if loop_frame is None or thread_id is None:
            return False
        return _slot_under(sys._current_frames().get(thread_id), loop_frame) is not None

    def _slot_start(self, seen: float) -> float:
        """When the Qt slot running since the sign of life ``seen`` is dated: the
        latest it can have begun, when a tick or a look while ticks flow found it
        (_slot_due), else ``seen``.  A lower bound of its length either way."""
        key, due = self._slot_due
        return max(seen, due) if key == seen else seen

    def _slot_missed(self, since: float) -> None:
        """The Qt slot seen running since the sign of life ``since`` (_sample_slot)
        has ended: the loop has shown life since, and no stall was begun.  If that
        was over the threshold, and the ticks and looks sampled the loop thread in
        the slot from soon after ``since`` to within two look periods of the end,
        it is a stall no look saw in time (as _record_missed, for a slot, which no
        hook reports when it ends): recorded, with those samples as its votes, if
        the last of them is over the threshold after ``since``.  The end is the
        first sign of life after ``since`` (within two look periods of the last
        sample: never long after the slot)."""
        self._slot_seen = 0.0
        state = self.state
        began = self._slot_start(since)
        stall = Stall(started=began, detected=None, source="qt",
                      idle_frame=state.idle_frame if state is not None else None)
        ended = self._end_of(stall)
        if ended is None or ended - began <= self.threshold:
            return
        if any(other.started <= ended and (other.ended is None or other.ended >= since)
               for other in self._recorded):
            return  # begun live, or recorded already
        during = [(when, frames) for when, key, frames in list(self._slot_samples)
                  if key == since and when <= ended]
        if not during or during[0][0] - since > self.threshold / 2.0 + 3 * self.poll \
                or ended - during[-1][0] > self._sample_gap():
            return  # not seen in it all along
        if during[-1][0] - began <= self.threshold:
            # Its end is only known to lie between the last sample and that sign of
            # life (no hook times a slot): a stall only if the slot was seen running
            # past the threshold (seen: a 45.7 ms slot beside two burners read 51 ms).
            return
        self._record_after(stall, during, ended, slot_at=self._slot_at)

    def _sample_gap(self) -> float:
        """The longest silence between a run's samples (or its last one and its end)
        that still counts as seen all along: two looks (sampled by the thread
        without ticks, each look also waited for the GIL up to a switch interval)."""
        return 2 * self.poll + (0.0 if self.ticking or not self.stamped
                                else sys.getswitchinterval())

    def _holds(self) -> dict[float, float]:
        """The C calls the ticks saw lately (``_bursts``), as the time of the tick
        after each to when it began as far as its span tells: the tick before it,
        later by the garbage collector's time in between (a collection set off by
        a line is no call of that line's, see _vote_dump)."""
        collections = self._collections
        out = {}
        for before, after in list(self._bursts):
            gc_s = collections.within(before, after).seconds if collections is not None else 0.0
            out[after] = before + gc_s
        return out

    def _vote_samples(self, stall: Stall, samples: list[tuple[float, list[Frame]]]) -> bool:
        """Count ``samples`` (time, stack) taken in ``stall``, each for what it stands
        for (_weights); True if one stands for a hold of the GIL a tick saw end."""
        holds = self._holds()
        for (_when, frames), weight in zip(samples, _weights(samples, self.poll, holds),
                                           strict=True):
            stall.vote(frames, "sampled", weight)
        return any(when in holds for when, _frames in samples)

    def _drop_dump(self) -> None:
        """Empty the dump file unread (its dumps stand for a hold counted already)."""
        if self._dump is not None and self._dump_written():
            with contextlib.suppress(OSError, ValueError):
                _clear_dump(self._dump.fileno())

    def _record_after(self, stall: Stall, during: list[tuple[float, list[Frame]]],
                      ended: float, slot_at: int | None = None) -> None:
        """Record ``stall``, which no look saw while it lasted and which ended at
        ``ended``, with the samples (time, stack) taken in it as its votes."""
        if self._vote_samples(stall, during):
            # A tick's sample stands for the hold, which the dumps taken in it
            # would count again (a 45 ms C call after 40 ms of Python weighed as
            # 90 ms); its line is theirs, the call's.
            self._drop_dump()
        elif self._dump_written():
            # Part of it was one long C call (or a collection): the loop thread's
            # dumps taken in its callback vote too, for the time they stand for
            # (else 40 ms of Python sampled before a 100 ms C call, and one sample
            # as the call returned, named the Python).  Not a sign that the GIL
            # was held: a call that releases it and burns CPU is dumped too.
            marks = [stall.started, *(when for when, _frames in during), ended]
            held = max(later - earlier for earlier, later in itertools.pairwise(marks))
            self._vote_dump(stall, held, like=during[0][1], slot_at=slot_at)
        self._recorded.append(stall)
        self.after_the_fact += 1
        self._finish(stall, ended, already_current=False)

    def _record_missed(self) -> None:
        """Record the stalls no look saw while they lasted (this thread).

        A look can come too late for a stall a little over the threshold: it waits
        for the GIL up to a switch interval, and the run is dated by the first look
        or tick that saw it, up to one poll after it began.  The callback's end
        still tells: the loop thread reports each callback over the threshold
        (``slow_callback``: the hot path's exact times, or the armed run's end).
        One that overlaps no stall begun or recorded is a stall missed live when
        the loop thread was seen in that one run all along: sampled in it (the
        samples of a run past half the threshold, ``_sample_long_run``) from soon
        after it began to within two polls of its end (or to its end with no
        other Python run on the loop thread since the last sample: no tick, no
        heartbeat, no stamped run, ``_quiet_since``), and never seen elsewhere
        in between.  A callback that ran a loop of its own (a nested
        ``run_until_complete``) was long, but its loop lived: it has samples of
        other runs, or a gap.  It is recorded with those samples as its votes and
        judged like any other (``_finish``: the threshold, the machine's time).
        Seen: 1 in ~100 pure-Python stalls of 60 ms missed at a 50 ms threshold on
        an idle machine.
        """
        state = self.state
        while self._missed:
            try:
                started, ended, handle, quiet_since = self._missed.popleft()
            except IndexError:
                return
            current = self.current
            if any(stall.started <= ended and (stall.ended is None or stall.ended >= started)
                   for stall in [*self._recorded, *([current] if current else [])]):
                continue  # that stall, or judged with it
            during = [sample for sample in list(self._run_samples)
                      if started <= sample[0] <= ended]
            if not during or any(ident != id(handle) or n != during[0][1]
                                 for _when, n, ident, _stack in during):
                continue
            gap = self._sample_gap()
            # A longer silence at its end is no sign of another run when nothing
            # else ran Python on the loop thread after the last sample (seen: a
            # garbage collection of a large heap holding the GIL for the last
            # 17-28 ms of a 57 ms run, no tick or look in it).  Nor at its start,
            # when no tick ran from its start to its first sample: a C call held
            # the GIL (a 105 ms one, then 15 ms of Python, beside two burners: the
            # look after the call dated the run by the tick due, 96 ms before,
            # and the next came after its end; ~3 in 90 such 116-122 ms callbacks
            # went unreported).
            unseen_start = during[0][0] - started > self.threshold / 2.0 + 3 * self.poll \
                and not self._no_python(started, during[0][0])
            if unseen_start or (ended - during[-1][0] > gap and quiet_since > during[-1][0]):
                continue  # not seen in it all along
            stall = Stall(started=started, detected=None, source="loop",
                          idle_frame=state.idle_frame if state is not None else None)
            self._describe(stall, handle)
            self._record_after(stall, [(when, stack) for when, _n, _ident, stack in during],
                               ended)

    def _no_python(self, since: float, until: float) -> bool:
        """Did the loop thread run no Python from about ``since`` to ``until``?  A tick
        runs at its next bytecode boundary, every poll: one late tick spanning that
        time says the thread was in one C call, a collection, or off the CPU — not
        in a loop of its own, which runs Python (its waits let the ticks in)."""
        return self.ticking and any(
            before <= since + self.poll and late >= until - self.poll
            for before, late in list(self._tick_gaps))

    def _check_now(self, now: float, previous: float, late: float, gil: bool,
                   held: float) -> None:
        state = self.state
        if state is None:
            return
        current = self.current
        if not state.running:
            if current is not None:
                self._finish(current, self._end_of(current))
            return
        # A run first seen now began after the previous look.  Date it now, the
        # latest it can have begun, when looks are on time; if this thread was
        # kept from looking by a held GIL, the run most likely held it: date it
        # at the previous look; if the OS woke us late, split the difference.
        # With ticks, the latest it can have begun is known either way: before
        # the first tick due after the last one ran (_began_by: a tick due before
        # a callback runs before it).  Dated at the previous look, a 45 ms C call
        # that held the GIL read up to a poll longer than it was.
        tick_due = min(now, self._tick_t + self.poll) if self.ticking else None
        if tick_due is not None:
            dated = max(previous, tick_due)
            if gil and held > self.threshold:
                # The loop thread burned more than a stall's worth of CPU with no
                # tick since the last one ran: a C call (or a collection) held the
                # GIL, and the GIL comes to us at the first bytecode after it, in
                # the run that made it.  That run, if first seen now, began when the
                # hold did, as far as its CPU time tells (or after a sign of life
                # since, _observe): one stall, begun now.  Dated by the tick due, it
                # read under the threshold, the hold was recorded after the fact as
                # a stall of its own, and the run became a second one a look later:
                # a 105 ms step, 103 ms of it a full collection, was reported as
                # 0.0925 s + 105 ms and 0.1026 s + 105 ms.  (Only over the
                # threshold: the CPU time may include a moment before the run, and
                # a 45 ms call so dated could read over a 50 ms threshold.)
                dated = max(previous, min(dated, now - held))
        elif gil:
            dated = previous
        elif now - previous > 2.0 * self.poll and not self.stamped:
            dated = (previous + now) / 2.0
        else:
            # (Stamped runs are dated exactly; one that began under the lean hook,
            # just before the stamps, the latest it can have begun.)
            dated = now
        seen, cur = self._observe(now, dated)
        hold = max(held, late) if gil else 0.0  # (Stall.gil_s)
        if current is None and self._slot_seen and seen > self._slot_seen:
            self._slot_missed(self._slot_seen)
        if current is not None and gil:
            end = self._end_of(current)
            if end is not None and end <= now - 0.5 * held:
                # The stall had ended (the loop came back) before the C call that
                # kept us from looking began: that hold is a stall of its own
                # (e.g. the next task step), not part of this one, whose culprit
                # it must not take.
                self._finish(current, end)
                current = None
            else:
                # Part of this stall held the GIL: the loop thread's own dump
                # from then stands for every look this thread could not make.
                current.gil_held = True
                current.gil_s += hold
                self._vote_dump(current, held)
        if current is None and cur is not None and not gil:
            self._sample_long_run(now)
        elif current is None and cur is None and self.qt and (self.ticking or not gil):
            # While ticks flow, a slot found now began before the tick due after
            # the last one ran (one due before it would have run at its entry),
            # after a hold of the GIL too (not sampled then: its stack is the
            # line after the C call).  (Not after this thread's previous look, as
            # a run: that look may have seen this slot, without the GIL to sample.)
            seen = self._sample_slot(now, seen, began_by=tick_due, sample=not gil)
        if current is not None:
            if seen > current.started + 1e-6:
                self._finish(current, self._end_of(current))
                return
            if self.qt and not gil and current.samples \
                    and current.idle_samples >= current.samples \
                    and self._in_loop_slot(state.thread_id):
                # All of it in Qt's C++ so far, and Python runs now in a slot Qt's
                # loop called: the loop came back after this thread's last look.
                # (The tick at the slot's entry says so, unless this thread held
                # the look then: the one sample taken in the slot after a 116 ms
                # repaint, beside two burners, was its only vote and named it.)
                self._finish(current, max(previous, current.started))
                return
            if current.detected is None and not gil:
                # Still going on, now that the GIL is back: seen while it lasts.
                current.detected = now
            if current.samples < _MAX_SAMPLES:
                # Weighted as the run's samples before the stall was begun: a look
                # after a gap in the function of the one before stands for the gap.
                # At one vote a look, a busy machine's sparse looks in a 300 ms
                # parse (every 10-15 ms: each waits for the GIL) were outweighed by
                # the 90 ms spin before it, sampled every poll until the stall began.
                # (After a hold of the GIL the dumps stand for the gap.)
                stack = _sample(state.thread_id)
                weight, current.last_look = _weight(now, stack, current.last_look,
                                                    self.poll)
                current.vote(stack, weight=1 if gil else weight)
            return
        if cur is None and state.conservative:
            # A loop of unknown kind with no callback running: idle, as far as
            # anyone can tell (its wait for events is not recognised).
            state.idle_seen = now
            return
        if cur is None and self.qt:
            entry = self._entry_skipped
            if entry > seen:
                self._back_at_entry(now, seen, entry)
                return
            if self._in_tick and not self._handoff:
                # A tick began on the loop thread since this look did (the GIL
                # switched to it): at a slot's entry, it says so as it finds the
                # look held (_entry_skipped), and the next look reads it.
                return
        # A Qt slot found running is dated when it was found to have begun by.
        started = self._slot_start(seen) if cur is None and self.qt else seen
        if cur is None and self.qt and not gil and now - started > self.threshold \
                and self._slot_seen != seen:
            # No Python under Qt's loop since then: Qt's C++ (or its wait).
            started = self._in_qt_since(now, seen)
        if now - started > self.threshold:
            check = state.idle_check
            if check is not None and cur is None and not gil:
                frame = sys._current_frames().get(state.thread_id)
                if check(frame):
                    state.idle_seen = now  # waiting for I/O: alive, not stalled
                    return
            self._begin(started, now, gil, cur, held, since=seen, hold=hold)
        elif gil and held > self.threshold and seen > previous \
                and (cur is None or self._came_back(previous + held * 0.9)):
            # A GIL-holding stall that began after our last look and had already
            # ended when we could run again (the loop came back and went on):
            # record it after the fact.  It held the GIL for ``held`` from some
            # time after ``previous``, so it ended at the first sign of life
            # that late.  (Not when a run found in progress is the one that held
            # it, with no sign of the loop since: its stall is that run's, see the
            # dating above.)
            stall = Stall(started=previous, detected=None, gil_held=True, gil_s=hold,
                          source="loop")
            self._recorded.append(stall)
            self._vote_dump(stall, held)
            if not stall.samples:
                stall.vote(_sample(state.thread_id), "after")
            signs = [t for t in (state.last_end, state.last_beat, state.idle_seen, self._alive)
                     if t >= previous + held * 0.9]
            self._finish(stall, min(signs) if signs else now, already_current=False)

    def _back_at_entry(self, now: float, seen: float, entry: float) -> None:
        """A tick ran at the entry of a slot Qt's loop called, at ``entry``, while this
        look held the lock, so it could not mark the loop back (_tick): the loop
        came back then, and what runs now is that slot, or one after it.

        Without this, the look found Python in that slot and dated it from the
        last sign of life before: a 55 ms repaint that no look saw in time (this
        thread waited for a CPU) became a 57 ms stall named by the slot connected
        after it, dated 2.3 ms before the repaint could begin
        (tests/test_qt_cpp_stalls.py: 1 of 26 runs of qasync on PySide6 beside two
        burners; 1 of 6 Qt-only PySide6 runs beside five)."""
        self._alive = self._entered = max(self._alive, entry)  # (so read once)
        if self._slot_seen == seen:
            self._slot_seen = 0.0  # (the slot sampled in it began at entry)

    def _in_qt_since(self, now: float, seen: float) -> float:
        """The latest a Qt loop found in C++ at ``now`` (no Python running under
        its loop: a paint, a layout, a C++ slot, or its idle wait) can have begun
        to be, its last sign of life at ``seen``.

        A stall in C++ has no run and no slot to date it, and began some time
        after ``seen``: the loop may have waited idle first.  Dated from ``seen``,
        it read up to a heartbeat long (a repaint of 43 ms that began 7.7 ms
        after the last run was reported as a 51.4 ms stall; FeelUOwn's
        start-up showed a 42.6 ms busy window as a 52.5 ms stall).  Two things
        bound it, and the earlier is kept (a stall is never longer than
        either says):

        * the heartbeat: a Qt timer that wakes the idle loop when due, so the
          loop was busy by then, if the beat has not run since (Qt fires the
          timers that are due in order; ``_BEAT_SLACK`` for its lateness);
        * the time the loop thread has spent running (its own CPU clock, exact)
          or ready to run with no CPU to run on (a busy machine's delay of it, as
          _starved counts it) since a reading at or after ``seen`` (at a tick or
          a heartbeat on the loop thread, at a look of this thread), or since the
          last before it, less all the time from that reading to ``seen``: what
          it ran since, C++, had it busy at least that long up to now.  (A wait
          in C++ that burns no CPU, a blocking call, is bounded by the heartbeat
          alone.)  Without the delay, a 55 ms repaint that a busy machine
          stretched to 88 ms read 55 ms, and _starved took its 33 ms of delay
          off that again: every one was dismissed.

        The heartbeat's bound moves on by the machine's delay of the loop thread
        since ``seen`` too: woken for the beat, it may wait for a CPU, and run
        the C++ of a timer due before the beat first.  Whether the machine's
        share of the stall makes it not the app's is for _starved to judge.
        """
        state = self.state
        if state is None:
            return seen
        beat_due = max(seen, state.last_beat + self._beat_every) + _BEAT_SLACK
        by_cpu = now
        clock = self._loop_clock
        refs = list(self._cpu_refs)
        if clock is not None and refs:
            try:
                cpu_now = time.clock_gettime(clock)
            except OSError:  # the thread is gone
                return min(max(seen, beat_due), now)
            delay_now = self._delay_now()
            # (When they were read: a wait that ended after ``now`` is in them.)
            read = time.perf_counter()

            def waited(delay: float | None) -> float:
                if delay_now is None or delay is None:
                    return 0.0
                return max(0.0, delay_now - delay)

            before = [ref for ref in refs if ref[0] <= seen]
            points = sorted(ref for ref in refs if ref[0] >= seen)
            if before:
                last_before = max(before, key=lambda ref: ref[0])
                points.insert(0, last_before)
                beat_due += waited(last_before[2])
            if points:
                # (A reading of this look, at now, would make the interval before it
                # the last: one with a wait in progress, not yet counted.)
                points = points[:1] + [ref for ref in points[1:] if ref[0] < now - _IDLE_GAP]
                points.append((max(read, points[-1][0]), cpu_now, delay_now))
                by_cpu = min(by_cpu, read - _busy_to_end(points, seen))
        return min(max(seen, min(beat_due, by_cpu)), now)

        return min(max(seen, min(beat_due, by_cpu)), now)

    def _came_back(self, after: float) -> bool:
        """Has the loop shown a sign of life of its own (a run's end, a heartbeat, its
        wait) since ``after``?  (Not the dated start of a run first seen now.)"""
        state = self.state
        return state is not None and max(state.last_end, state.last_beat,
                                         state.idle_seen) >= after

    def _begin(self, started: float, now: float, gil: bool, handle: Any,
               held: float = 0.0, since: float | None = None, hold: float = 0.0) -> None:
        """The loop has shown no sign of life since ``started``, over the
        threshold ago, and has not come back: a stall.  (``since``: the sign of
        life before it, when that is earlier: a Qt slot's samples are kept by it.
        ``hold``: how long this look waited for the GIL, see Stall.gil_s.)"""
        state = self.state
        # Held by a C call until just now: it is seen as the GIL comes back, not
        # while it lasted (unless a later look finds it still going on).
        stall = Stall(started=started, detected=None if gil else now, gil_held=gil,
                      gil_s=hold, idle_frame=state.idle_frame)
        run_t0 = self._run_t0
        if handle is not None and run_t0 is not None and run_t0 >= started - 1e-6:
            self._describe(stall, handle)
        else:
            stall.source = "qt" if self.qt else "loop"
        taken: list[tuple[float, list[Frame]]]
        if handle is not None:
            # The run's stacks the ticks and looks kept since it passed half the
            # threshold (_sample_long_run) were taken during it: votes.  Without
            # them a stall first seen as its run finishes (a busy machine's late
            # look) had one sample, of the run's last lines after the blocking
            # call, and named the wrong line.  So had one first seen after a
            # hold of the GIL at its end: a 57 ms spin, then a 20 ms garbage
            # collection set off by the next line, was named by the dumps taken
            # in the collection alone.
            n, ident = self._n, id(handle)
            taken = [(when, frames) for when, run, seen, frames in list(self._run_samples)
                     if run == n and seen == ident and when >= started]
        elif self.qt:
            # The same for a slot of Qt's loop, sampled since the sign of life the
            # stall is dated from (_sample_slot).
            key = started if since is None else since
            taken = [(when, frames) for when, seen, frames in list(self._slot_samples)
                     if seen == key and when >= started]
        else:
            taken = []
        # A tick's sample at the end of a hold of the GIL stands for it (_weights):
        # the dumps taken in it would count it again, and say no more.
        holds = self._holds()
        by_tick = any(when in holds for when, _frames in taken)
        if gil:
            if by_tick:
                self._drop_dump()
            else:
                self._vote_dump(stall, held)
        kept = [frames for _when, frames in taken]
        weights = _weights(taken, self.poll, holds)
        for frames, weight in zip(kept, weights, strict=True):
            stall.vote(frames, "sampled", weight)
        # This look's own stack is among them when it (or a tick just before it)
        # sampled the run or slot: one look, one vote.  Counted twice, the look that
        # saw a 57 ms spin as it ended (in the line after it, where the loop thread
        # released the GIL) outvoted the one sample taken in the spin.
        this_look = bool(taken) and taken[-1][0] >= now - self.poll / 2.0
        stack = taken[-1][1] if this_look else _sample(state.thread_id)
        if not gil and by_tick:
            self._drop_dump()
        elif not gil and (handle is not None or kept) and self._dump_written():
            # One long C call (or a collection) since the last look, in this run:
            # the dumps taken in this run's callback vote too.  Else 40 ms of
            # Python sampled before a 45 ms C call that held the GIL, seen by a
            # look as the call returned, named the Python.  (A dump is no sign
            # that the GIL was held: a call that releases it is dumped too.)
            self._vote_dump(stall, now - started, like=kept[0] if kept else stack,
                            slot_at=None if handle is not None else self._slot_at)
        if stack and not this_look:
            # With the GIL held we could only look once it was released: the
            # function is right, the line may be the one after the C call.
            stall.vote(stack, "after" if gil else "sampled")
        stall.last_look = (now, _where(stack))  # (the next look's weight: _weight)
        self.current = stall
        self._slot_seen = 0.0  # (this stall, if a slot: not one to record after it)
        self._recorded.append(stall)
        if self.hub is not None:
            self.hub.call("stall_started", stall)
            self.hub.emit("stall_started", **stall.as_dict(self.hub.started))

    def _dump_written(self) -> bool:
        """Something is in the dump file (read without releasing the GIL)."""
        dump = self._dump
        if dump is None:
            return False
        try:
            if reads_holding_gil():
                return bool(pread_holding_gil(dump.fileno(), self._one_byte))
            return os.fstat(dump.fileno()).st_size > 0  # releases the GIL, but works
        except (OSError, ValueError):
            return False

    def _vote_dump(self, stall: Stall, held: float, like: list[Frame] | None = None,
                   slot_at: int | None = None) -> None:
        """Count the stack dumped while the GIL was held (if any) for ``held`` seconds
        (with ``like``, a stack sampled in the stall's callback: only the dumps taken
        in that callback; with ``slot_at`` too, in that Qt slot, see _same_slot)."""
        dump = self._dump
        if dump is None:
            return
        if not self._dump_written():
            return
        try:
            fd = dump.fileno()
            size = os.fstat(fd).st_size
            text = _read_at(fd, min(size, 1 << 20), max(0, size - (1 << 20)))
            _clear_dump(fd)
        except (OSError, ValueError):
            return
        stacks = parse_faulthandler_all(text.decode("utf-8", "replace"), self.state.thread_id)
        if not stacks:
            return
        if self._dumper is not None:
            # One dump every dump_after while the GIL was held: each stands for
            # that long (a call that ends in a long deallocation is split fairly).
            weight = max(1, round(self.dump_after / self.poll))
        else:  # faulthandler's timer thread: one dump for the whole hold
            weight = max(1, round(held / self.poll))
        # A dump taken while the garbage collector ran shows the frame that
        # allocated, which did not hold the loop (_finish): the collections since
        # the last dumps were read take their time off the dumps in their frame,
        # each dump standing for `each` of it.  Counted at no weight, such dumps
        # still keep a stack for a stall that was all the collector's.
        spent: dict[Frame, float] = {}
        if self._collections is not None:
            for run in self._collections.began_after(self._gc_voted):
                if run.where is not None:
                    spent[run.where] = spent.get(run.where, 0.0) + (run.ended - run.began)
                self._gc_voted = max(self._gc_voted, run.began)
        each = self.dump_after if self._dumper is not None else max(held, self.poll)
        for frames in stacks:
            if like is None or (_same_callback(frames, like) if slot_at is None
                                else _same_slot(frames, like, slot_at)):
                counted = weight
                top = frames[-1] if frames else None
                if top is not None and spent.get(top, 0.0) > 0.0:
                    cover = min(spent[top], each)
                    spent[top] -= cover
                    counted = round(weight * (1.0 - cover / each))
                stall.vote(frames, "faulthandler", weight=counted)

    def _finish(self, stall: Stall, ended: float | None, already_current: bool = True) -> None:
        with self._lock:
            if already_current:
                if self.current is not stall:
                    return  # the other thread finished it first
                self.current = None
        stall.ended = ended if ended is not None else time.perf_counter()
        collected_at = None
        gc_queued = 0.0
        if self._collections is not None:
            stall.gc_s, stall.gc_generation, collected_at, gc_queued = \
                self._collections.within(stall.started, stall.ended)
        if stall.callback is None and stall.gil_held:
            self._name_from_recent(stall)
            if stall.callback is None:
                self._unnamed.append(stall)
        duration = stall.duration()
        if stall.gil_held and stall.detected is not None and stall.gil_s < 0.5 * duration:
            # Seen live, with the GIL, for most of it: a C call that released the
            # GIL (zlib, hashlib) and held it a moment (its output's copy at the
            # end), or a Python loop ending in a short GIL-holding call.  "GIL held"
            # says what kept the loop, and here the GIL did not, most of the time
            # (the 2-3 s zlib and sha256 calls of benchmarks/accuracy.py were
            # labelled so, 5-6 of 8 a load; the label was set by any one look that
            # waited for the GIL).  Its dumps still vote, by the time they stand for.
            stall.gil_held = False
        if stall.gil_held and stall.gc_s > 0.0 and stall.gil_s - stall.gc_s < 0.5 * duration:
            # The collector held it (a collection holds the GIL all through), not a
            # C call: a 200 ms time.sleep with a 250 ms full collection after it was
            # shown "GIL held" beside the sleep's line.
            stall.gil_held = False
        if stall.gc_s >= 0.5 * duration \
                and self._rest_of_collection(stall, duration, gc_queued) <= self.threshold:
            # The collector's (looptools.inapp._collections): its stacks show the
            # line that made the object that set the collection off, which did not
            # hold the loop, and the rest would not be a stall.  Its callback or
            # task, if named, is where it ran.  (With more than a stall's worth
            # besides, the culprit stands: the dumps taken in the collection did
            # not vote, see _vote_dump.)
            stall.culprit, stall.culprit_samples = None, 0
            stall.collected = True
            # The stack shown: one taken in the collection (its dumps voted at no
            # weight), which has the line that set it off on top.
            for stack, source in stall._stacks.values():
                if stack and stack[-1] == collected_at:
                    stall.stack, stall.stack_source = stack, source
                    break
        starved = self._starved(stall, duration)
        if duration <= self.threshold or starved:
            # Not a stall: a stall is over the threshold, always.  (One seen
            # live and then found shorter, once its end was known, is taken back.)
            if starved:
                self.starved += 1
            if stall.detected is not None and self.hub is not None:
                self.hub.emit("stall_dismissed", started_at_s=round(
                    stall.started - self.hub.started, 6))
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

    def _rest_of_collection(self, stall: Stall, duration: float, gc_queued: float) -> float:
        """The part of a stall that was neither the collector's nor the
        machine's: the app's own run around a collection.

        The machine's time (a busy machine's run queue, a stopped process) is
        known for the whole stall; the part of it in the collections
        (``gc_queued``: a collection is all CPU, so what it took longer than the
        loop thread's CPU time in it) is already in ``gc_s``, and the rest of it
        is taken off the rest: a 150 ms collection beside 60 ms of allocating
        that a loaded machine stretched to 80 ms is a collection's stall, as it
        is on an idle one (3 of 41 such stalls beside CPU burners kept the
        allocating line while the wall-clock rest was the rule), and a 120 ms
        ``time.sleep`` before it, which no run queue stretches, stays a stall.
        """
        rest = duration - stall.gc_s
        if rest <= self.threshold:
            return rest
        machine, _idle = self._machine(stall, duration)
        return rest - max(0.0, machine - gc_queued)

    def _starved(self, stall: Stall, duration: float) -> bool:
        """The machine, not the app: most of the stall was time the OS kept the
        loop thread from running.

        That time is the loop thread's on a run queue (a busy machine: ready to
        run, no CPU) and the spans the whole process was stopped (``_stops``).
        A run of a few ms stretched past the threshold by them is not the app
        holding the loop: a healthy ``asyncio.Queue`` loop beside CPU burners
        showed "stalls" of 50-150 ms that were the loop thread waiting for a
        CPU, and one across a SIGSTOP as long as the stop.  So a stall whose
        own part (the rest) is within half the threshold is not one.  Half, not
        all of it: a call that lasts a set time by the clock (a spin until a
        deadline) is no longer for waiting for a CPU meanwhile, and a CPU-bound
        call near the threshold may get a third of a CPU on a busy machine;
        both stay stalls.  At the loop's own wait (a busy machine delays an idle
        Qt loop's wake-up and its heartbeat as much as a slot would) all of it
        is the machine's, and the rest need only be within the threshold.

        The run-queue time counted is the loop thread's (``schedstat``), and the
        time this thread sat on one while it held the GIL during its looks (a
        loop thread woken then waits for the GIL, asleep on a futex: no run-queue
        time of its own).  It is counted from the last reading before the stall
        began, less the time from that reading to the start: the run-queue time
        of a wait is added as the wait ends, so a wait that ended in between
        (before the stall) is in the count, and only the time between bounds it.
        That holds for the loop thread's own readings (it was running then: any
        wait it ended by the start began after it; a tick runs just before each
        heartbeat, where a stall of a Qt loop at its wait usually starts), nearly
        for this thread's.  Seen with the loop thread starved hard (SCHED_IDLE):
        a 200 ms C++ call dismissed for the waits before it.  For a run, the
        time after its end is taken off too, so that a stall is never excused
        for more than it waited.
        """
        machine, idle = self._machine(stall, duration)
        return duration - machine <= (self.threshold if idle else self.threshold / 2.0)

    def _machine(self, stall: Stall, duration: float) -> tuple[float, bool]:
        """The seconds of the stall the machine took (see ``_starved``), and
        whether the loop was at its own wait all through it."""
        end = stall.started + duration
        machine = sum(max(0.0, min(end, to) - max(stall.started, since))
                      for since, to in list(self._stops))
        idle = stall.samples > 0 and stall.idle_samples >= stall.samples and not stall.callback
        started = stall.started + 1e-6
        marks = [mark for mark in list(self._loop_marks) if mark[0] <= started] \
            or [mark for mark in list(self._rq_marks) if mark[0] <= started]
        delay = self._delay_now() if marks else None
        if delay is not None:
            when, base = max(marks)
            queued = delay - base - max(0.0, stall.started - when)
            if not idle:
                queued -= max(0.0, time.perf_counter() - end)
            machine += max(0.0, queued)
        return machine, idle

    def _delay_now(self) -> float | None:
        """The machine's delay of the loop thread so far (as in ``_rq_marks``).

        Read by this thread through its own descriptor, or on the loop thread
        itself (a stall that ends as the loop stops, seen: a starved idle qasync
        loop whose sleep ended in the stall) through the heartbeat's; None on any
        other thread, or where there is no ``schedstat``.
        """
        state = self.state
        if threading.current_thread() is self._thread:
            times = self._times_l
        elif state is not None and threading.get_ident() == state.thread_id:
            times = self._times_loop
        else:
            return None
        if times is None:
            return None
        try:
            return times.read()[1] + self._held_queued
        except (OSError, ValueError, IndexError):
            return None

    def _own_queue(self) -> float | None:
        """This thread's run-queue seconds so far (None without ``schedstat``)."""
        times = self._times_w
        if times is None:
            return None
        try:
            return times.read()[1]
        except (OSError, ValueError, IndexError):
            return None

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
            "watchdog": {
                "poll_ms": round(self.poll * 1000.0, 3),
                "gil_stacks": self.dump_kind,
                "thread_times": self.thread_times,
                "gil_waits": self.gil_waits,
                "starved": self.starved,
                "after_the_fact": self.after_the_fact,
                "ticks": self.ticks,
                "looks": self.looks,
                "handoffs": self.handoffs,
                "wake_timer": self.wake_timer,
                "sleeps_on": self.sleeps_on,
                "no_ticks": self.no_ticks,
                "runs_stamped": self.stamped_ever,
                "private_fds": self.private_fds,
                # What each platform-specific mechanism fell back to (see
                # docs/design.md, "Other platforms"): None where it is in use.
                "tick_timer": self.tick_timer,
                "no_private_fds": None if self.private_fds else self.no_private_fds,
                "no_thread_times": self.no_thread_times,
                "gil_judged_by": self.gil_judged_by(),
                "no_gil_stacks": self.no_gil_stacks,
                "no_thread_dump": self.no_thread_dump,
                "no_wake_timer": None if self.wake_timer else self.no_wake_timer,
                "no_gc_counts": self._no_gc_counts(),
            },
        }

    def _no_gc_counts(self) -> str | None:
        """Why the collector's runs were not counted (``gc_ms``) to the end, or None."""
        collections = self._collections
        if collections is None:
            return "no loop ran"
        if collections.lost():
            return "the app took looptools' function off gc.callbacks"
        return None

    def gil_judged_by(self) -> str:
        """How a late look is told to be a C call holding the GIL (see _gil_held)."""
        if self.thread_times:
            return "schedstat"
        if self._cpu_clock is not None and self.ticks:
            return "cpu-clock"
        return "lateness"

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
