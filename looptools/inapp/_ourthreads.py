"""What every thread looptools starts inside an app does first.

A signal sent to the process (SIGINT from Ctrl-C, SIGTERM, SIGCHLD...) goes to any
thread that does not block it, and Linux passes the main thread over whenever it
already has a signal pending and is off the CPU at that instant — with the ticks'
timer signal pending on a busy machine, that is often.  Taken by one of our
threads, the signal's C handler runs there: it writes the app's wakeup byte
(``signal.set_wakeup_fd``) into *our* descriptor table (the watchdog's own, where
that descriptor is closed: "Exception ignored when trying to write to the signal
wakeup fd: OSError: [Errno 9] Bad file descriptor", seen with uvloop under load),
and it does not interrupt the main thread's ``epoll_wait``, so a handler set with
``signal.signal`` (``asyncio.run``'s SIGINT) waits for the loop's next wake-up.
Without looptools a single-threaded app takes every such signal on its main
thread; blocking them in our threads keeps it that way.  Signals a fault raises
in the thread itself are left alone (blocking those is undefined), and signals
sent to one thread (our ticks, the loop thread's stack dumps) are not affected.
"""

from __future__ import annotations

import signal

_FAULTS = {getattr(signal, name) for name in
           ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT", "SIGTRAP", "SIGSYS")
           if hasattr(signal, name)}


def block_process_signals() -> None:
    """Block, in the calling thread only, every signal but the faults; never raises."""
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals() - _FAULTS)
    except (AttributeError, OSError, ValueError):
        pass  # no pthread_sigmask here (not POSIX): nothing to keep off this thread


def missing() -> str | None:
    """Why our threads cannot keep process signals off themselves here (None: they can)."""
    if not hasattr(signal, "pthread_sigmask"):
        return "no signal.pthread_sigmask"
    return None
