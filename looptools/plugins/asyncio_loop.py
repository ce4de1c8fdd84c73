"""Plain asyncio (and uvloop): time callbacks at ``asyncio.events.Handle._run``."""

from __future__ import annotations

import asyncio
import asyncio.events
import threading
from asyncio import format_helpers
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from looptools.plugins import LoopPlugin

if TYPE_CHECKING:
    from looptools._state import LoopState

PROBE_INTERVAL_S = 0.1

_original_run: Callable[[Any], None] | None = None


def _waiting_in_selector(frame: Any) -> bool:
    """True when ``frame`` (the loop thread's top frame) is the selector's wait."""
    if frame is None:
        return False
    code = frame.f_code
    return code.co_name in ("select", "poll") and code.co_filename.endswith("selectors.py")


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
    global _original_run
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
        st.busy += t1 - t0  # for the Qt dispatcher's busy accounting (qasync)
        if t1 - t0 > st.thr and st.slow is not None:
            st.slow(self, t0, t1 - t0)
        return None

    _run.__qualname__ = "Handle._run"
    _run.__wrapped__ = original  # type: ignore[attr-defined]
    _original_run = original
    asyncio.events.Handle._run = _run  # type: ignore[method-assign]


def uninstall_handle_timing() -> None:
    global _original_run
    if _original_run is not None:
        asyncio.events.Handle._run = _original_run  # type: ignore[method-assign,assignment]
    _original_run = None


class AsyncioPlugin(LoopPlugin):
    kind = "asyncio"

    def __init__(self, loop: Any) -> None:
        super().__init__(loop)
        self._timed = False
        self._timer: Any = None
        self._stop: threading.Event | None = None
        self._generation = 0

    @classmethod
    def matches(cls, loop: Any) -> bool:
        return isinstance(loop, asyncio.BaseEventLoop)

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["callback_timing"] = self._timed
        return info

    def install_timing(self, state: LoopState) -> bool:
        install_handle_timing(state)
        if not self.is_qt:
            state.idle_check = _waiting_in_selector
        self._timed = True
        return True

    def uninstall_timing(self) -> None:
        if self._timed:
            uninstall_handle_timing()
            self._timed = False

    def start_heartbeat(self, beat: Callable[[float | None], None], interval_s: float) -> None:
        """Probe the loop from a pacemaker thread with ``call_soon_threadsafe``.

        A repeating ``call_later`` would leave a timer in the loop's heap at all
        times, and with any timer scheduled ``BaseEventLoop._run_once`` reads the
        clock twice more on every iteration: ~10 % on a timer-free callback chain
        (benchmarks/overhead.py).  A probe is queued only when sent; its lag is
        how long a newly ready callback waited to run.
        """
        self.stop_heartbeat()
        loop = self.loop
        stop = threading.Event()
        # Each probe costs the loop thread a few GIL hand-offs, so probes go at
        # most 10 times a second; liveness between them comes from callbacks and
        # from the watchdog seeing the loop wait in its selector.
        interval_s = max(interval_s, PROBE_INTERVAL_S)
        generation = self._generation = self._generation + 1

        def probe(sent: float, gen: int) -> None:
            if gen == self._generation:  # not a probe left over from an earlier run
                beat(sent)

        def pace() -> None:
            # A probe is dated when it was *meant* to be sent: if this thread woke
            # late, something held the GIL, and the loop thread could not have
            # run a callback made ready at that moment either.
            intended = perf_counter() + interval_s
            while not stop.wait(max(0.0, intended - perf_counter())):
                try:
                    loop.call_soon_threadsafe(probe, intended, generation)
                except RuntimeError:  # the loop was closed
                    return
                intended = max(intended + interval_s, perf_counter())

        self._stop = stop
        threading.Thread(target=pace, name="looptools-pacemaker", daemon=True).start()

    def stop_heartbeat(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None
        self._generation += 1


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

    def start_heartbeat(self, beat: Callable[[float | None], None], interval_s: float) -> None:
        # uvloop keeps its timers in C: a repeating call_later costs next to nothing.
        self.stop_heartbeat()
        loop = self.loop

        def _beat() -> None:
            self._timer = loop.call_later(interval_s, _beat)
            beat(None)

        self._timer = loop.call_later(interval_s, _beat)

    def stop_heartbeat(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:
            timer.cancel()
