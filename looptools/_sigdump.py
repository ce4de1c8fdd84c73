"""The loop thread's stack, dumped by the loop thread itself while a C call holds the GIL.

No Python code runs anywhere while a C call holds the GIL, so no Python
watchdog can look at the loop thread then.  But a signal handler written in C
can: ``faulthandler.register(sig, all_threads=False)`` dumps the stack of the
thread that receives ``sig``, and a POSIX timer created with
``SIGEV_THREAD_ID`` sends ``sig`` to exactly one thread — the loop thread.
The thread reads its own frames, stopped in the middle of the C call, so the
dump is consistent (faulthandler's timer thread reads another thread's frames
while that thread may be running Python: it crashed an app once).

The timer is re-armed while the loop thread shows it is alive (the watchdog's
ticks run on it, and the watchdog thread re-arms it when it can look): it fires
only when nothing re-armed it for ``after`` seconds — a C call holding the
GIL, or a loop thread kept off the CPU — and then every ``after`` until it is
re-armed, so that each dump stands for an equal span of a long hold.  The
dumps are read by the watchdog if, and only if, the stall turns out to have
held the GIL.

Linux only (``timer_create`` with ``SIGEV_THREAD_ID``); elsewhere :func:`create`
returns None and the watchdog falls back to faulthandler's timer thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import signal
import sys
from typing import IO, Any

_SIGEV_THREAD_ID = 4
_CLOCK_MONOTONIC = 1


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


def _free_signal() -> int | None:
    """A real-time signal nobody in this process handles (from the top)."""
    low, high = getattr(signal, "SIGRTMIN", 0), getattr(signal, "SIGRTMAX", 0)
    for signum in range(high - 1, low + 3, -1):
        try:
            if signal.getsignal(signum) in (signal.SIG_DFL, None):
                return signum
        except (ValueError, OSError):
            continue
    return None


class ThreadDump:
    """A one-shot timer that makes one thread dump its own stack to ``file``."""

    def __init__(self, libc: Any, timer: ctypes.c_void_p, signum: int, file: IO[bytes],
                 after: float) -> None:
        self._libc = libc
        self._timer = timer
        self.signum = signum
        self.file = file
        self.after = after
        # Periodic once it fires: a long hold is dumped every ``after``, so each
        # dump stands for the same span of it (the watchdog votes with them).
        self._armed = ctypes.byref(_spec(after, after))
        self._disarmed = ctypes.byref(_spec(0.0))
        self.closed = False

    def arm(self) -> None:
        """Fire ``after`` seconds from now, and every ``after`` after that, unless
        re-armed (any thread; O(1))."""
        self._libc.timer_settime(self._timer, 0, self._armed, None)

    def disarm(self) -> None:
        self._libc.timer_settime(self._timer, 0, self._disarmed, None)

    def close(self, on_target_thread: bool) -> None:
        """Delete the timer and put the signal back as it was.

        On the target thread a signal already sent is taken off first (its
        default action would end the process); elsewhere the handler stays
        registered, which is harmless once no timer sends the signal.
        """
        if self.closed:
            return
        self.closed = True
        if not on_target_thread:
            self._libc.timer_delete(self._timer)
            return
        signum = self.signum
        signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
        try:
            self._libc.timer_delete(self._timer)
            with contextlib.suppress(OSError):
                while signal.sigtimedwait({signum}, 0) is not None:
                    pass
            faulthandler.unregister(signum)
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})

    def forget(self) -> None:
        """In a forked child: the timer was not inherited; the handler was."""
        if not self.closed:
            self.closed = True
            with contextlib.suppress(Exception):
                faulthandler.unregister(self.signum)


def create(native_id: int, file: IO[bytes], after: float) -> ThreadDump | None:
    """A :class:`ThreadDump` for the thread ``native_id``, or None where it cannot be made."""
    if not sys.platform.startswith("linux") or not hasattr(faulthandler, "register"):
        return None
    signum = _free_signal()
    if signum is None:
        return None
    try:
        # PyDLL: the call keeps the GIL.  A CDLL call releases it, and the
        # ticks arm the timer on the loop thread: each arm would hand the GIL
        # to whoever waits for it, in the middle of the loop's work.
        libc = ctypes.PyDLL(None, use_errno=True)
        libc.timer_create.argtypes = [ctypes.c_int, ctypes.POINTER(_Sigevent),
                                      ctypes.POINTER(ctypes.c_void_p)]
        libc.timer_settime.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p,
                                       ctypes.c_void_p]
        libc.timer_delete.argtypes = [ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    faulthandler.register(signum, file=file, all_threads=False, chain=False)
    event = _Sigevent()
    event.sigev_signo = signum
    event.sigev_notify = _SIGEV_THREAD_ID
    event.tid = native_id
    timer = ctypes.c_void_p()
    if libc.timer_create(_CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer)) != 0:
        faulthandler.unregister(signum)
        return None
    return ThreadDump(libc, timer, signum, file, after)
