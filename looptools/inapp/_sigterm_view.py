"""The app sees ``SIG_DFL`` where our SIGTERM handler is installed.

The monitor takes SIGTERM where the app had no handler of its own, to write the
report before the process dies of it (looptools.inapp.monitor).  An app that asks
what was there sees it: ``signal.getsignal(SIGTERM)``, or what ``signal.signal``
returns as it installs its own.  Apps chain to it in two common ways, which
``SIG_DFL`` and a callable handler take apart differently:

* ``if callable(prev): prev(signum, frame)``, then shut down gracefully: with
  ``SIG_DFL`` (an int) nothing is called;
* the same, ``elif prev == SIG_DFL:`` die of the signal (``os.kill`` again, or
  ``sys.exit(128 + signum)``).

No one handler of ours can do what ``SIG_DFL`` does in both (a fresh-eyes trial
found each broken in turn), so the app is shown ``SIG_DFL``: both wrappers call
the original and hide our handler, and nothing else.  Our own code asks the
originals (:data:`getsignal`).  Taken off when the monitor stops, unless the app
replaced a wrapper meanwhile (then its own stays, and ours goes on being harmless).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from typing import Any

from looptools.inapp._patch import dress_as

#: ``signal.getsignal`` as it was before any wrapper of ours: what our own code asks
getsignal: Callable[[int], Any] = signal.getsignal
_installed: tuple[Any, Any, Any, Any] | None = None  # originals, then our wrappers


def hide(ours: Callable[..., Any]) -> None:
    """(Main thread.)  Show the app ``SIG_DFL`` wherever ``ours`` is SIGTERM's handler."""
    global _installed, getsignal
    if _installed is not None:
        return
    original_get, original_set = signal.getsignal, signal.signal
    getsignal = original_get

    def _shown(signalnum: Any, handler: Any) -> Any:
        if handler == ours and signalnum == signal.SIGTERM:
            return signal.SIG_DFL
        return handler

    def getsignal_(signalnum: Any, /) -> Any:
        return _shown(signalnum, original_get(signalnum))

    def signal_(signalnum: Any, handler: Any, /) -> Any:
        return _shown(signalnum, original_set(signalnum, handler))

    dress_as(getsignal_, original_get)
    dress_as(signal_, original_set)
    setattr(signal, "getsignal", getsignal_)  # noqa: B010 (typed as the builtin)
    setattr(signal, "signal", signal_)  # noqa: B010
    _installed = (original_get, original_set, getsignal_, signal_)


def show() -> None:
    """Put the originals back (those the app did not replace meanwhile)."""
    global _installed
    installed, _installed = _installed, None
    if installed is None:
        return
    original_get, original_set, getsignal_, signal_ = installed
    if getattr(signal, "getsignal", None) is getsignal_:
        setattr(signal, "getsignal", original_get)  # noqa: B010
    if getattr(signal, "signal", None) is signal_:
        setattr(signal, "signal", original_set)  # noqa: B010
