"""Have the main thread run a function between two bytecodes, asked from any thread,
without a signal.

The Qt-only probe (looptools/inapp/monitor.py) normally sends the main thread a free
real-time signal with ``pthread_kill``; its Python handler runs there between
two bytecodes, with the interrupted frame.  macOS has no real-time signals and
Windows neither those nor ``pthread_kill``.  CPython's *pending calls*
(``Py_AddPendingCall``, the queue it runs signal handlers from as well) give the
same thing everywhere: a C function the main thread calls at its next bytecode
boundary, reached here through ``ctypes.pythonapi``.  The interrupted frame is
the caller of the callback's Python function.

At most one call is queued at a time (CPython's queue holds 32), and, as with a
signal, none runs while the main thread stays in C (Qt waiting for events).
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from types import FrameType
from typing import Any

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p)

#: What the main thread runs, given the interrupted frame; None: nothing.
_target: Callable[[FrameType | None], None] | None = None
_queued = False
#: The C callback: once made, kept for the life of the process (a call may be
#: queued when the sender is done with it).
_callback: Any = None
_add: Any = None


def _run(_arg: Any) -> int:
    global _queued
    _queued = False
    target = _target
    if target is not None:
        try:
            target(sys._getframe(1))
        except BaseException:  # never into the app (the target handles its own)
            pass
    return 0


def missing() -> str | None:
    """Why pending calls cannot be made here (None: they can)."""
    try:
        ctypes.pythonapi.Py_AddPendingCall  # noqa: B018
    except (AttributeError, OSError, TypeError):
        return "no Py_AddPendingCall (not CPython)"
    return None


def sender(target: Callable[[FrameType | None], None]) -> Callable[[], None] | None:
    """A function any thread may call to have the main thread run ``target(frame)``
    soon; None where pending calls cannot be made.  One target at a time."""
    global _callback, _add, _target
    if missing() is not None:
        return None
    if _callback is None:
        add = ctypes.pythonapi.Py_AddPendingCall
        add.argtypes = [_CALLBACK, ctypes.c_void_p]
        add.restype = ctypes.c_int
        _callback = _CALLBACK(_run)
        _add = add
    _target = target
    return _send


def _send() -> None:
    global _queued
    if _queued or _target is None:
        return
    _queued = True
    if _add(_callback, None) != 0:  # the queue is full: try again next time
        _queued = False


def stop(target: Callable[[FrameType | None], None] | None = None) -> None:
    """No more calls of ``target`` (of any target if None); one already queued
    does nothing."""
    global _target
    if target is None or _target == target:
        _target = None
