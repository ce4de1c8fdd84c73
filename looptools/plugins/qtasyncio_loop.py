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


class QtAsyncioPlugin(QtLoopPlugin, LoopPlugin):
    kind = "qtasyncio"

    def __init__(self, loop: Any) -> None:
        super().__init__(loop)
        self._original: Any = None

    @classmethod
    def matches(cls, loop: Any) -> bool:
        try:
            from PySide6.QtAsyncio.events import QAsyncioEventLoop
        except ImportError:
            return False
        return isinstance(loop, QAsyncioEventLoop)

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["callback_timing"] = self._original is not None
        info["qt_dispatcher"] = dispatcher_name(self.dispatcher())
        return info

    def install_timing(self, state: Any) -> bool:
        from PySide6.QtAsyncio.events import QAsyncioHandle

        original = QAsyncioHandle.__dict__["_cb"]
        st = state

        def _cb(self: Any) -> None:
            if self._loop is not st.loop:
                return original(self)
            st.cur = self
            t0 = st.cur_t0 = perf_counter()
            try:
                original(self)
            finally:
                t1 = st.last_end = perf_counter()
                st.cur = None
            st.busy += t1 - t0
            if t1 - t0 > st.thr and st.slow is not None:
                st.slow(self, t0, t1 - t0)
            return None

        _cb.__qualname__ = "QAsyncioHandle._cb"
        _cb.__wrapped__ = original  # type: ignore[attr-defined]
        QAsyncioHandle._cb = _cb  # type: ignore[method-assign]
        self._original = original
        return True

    def uninstall_timing(self) -> None:
        if self._original is None:
            return
        from PySide6.QtAsyncio.events import QAsyncioHandle

        QAsyncioHandle._cb = self._original  # type: ignore[method-assign]
        self._original = None
