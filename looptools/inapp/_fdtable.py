"""A looptools thread with a file-descriptor table of its own (Linux).

Any second thread slows a single-threaded app's loop, whatever that thread
does: while threads share one descriptor table, Linux takes and drops a
reference on the file at every ``epoll_wait``, ``read`` or ``send`` (the
single-owner fast path of ``fdget`` is lost).  Measured here
(``benchmarks/thread_cost.py``): a sleeping thread slowed an ``epoll.poll(0)``
loop by ~23 % and an asyncio callback chain by ~5 %; the same thread after
``unshare(CLONE_FILES)`` cost neither.

So a looptools thread that needs no descriptor of the app's calls
:func:`private_fd_table` first: it gets a copy of the table, and closes in that
copy every descriptor except the few it uses (``keep``), so that it holds no
file, socket or pipe of the app open: a pipe the app closes still reaches EOF,
a port it closes is freed.  Descriptors the app opens afterwards are invisible
to this thread, which is why the caller must know every descriptor it will
touch.  Threads it starts (faulthandler's) share its table, not the app's.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable

CLONE_FILES = 0x400
_FD_DIR = "/proc/thread-self/fd"


def missing() -> str | None:
    """Why no thread can have a table of its own here (None: it can, as far as can be
    told without calling ``unshare``)."""
    if not sys.platform.startswith("linux"):
        return f"no unshare(CLONE_FILES) on {sys.platform}"
    if not os.path.isdir(_FD_DIR):
        return f"no {_FD_DIR}"
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).unshare  # noqa: B018
    except (OSError, AttributeError, ImportError, TypeError):
        return "the C library has no unshare"
    return None


def private_fd_table(keep: Iterable[int]) -> bool:
    """Give the calling thread its own descriptor table holding only ``keep``.

    Returns False, having changed nothing, where that is not possible (not
    Linux, no ``/proc/thread-self``, ``unshare`` refused).  Call it only from a
    thread that will never touch any other descriptor of the process.
    """
    if not sys.platform.startswith("linux") or not os.path.isdir(_FD_DIR):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        unshare = libc.unshare
        unshare.argtypes = [ctypes.c_int]
        unshare.restype = ctypes.c_int
    except (OSError, AttributeError, ImportError, TypeError):
        return False
    if unshare(CLONE_FILES) != 0:
        return False
    # From here on the table is this thread's copy: closing touches the app's
    # descriptors nowhere else.
    kept = set(keep)
    try:
        names = os.listdir(_FD_DIR)
    except OSError:
        return True  # private, with copies left open: no worse than a shared table
    for name in names:
        try:
            fd = int(name)
        except ValueError:
            continue
        if fd not in kept:
            try:
                os.close(fd)
            except OSError:
                pass
    return True


def stderr_fds() -> set[int]:
    """The descriptors a warning from a looptools thread may be written to."""
    fds = {2}
    for stream in (sys.stderr, sys.__stderr__):
        try:
            if stream is not None:
                fds.add(stream.fileno())
        except (AttributeError, OSError, ValueError):
            pass
    return fds
