"""The app's own handler on a signal we send: we stop sending it first.

The ticks and the loop thread's stack dumps are real-time signals that had no
handler when they were chosen (looptools.inapp._posix_timer.free_signals).  An app
that later puts a handler of its own on one — a free real-time signal, found the
way we found it — had that handler called by our timer about 200 times a second
(seen: 369 calls where the app sent 125, with the ticks on signal 60).  So while
the ticks run, ``signal.signal`` is wrapped: before the original installs a
handler, the listeners are told the signal and the handler, and the one whose
timer sends that signal stops it first.  A signal already sent is handled by our
handler as the call returns (the app's is not in place yet).

The wrapper calls the original, and is taken off when the last listener goes
unless the app replaced it meanwhile (looptools.inapp._patch.ModuleHook, as
looptools.inapp._wakeup).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from looptools.inapp._patch import ModuleHook


def _make(original: Callable[..., Any]) -> Callable[..., Any]:
    def signal_(signalnum: Any, handler: Any, /) -> Any:
        _hook.tell(signalnum, handler)
        return original(signalnum, handler)

    return signal_


_hook = ModuleHook(signal, "signal", _make)


def watch(listener: Callable[[int, Any], None]) -> bool:
    """Call ``listener(signalnum, handler)`` before each ``signal.signal`` installs a
    handler (on the main thread, where Python sets handlers); False where that cannot
    be done."""
    return _hook.watch(listener)


def unwatch(listener: Callable[[int, Any], None]) -> None:
    """Any thread: stop calling ``listener``; the last one out puts the original back
    (unless the app replaced ours meanwhile: then its own stays)."""
    _hook.unwatch(listener)


def forget() -> None:
    """In a child made by ``fork``: put the original back and watch nothing."""
    _hook.forget()
