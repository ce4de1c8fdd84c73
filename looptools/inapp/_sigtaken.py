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

Same shape as looptools.inapp._wakeup: the wrapper calls the original, and is
taken off when the last listener goes unless the app replaced it meanwhile.  A
library that kept a reference to the original (``from signal import signal``)
is not seen.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

from looptools.inapp._patch import dress_as

_lock = threading.Lock()
_listeners: list[Callable[[int, Any], None]] = []
_original: Callable[..., Any] | None = None
_wrapper: Callable[..., Any] | None = None


def watch(listener: Callable[[int, Any], None]) -> bool:
    """Call ``listener(signalnum, handler)`` before each ``signal.signal`` installs a
    handler (on the main thread, where Python sets handlers); False where that cannot
    be done."""
    global _original, _wrapper
    with _lock:
        if _wrapper is not None:
            if listener not in _listeners:
                _listeners.append(listener)
            return True
        original = getattr(signal, "signal", None)
        if original is None:
            return False

        def signal_(signalnum: Any, handler: Any, /) -> Any:
            for each in list(_listeners):
                try:
                    each(signalnum, handler)
                except Exception:  # a listener's failure is not the app's
                    pass
            return original(signalnum, handler)

        dress_as(signal_, original)
        setattr(signal, "signal", signal_)  # noqa: B010 (typed as the builtin)
        _original, _wrapper = original, signal_
        _listeners.append(listener)
        return True


def unwatch(listener: Callable[[int, Any], None]) -> None:
    """Any thread: stop calling ``listener``; the last one out puts the original back
    (unless the app replaced ours meanwhile: then its own stays)."""
    with _lock:
        try:
            _listeners.remove(listener)
        except ValueError:
            return
        if not _listeners:
            _put_back()


def forget() -> None:
    """In a child made by ``fork``: put the original back and watch nothing, taking no
    lock (one held by a thread of the parent's is never released here)."""
    global _lock
    _lock = threading.Lock()
    _listeners.clear()
    _put_back()


def _put_back() -> None:
    """The original back in ``signal``, unless the app replaced our wrapper since."""
    global _original, _wrapper
    if _wrapper is not None and getattr(signal, "signal", None) is _wrapper:
        setattr(signal, "signal", _original)  # noqa: B010
    _original = _wrapper = None
