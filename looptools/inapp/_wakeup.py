"""The app's signal wakeup descriptor, and our signals that would write to it.

CPython's C handler of every signal that has a Python handler writes the signal's
number to the descriptor the app set with ``signal.set_wakeup_fd``, whoever the
signal is for.  Our ticks are such a signal, ~200 a second.  Measured in 2 idle
seconds under looptools, where without it nothing woke: an asyncio loop with
``loop.add_signal_handler`` (its self-pipe is the wakeup descriptor) read 420
bytes of the ticks' signal and woke as often; the PySide/PyQt recipe for Ctrl-C
(a ``QSocketNotifier`` on the read end) ran the app's slot 370-410 times.  So
the ticks stop while the app has a wakeup descriptor, and start again when it
takes it away (the watchdog then looks by itself, as without ticks) — unless
the descriptor is the watched asyncio loop's own self-pipe, whose reader drops
a signal it has no handler for (``_process_self_data``): the loop wakes, as the
tick's ``EINTR`` wakes it anyway, and the app sees nothing.

There is no getter: :func:`watch` learns the descriptor in force by setting it
to -1 and back (the app's ``warn_on_full_buffer`` cannot be read, so one that
was set before looptools attached comes back with the default, True; an app
attached by ``LOOPTOOLS=1`` has none yet: the monitor watches from its start),
and from then on by wrapping ``signal.set_wakeup_fd``, which calls the original
first and is taken off when the last watcher goes (a library that kept a
reference to it, as uvloop does at import, goes on calling it: it still works).
A C extension that sets it through the C API is not seen.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from typing import Any

from looptools.inapp._patch import ModuleHook

#: The app's wakeup descriptor, -1 for none (as far as :func:`watch` could tell).
fd: object = -1


def _seen(new: object) -> None:
    global fd
    fd = new
    _hook.tell(new != -1)


def _make(original: Callable[..., Any]) -> Callable[..., Any]:
    def set_wakeup_fd(new: Any, /, **kwargs: Any) -> Any:
        # Told before a descriptor is set, so that what sends our signals stops
        # first (one sent a moment before would otherwise be handled, and
        # written, just after); told after one is taken away.
        before = fd
        if new != -1:
            _seen(new)
        try:
            previous = original(new, **kwargs)
        except BaseException:
            if new != -1:
                _seen(before)  # refused: as it was
            raise
        if new == -1:
            _seen(new)
        return previous

    return set_wakeup_fd


_hook = ModuleHook(signal, "set_wakeup_fd", _make)


def _learn(original: Callable[..., Any]) -> bool:
    """The descriptor in force, learnt by setting it to -1 and back (main thread)."""
    global fd
    if threading.current_thread() is not threading.main_thread():
        return False
    try:
        old = original(-1)
        if old != -1:
            original(old)
    except (ValueError, OSError, TypeError):
        return False
    fd = old
    return True


def watch(listener: Callable[[bool], None]) -> bool:
    """Main thread: call ``listener(has_fd)`` at each ``signal.set_wakeup_fd`` of the
    app's — before the original sets a descriptor (and again, with the old state, if
    it refuses it), after it takes one away; False (nothing watched) where that
    cannot be done."""
    return _hook.watch(listener, ready=_learn)


def unwatch(listener: Callable[[bool], None]) -> None:
    """Any thread: stop calling ``listener``; the last one out puts the original back
    (unless the app replaced ours meanwhile: then its own stays)."""
    _hook.unwatch(listener)


def forget() -> None:
    """In a child made by ``fork``: put the original back and watch nothing."""
    _hook.forget()
