"""Plain asyncio (and uvloop): time callbacks at ``asyncio.events.Handle._run``."""

from __future__ import annotations

import asyncio
import asyncio.events
from asyncio import format_helpers
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from looptools.plugins import LoopPlugin

if TYPE_CHECKING:
    from looptools._state import LoopState

_original_run: Callable[[Any], None] | None = None
_patched_for: LoopState | None = None


def _callback_failed(handle: Any, exc: BaseException) -> None:
    # What asyncio.events.Handle._run does when a callback raises.
    callback_source = format_helpers._format_callback_source(handle._callback, handle._args)
    context: dict[str, Any] = {
        "message": f"Exception in callback {callback_source}",
        "exception": exc,
        "handle": handle,
    }
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)


def install_handle_timing(state: LoopState) -> None:
    """Replace ``Handle._run`` with a timed version for ``state.loop``'s handles.

    The replacement runs the callback itself instead of calling the original
    ``_run``, so a monitored callback costs two clock reads and a few stores,
    not an extra Python frame.  Handles of other loops (worker threads running
    their own ``asyncio.run``) take the original path.
    """
    global _original_run, _patched_for
    uninstall_handle_timing()
    original = asyncio.events.Handle.__dict__["_run"]
    st = state

    def _run(self: Any) -> None:
        if self._loop is not st.loop:
            return original(self)
        st.cur = self
        t0 = st.cur_t0 = perf_counter()
        try:
            self._context.run(self._callback, *self._args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            _callback_failed(self, exc)
        finally:
            t1 = st.last_end = perf_counter()
            st.cur = None
        if t1 - t0 > st.thr and st.slow is not None:
            st.slow(self, t0, t1 - t0)
        return None

    _run.__qualname__ = "Handle._run"
    _run.__wrapped__ = original  # type: ignore[attr-defined]
    _original_run = original
    _patched_for = state
    asyncio.events.Handle._run = _run  # type: ignore[method-assign]


def uninstall_handle_timing() -> None:
    global _original_run, _patched_for
    if _original_run is not None:
        asyncio.events.Handle._run = _original_run  # type: ignore[method-assign,assignment]
    _original_run = None
    _patched_for = None


class AsyncioPlugin(LoopPlugin):
    kind = "asyncio"

    def __init__(self, loop: Any) -> None:
        super().__init__(loop)
        self._timer: asyncio.TimerHandle | None = None
        self._timed = False

    @classmethod
    def matches(cls, loop: Any) -> bool:
        return isinstance(loop, asyncio.BaseEventLoop)

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["callback_timing"] = self._timed
        return info

    def install_timing(self, state: LoopState) -> bool:
        install_handle_timing(state)
        self._timed = True
        return True

    def uninstall_timing(self) -> None:
        if self._timed:
            uninstall_handle_timing()
            self._timed = False

    def start_heartbeat(self, beat: Callable[[], None], interval_s: float) -> None:
        loop = self.loop

        def _beat() -> None:
            self._timer = loop.call_later(interval_s, _beat)
            beat()

        self._timer = loop.call_later(interval_s, _beat)

    def stop_heartbeat(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class UvloopPlugin(AsyncioPlugin):
    """uvloop's handles are Cython objects that cannot be patched: no callback timing.

    Stalls (heartbeat + watchdog), loop lag and task audits still work.
    """

    kind = "uvloop"

    @classmethod
    def matches(cls, loop: Any) -> bool:
        return type(loop).__module__.startswith("uvloop")

    def install_timing(self, state: LoopState) -> bool:
        return False
