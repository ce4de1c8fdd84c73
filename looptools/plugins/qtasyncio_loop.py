"""PySide6.QtAsyncio: callbacks run through ``QAsyncioHandle._cb``, never ``Handle._run``.

Each handle schedules ``lambda: self._cb()``, which looks ``_cb`` up when the
timer fires, so a class-level replacement sees every callback.  Never ``repr()``
a ``QAsyncioTimerHandle``: it skips ``Handle.__init__`` and its repr raises.
"""

from __future__ import annotations

from time import perf_counter
from typing import Any

from looptools.plugins import LoopPlugin
from looptools.plugins._qt import QtLoopPlugin, dispatcher_name
from looptools.plugins._qtbinding import QtBinding

#: The names ``QAsyncioHandle._cb`` uses in the PySide6 versions whose body the
#: replacement repeats inline (checked on 6.11): run the callback in its context if the
#: handle is pending, then mark it done.  Any other ``_cb`` is called instead.
_KNOWN_CB_NAMES = ("_state", "QAsyncioHandle", "HandleState", "PENDING", "_context", "run",
                   "_callback", "_cb_args", "DONE")


def _known_cb(function: Any) -> bool:
    code = getattr(function, "__code__", None)
    return code is not None and code.co_names == _KNOWN_CB_NAMES and code.co_argcount == 1


class QtAsyncioPlugin(QtLoopPlugin, LoopPlugin):
    kind = "qtasyncio"

    def __init__(self, loop: Any, binding: QtBinding) -> None:
        super().__init__(loop)
        self.binding = binding
        self._original: Any = None
        self._state: Any = None

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["callback_timing"] = self._original is not None
        info["qt_dispatcher"] = dispatcher_name(self.dispatcher())
        info.update(self.qt_info())
        return info

    def install_timing(self, state: Any) -> bool:
        from PySide6.QtAsyncio.events import QAsyncioHandle

        precise = self.precise_wanted()
        original = self._original or QAsyncioHandle.__dict__["_cb"]
        st = state
        loop = state.loop
        ended = state.ended

        # Lean and precise as for Handle._run (looptools.inapp.state).  When _cb is
        # the one we know (below), the replacement does its work inline, like
        # the Handle._run replacement, instead of adding a frame to call it.
        inline = _known_cb(original)
        pending = QAsyncioHandle.HandleState.PENDING
        done = QAsyncioHandle.HandleState.DONE

        def _cb(self: Any) -> None:
            if self._loop is not loop:
                return original(self)
            if inline and self._state is not pending:
                return None  # cancelled: the timer fires, nothing runs
            st.cur = self
            st.n = n = st.n + 1
            try:
                if not inline:
                    original(self)
                elif self._context is not None:
                    self._context.run(self._callback, *self._cb_args)
                    self._state = done
                else:
                    self._callback(*self._cb_args)
                    self._state = done
            finally:
                st.cur = None
            if st.armed:
                ended(self, n)
            return None

        def _cb_precise(self: Any) -> None:
            if self._loop is not loop:
                return original(self)
            if inline and self._state is not pending:
                return None
            st.cur = self
            st.n = n = st.n + 1
            t0 = st.t0 = perf_counter()
            st.t0_n = n
            try:
                if not inline:
                    original(self)
                elif self._context is not None:
                    self._context.run(self._callback, *self._cb_args)
                    self._state = done
                else:
                    self._callback(*self._cb_args)
                    self._state = done
            finally:
                t1 = st.last_end = perf_counter()
                st.cur = None
            st.busy += t1 - t0
            if st.armed == n:
                st.armed = 0
            if t1 - t0 > st.thr and st.slow is not None:
                st.slow(self, t0, t1 - t0)
            return None

        chosen = _cb_precise if precise else _cb
        chosen.__qualname__ = "QAsyncioHandle._cb"
        chosen.__wrapped__ = original  # type: ignore[attr-defined]
        QAsyncioHandle._cb = chosen  # type: ignore[method-assign]
        self._original = original
        self._state = state
        return True

    def _retime(self) -> bool:
        if self._original is None:
            return False
        self.install_timing(self._state)
        return True

    def uninstall_timing(self) -> None:
        if self._original is None:
            return
        from PySide6.QtAsyncio.events import QAsyncioHandle

        QAsyncioHandle._cb = self._original  # type: ignore[method-assign]
        self._original = None
