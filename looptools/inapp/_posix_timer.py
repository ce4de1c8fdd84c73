"""POSIX timers that signal one thread (Linux ``timer_create`` with ``SIGEV_THREAD_ID``).

The stall watchdog uses three, two aimed at the loop thread:

* **ticks**: a periodic timer on ``CLOCK_MONOTONIC`` whose real-time signal runs
  a Python handler on the loop thread between two bytecodes.  ``setitimer``'s
  ``SIGALRM`` would do the same but is process-wide: any thread may take it, so
  one can arrive after the timer was stopped (the handler then gone: "Signal 14
  ignored due to race condition" raised in the app), and an app that uses
  ``SIGALRM`` itself leaves no room for it.  A signal sent to one thread is
  delivered to that thread only, and a real-time signal nobody handles is free.
* **stack dumps**: a timer on the loop thread's *CPU clock*, whose signal
  ``faulthandler.register`` handles (looptools/inapp/_sigdump.py).

and one at the watchdog thread:

* **its wake-up**: a one-shot timer on ``CLOCK_MONOTONIC`` whose signal the
  watchdog thread keeps blocked and waits for with ``sigtimedwait``.  The ticks
  put it back while the loop shows life, so that the thread sleeps until the
  loop could be stalled instead of waking about once a threshold to find it
  was not (looptools/inapp/detectors/stalls.py, ``_sleep``).

Each timer is created with ``ctypes.PyDLL`` functions, which keep the GIL: a
``CDLL`` call releases it, and the ticks re-arm a timer on the loop thread,
where each release would hand the GIL to whoever waits for it.
"""

from __future__ import annotations

import atexit
import ctypes
import signal
import sys
import threading
from types import FrameType
from typing import Any

_SIGEV_THREAD_ID = 4
_TIMER_ABSTIME = 1
CLOCK_MONOTONIC = 1


class _Sigevent(ctypes.Structure):
    # struct sigevent on Linux: sigval, signo, notify, then a 48-byte union whose
    # first int is the thread id for SIGEV_THREAD_ID.
    _fields_ = [("sigev_value", ctypes.c_void_p), ("sigev_signo", ctypes.c_int),
                ("sigev_notify", ctypes.c_int), ("tid", ctypes.c_int),
                ("_pad", ctypes.c_int * 11)]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _spec(seconds: float, every: float = 0.0) -> _Itimerspec:
    spec = _Itimerspec()
    spec.it_value.tv_sec = int(seconds)
    spec.it_value.tv_nsec = round((seconds - int(seconds)) * 1e9)
    spec.it_interval.tv_sec = int(every)
    spec.it_interval.tv_nsec = round((every - int(every)) * 1e9)
    return spec


_libc: Any = None


def _lib() -> Any:
    global _libc
    if _libc is None:
        libc = ctypes.PyDLL(None, use_errno=True)
        libc.timer_create.argtypes = [ctypes.c_int, ctypes.POINTER(_Sigevent),
                                      ctypes.POINTER(ctypes.c_void_p)]
        libc.timer_settime.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                       ctypes.c_void_p]
        libc.timer_delete.argtypes = [ctypes.c_void_p]
        _libc = libc
    return _libc


def free_signals(count: int, taken: tuple[int, ...] = ()) -> list[int]:
    """Up to ``count`` real-time signals with no handler in this process, from the top
    (the bottom few are the C library's)."""
    low, high = getattr(signal, "SIGRTMIN", 0), getattr(signal, "SIGRTMAX", 0)
    found: list[int] = []
    for signum in range(high - 1, low + 3, -1):
        if len(found) >= count:
            break
        if signum in taken:
            continue
        try:
            if signal.getsignal(signum) in (signal.SIG_DFL, None):
                found.append(signum)
        except (ValueError, OSError):
            continue
    return found


def _in_another_handler(signum: int) -> bool:
    """Is a Python handler of a signal other than ``signum`` on this thread's stack?"""
    codes = set()
    for other in signal.valid_signals():
        if other == signum:
            continue
        try:
            handler = signal.getsignal(other)
        except (ValueError, OSError):
            continue
        code = getattr(getattr(handler, "__func__", handler), "__code__", None)
        if code is not None:
            codes.add(code)
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


