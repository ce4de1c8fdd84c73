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
"""

from __future__ import annotations

import asyncio
import asyncio.events
import threading
from collections.abc import Callable
from typing import Any

_original: Callable[[Any], None] | None = None
_listener: Callable[[Any], None] | None = None
_worker_listener: Callable[[Any], None] | None = None


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
    main_ident = threading.main_thread().ident
    get_ident = threading.get_ident

    def _set_running_loop(loop: Any) -> None:
        original(loop)
        listener_now = _listener if get_ident() == main_ident else _worker_listener
        if listener_now is not None:
            listener_now(loop)

    _set_running_loop.__wrapped__ = original  # type: ignore[attr-defined]
    _original = original
    asyncio.events._set_running_loop = _set_running_loop
    asyncio._set_running_loop = _set_running_loop  # type: ignore[attr-defined]


def uninstall() -> None:
    global _original, _listener, _worker_listener
    _listener = _worker_listener = None
    if _original is not None:
        asyncio.events._set_running_loop = _original
        asyncio._set_running_loop = _original  # type: ignore[attr-defined]
    _original = None


def installed() -> bool:
    return _original is not None
