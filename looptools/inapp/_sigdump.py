"""The loop thread's stack, dumped by the loop thread itself while a C call holds the GIL.

No Python code runs anywhere while a C call holds the GIL, so no Python
watchdog can look at the loop thread then.  A signal handler written in C can:
``faulthandler.register(sig, all_threads=False)`` dumps the stack of the thread
that receives ``sig``, and a POSIX timer (looptools.inapp._posix_timer) sends ``sig``
to exactly one thread, the loop thread.

When it may fire is what keeps it safe.  faulthandler reads the frame chain
without any lock, and in CPython 3.11 a signal that lands while the
interpreter is pushing or popping a frame sees it half-built (a crash seen in
pytest-asyncio's suite when dumps fired while C code called back into Python;
faulthandler's own timer thread, which reads *another* thread's frames, has the
same hazard).  So the timer runs on the loop thread's **CPU clock** and is
re-armed by every tick, which runs between two bytecodes: it fires only after
the loop thread has burned ``after`` seconds of CPU without reaching a single
bytecode boundary — inside one C call, whose Python frames cannot change.  It
is armed only while ticks flow (the loop runs on the main thread) and disarmed
when they stop.  Once fired it repeats every ``after`` of CPU until re-armed, so
each dump stands for an equal span of a long hold; the watchdog reads them only
if the stall turns out to have held the GIL.

Linux only; elsewhere :func:`create` returns None (:func:`missing` says why)
and the watchdog falls back to faulthandler's timer thread, or, without that
either, to sampling the stack the moment the GIL comes back.
"""

from __future__ import annotations

import contextlib
import faulthandler
import signal
import time
from typing import IO

from looptools.inapp import _posix_timer


class ThreadDump:
    """A CPU-time timer that makes the loop thread dump its own stack to ``file``."""

    def __init__(self, timer: _posix_timer.ThreadTimer, file: IO[bytes], after: float) -> None:
        self._timer = timer
        self.signum = timer.signum
        self.file = file
        self.after = after
        self.closed = False

    def arm(self) -> None:
        """Fire after ``after`` seconds of the loop thread's CPU from now (O(1))."""
        self._timer.arm()

    def disarm(self) -> None:
        self._timer.disarm()

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
            self._timer.delete()
            return
        signum = self.signum
        signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
        try:
            self._timer.delete()
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


def missing() -> str | None:
    """Why the loop thread cannot dump its own stack here (None: it can, as far as
    can be told without making the timer)."""
    if not hasattr(faulthandler, "register"):
        return "no faulthandler.register"
    if not hasattr(time, "pthread_getcpuclockid"):
        return "no per-thread CPU clocks (time.pthread_getcpuclockid)"
    if not hasattr(signal, "pthread_sigmask") or not hasattr(signal, "sigtimedwait"):
        # Closing safely blocks the signal and takes off one already sent.
        return "no signal.pthread_sigmask or signal.sigtimedwait"
    return _posix_timer.missing()


def create(thread_ident: int, native_id: int | None, file: IO[bytes], after: float,
           taken: tuple[int, ...] = ()) -> ThreadDump | None:
    """A :class:`ThreadDump` for the thread ``thread_ident``, or None where it cannot be made."""
    if native_id is None or missing() is not None:
        return None
    try:
        clock = time.pthread_getcpuclockid(thread_ident)
    except (AttributeError, OSError):
        return None
    signals = _posix_timer.free_signals(1, taken)
    if not signals:
        return None
    signum = signals[0]
    faulthandler.register(signum, file=file, all_threads=False, chain=False)
    timer = _posix_timer.create(clock, native_id, signum, after, after)
    if timer is None:
        faulthandler.unregister(signum)
        return None
    return ThreadDump(timer, file, after)