def restore_default(signum: int, ours: Any) -> None:
    """Put ``signum``'s handler back to ``SIG_DFL`` if it is still ``ours`` (main thread).

    Whatever sent the signal must be stopped first.  One it sent a moment ago
    may still wait for its Python handler: ``signal.signal`` runs those first,
    except inside another signal's handler (the app's SIGINT handler quitting
    its Qt app, say), where CPython would later find the default in place and
    print "Signal N ignored due to race condition" into the app's output.  So
    there the signal gets a last handler that puts the default back when it
    runs, and is sent once more to make sure it does.
    """
    try:
        if signal.getsignal(signum) != ours:
            return
        if not _in_another_handler(signum):
            signal.signal(signum, signal.SIG_DFL)
            return

        def last(number: int, frame: Any) -> None:
            if signal.getsignal(number) is last:
                signal.signal(number, signal.SIG_DFL)

        signal.signal(signum, last)
        kill = getattr(signal, "pthread_kill", None)
        if kill is not None:
            kill(threading.get_ident(), signum)
        else:  # POSIX raise(): to the calling thread too
            signal.raise_signal(signum)
    except (OSError, ValueError, AttributeError):
        pass


#: Timers not deleted yet.  An interpreter that exits with one still armed is
#: killed by its signal once the handler is gone (faulthandler and the signal
#: module put the default disposition back as they shut down, and a real-time
#: signal's default is to end the process): whatever path left one behind, an
#: exit hook deletes them first.
_live: set[ThreadTimer] = set()
_exit_hook = False


def _delete_all() -> None:
    for timer in list(_live):
        timer.delete()


def forget_all() -> None:
    """In a forked child: its parent's timers were not inherited."""
    for timer in list(_live):
        timer.deleted = True
    _live.clear()


class ThreadTimer:
    """A timer that sends ``signum`` to one thread; ``arm()`` restarts it."""

    def __init__(self, timer: ctypes.c_void_p, signum: int, after: float,
                 every: float) -> None:
        global _exit_hook
        self._timer = timer
        self.signum = signum
        self._armed = ctypes.byref(_spec(after, every))
        self._every = every
        self._disarmed = ctypes.byref(_spec(0.0))
        self._now = ctypes.byref(_spec(1e-9, every))
        self.deleted = False
        _live.add(self)
        if not _exit_hook:
            atexit.register(_delete_all)
            _exit_hook = True

    def arm(self) -> None:
        """(Re)start: first signal ``after`` from now, then every ``every`` (O(1))."""
        _lib().timer_settime(self._timer, 0, self._armed, None)

    def arm_in(self, after: float) -> None:
        """Restart with the first signal ``after`` from now, then every ``every``."""
        if not self.deleted:
            _lib().timer_settime(self._timer, 0, ctypes.byref(_spec(after, self._every)),
                                 None)

    def arm_at(self, deadline: float) -> bool:
        """Restart with one signal at ``deadline`` on the timer's clock (absolute;
        ``time.perf_counter()``'s for ``CLOCK_MONOTONIC`` on Linux), then every
        ``every``; at once if it is past.  False if it could not be (deleted, or
        the call failed)."""
        if self.deleted:
            return False
        return _lib().timer_settime(self._timer, _TIMER_ABSTIME,
                                    ctypes.byref(_spec(deadline, self._every)), None) == 0

    def fire(self) -> None:
        """Signal as soon as can be (a nanosecond from now), then every ``every``."""
        if not self.deleted:
            _lib().timer_settime(self._timer, 0, self._now, None)

    def disarm(self) -> None:
        if not self.deleted:
            _lib().timer_settime(self._timer, 0, self._disarmed, None)

    def delete(self) -> None:
        if not self.deleted:
            self.deleted = True
            _live.discard(self)
            _lib().timer_delete(self._timer)


def missing() -> str | None:
    """Why no timer can signal one thread here (None: it can), without making one."""
    if not sys.platform.startswith("linux"):
        return f"no timer_create(SIGEV_THREAD_ID) on {sys.platform}"
    if not hasattr(signal, "SIGRTMIN") or not hasattr(signal, "SIGRTMAX"):
        return "no real-time signals"
    try:
        _lib()
    except (OSError, AttributeError, TypeError):
        return "the C library has no timer_create"
    return None


def create(clock: int, native_id: int, signum: int, after: float,
           every: float = 0.0) -> ThreadTimer | None:
    """A disarmed timer on ``clock`` for thread ``native_id``, or None where there is none."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = _lib()
    except (OSError, AttributeError, TypeError):
        return None
    event = _Sigevent()
    event.sigev_signo = signum
    event.sigev_notify = _SIGEV_THREAD_ID
    event.tid = native_id
    timer = ctypes.c_void_p()
    if libc.timer_create(clock, ctypes.byref(event), ctypes.byref(timer)) != 0:
        return None
    return ThreadTimer(timer, signum, after, every)
