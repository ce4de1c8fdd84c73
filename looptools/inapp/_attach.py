"""Notice every loop that starts or stops running, however it was made.

``asyncio.run``, ``loop.run_forever``/``run_until_complete``, qasync's
``QEventLoop.run_forever`` (and its ``already_running`` mode) and QtAsyncio's
``run_forever`` all call ``asyncio.events._set_running_loop(loop)`` on start and
``_set_running_loop(None)`` on stop, looking the function up on the module at
call time.  Wrapping that module attribute (and its re-export
``asyncio._set_running_loop``, which uvloop binds) tells us when any loop starts
or stops, with no code change in the app: on the main thread (the loop the
monitor attaches to) and on any other (worker-thread loops,
``looptools.inapp.detectors.worker_loops``).

uvloop binds that function once, into a C variable, as it is imported: imported
before the monitor started (``import uvloop`` at the top of an app that calls
``looptools.monitor()`` later) it calls the original, and its loops went unseen.
Then ``uvloop.Loop.run_forever`` (a Python class; ``run_until_complete`` and
``uvloop.run`` go through it) is wrapped as well.  Each thread remembers the loop
it was told of, so a loop seen both ways is told once.
"""

from __future__ import annotations

import asyncio
import asyncio.events
import sys
import threading
from collections.abc import Callable
from typing import Any

from looptools.inapp._patch import _MISSING, dress_as

_original: Callable[[Any], None] | None = None
_listener: Callable[[Any], None] | None = None
_worker_listener: Callable[[Any], None] | None = None
#: (uvloop.Loop, what its own run_forever entry was, ours) while wrapped
_uvloop: tuple[type, Any, Callable[..., Any]] | None = None


class _Told(threading.local):
    loop: Any = None  # the loop this thread's listener was last told is running


_told = _Told()


def _tell(loop: Any) -> None:
    """Tell this thread's listener that ``loop`` runs (a start once; None: stopped)."""
    if loop is not None and _told.loop is loop:
        return
    _told.loop = loop
    listener = _listener if threading.get_ident() == threading.main_thread().ident \
        else _worker_listener
    if listener is not None:
        listener(loop)


def install(listener: Callable[[Any], None],
            worker_listener: Callable[[Any], None] | None = None) -> None:
    """Call ``listener(loop_or_None)`` on the main thread whenever a loop starts/stops
    there, and ``worker_listener(loop_or_None)`` on any other thread likewise."""
    global _original, _listener, _worker_listener
    _listener = listener
    _worker_listener = worker_listener
    if _original is not None:
        return
    original = asyncio.events._set_running_loop

    def _set_running_loop(loop: Any) -> None:
        original(loop)
        _tell(loop)

    _set_running_loop.__wrapped__ = original  # type: ignore[attr-defined]
    _original = original
    asyncio.events._set_running_loop = _set_running_loop
    asyncio._set_running_loop = _set_running_loop  # type: ignore[attr-defined]
    _wrap_uvloop()


def _wrap_uvloop() -> None:
    """uvloop imported already (it may hold the original): wrap its loops' run_forever."""
    global _uvloop
    uvloop = sys.modules.get("uvloop")
    cls = getattr(uvloop, "Loop", None)
    if _uvloop is not None or not isinstance(cls, type):
        return
    original = getattr(cls, "run_forever", None)
    if original is None:
        return
    had = cls.__dict__.get("run_forever", _MISSING)

    def run_forever(self: Any) -> Any:
        if self.is_running():  # uvloop raises; nothing starts
            return original(self)
        _tell(self)
        try:
            return original(self)
        finally:
            if _told.loop is self:
                _tell(None)

    dress_as(run_forever, original)
    try:
        cls.run_forever = run_forever  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        return
    _uvloop = (cls, had, run_forever)


def _unwrap_uvloop() -> None:
    global _uvloop
    wrapped, _uvloop = _uvloop, None
    if wrapped is None:
        return
    cls, had, ours = wrapped
    if cls.__dict__.get("run_forever") is not ours:
        return  # the app put its own there since: keep it
    try:
        if had is _MISSING:
            delattr(cls, "run_forever")
        else:
            cls.run_forever = had  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        pass


def uninstall() -> None:
    global _original, _listener, _worker_listener
    _listener = _worker_listener = None
    if _original is not None:
        asyncio.events._set_running_loop = _original
        asyncio._set_running_loop = _original  # type: ignore[attr-defined]
    _original = None
    _unwrap_uvloop()
    _told.loop = None


def installed() -> bool:
    return _original is not None
