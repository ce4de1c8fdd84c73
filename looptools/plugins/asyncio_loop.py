"""Plain asyncio (and uvloop): time callbacks at ``asyncio.events.Handle._run``."""

from __future__ import annotations

import asyncio
import asyncio.base_events
import asyncio.events
import collections
import selectors
import threading
from asyncio import format_helpers
from collections.abc import Callable
from time import perf_counter
from typing import TYPE_CHECKING, Any

from looptools.inapp._ourthreads import block_process_signals
from looptools.plugins import Driver, LoopPlugin

if TYPE_CHECKING:
    from looptools.inapp.state import LoopState

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


#: how far up from the loop thread's innermost frame a running callback is looked for
FIND_DEPTH = 256


def _stdlib_code(run: Any) -> Any:
    """``run``'s code if it is asyncio's own ``Handle._run``, else None."""
    code = getattr(run, "__code__", None)
    if code is None or code.co_filename != asyncio.events.__file__ \
            or code.co_name != "_run":
        return None
    return code


def stdlib_run() -> Any:
    """``Handle._run``'s code if it is asyncio's own (nobody wrapped it), else None."""
    return _stdlib_code(asyncio.events.Handle.__dict__.get("_run"))


_RUN_ONCE = asyncio.base_events.BaseEventLoop._run_once.__code__  # type: ignore[attr-defined]


def running_handle(frame: Any, run_code: Any) -> Any:
    """The handle whose ``_run`` is innermost on the stack ending at ``frame``, or None.

    Looked up from the stack instead of stored by a hook on every callback:
    the watchdog calls this at each look (the ticks on the loop thread itself,
    or the watchdog thread with the loop thread's top frame).  A loop iteration
    (``_run_once``) met first means the loop itself runs there, between
    callbacks or waiting for I/O, even inside a callback further out: a loop
    iterated from within a callback (qtinter runs ``app.exec()`` in a task step
    and the loop inside Qt) is not in that callback while it waits.
    """
    depth = FIND_DEPTH
    while frame is not None and depth:
        code = frame.f_code
        if code is run_code:
            return frame.f_locals.get("self")
        if code is _RUN_ONCE:
            return BETWEEN_RUNS
        frame = frame.f_back
        depth -= 1
    return None


#: what :func:`running_handle` returns when the loop thread is in the loop's own
#: iteration (between callbacks, or waiting for I/O): a sign of life, as a run
#: counted by the hook was
BETWEEN_RUNS = object()


class EndWatch:
    """Times the end of one long run exactly, with no hook on every callback.

    When the watchdog has seen the same run at two looks, it *arms* this:
    ``Handle._run`` and the loop selector's ``select`` are replaced until the
    loop thread next reaches either — the next callback or the wait for I/O,
    one of which follows the end of every run — and that first call reads the
    clock, ends the run (``LoopState.ended``) and puts both back.  A loop
    healthy between looks never sees the replacements.
    """

    def __init__(self, state: LoopState, run_code: Any) -> None:
        self.state = state
        self.loop = state.loop
        self.installed = False
        self._handle: Any = None
        self._n = 0
        self._original_run = asyncio.events.Handle.__dict__["_run"]
        self._selector = getattr(self.loop, "_selector", None)
        self._had_select: Any = _NOTHING
        self._select: Any = None
        loop = self.loop
        original = self._original_run

        def _run(handle: Any) -> Any:
            if self.installed and handle._loop is loop:
                self.reached()
            return original(handle)

        _run.__qualname__ = "Handle._run"
        _run.__wrapped__ = original  # type: ignore[attr-defined]
        self._run = _run

    def arm(self, handle: Any, n: int) -> None:
        """Any thread: time the end of run ``n`` (``handle``) exactly."""
        if self.installed:
            return
        self._handle, self._n = handle, n
        selector = self._selector
        own = getattr(selector, "__dict__", None)
        if own is not None:
            self._had_select = own.get("select", _NOTHING)
            inner = selector.select  # type: ignore[union-attr]

            def select(*args: Any, **kwargs: Any) -> Any:
                self.reached()
                return inner(*args, **kwargs)

            select.__wrapped__ = inner  # type: ignore[attr-defined]
            self._select = select
            own["select"] = select
        self.installed = True
        asyncio.events.Handle._run = self._run  # type: ignore[method-assign,assignment]

    def reached(self) -> None:
        """Loop thread: the armed run is over (a callback or the I/O wait began)."""
        if not self.installed:
            return
        handle, n = self._handle, self._n
        self.disarm()
        self.state.ended(handle, n)

    def disarm(self) -> None:
        """Put ``Handle._run`` and ``select`` back exactly as they were."""
        if not self.installed:
            return
        self.installed = False
        if asyncio.events.Handle.__dict__.get("_run") is self._run:
            asyncio.events.Handle._run = self._original_run  # type: ignore[method-assign]
        own = getattr(self._selector, "__dict__", None)
        if own is not None and own.get("select") is self._select:
            if self._had_select is _NOTHING:
                own.pop("select", None)
            else:
                own["select"] = self._had_select
        self._had_select = _NOTHING
        self._select = None
        self._handle = None


_NOTHING = object()


def install_handle_timing(state: LoopState, precise: bool = False) -> None:
    """Replace ``Handle._run`` with a timed version for ``state.loop``'s handles.

    The replacement runs the callback itself instead of calling the original
    ``_run``, so it adds no Python frame.  Handles of other loops (worker
    threads running their own ``asyncio.run``) take the original path.  The
    lean version stores two attributes per callback and reads no clock; the
    precise one reads the clock at both ends (see ``looptools.inapp.state``).
    Calling it again switches between the two.
    """
    global _original_run
    original = _original_run or asyncio.events.Handle.__dict__["_run"]
    st = state
    loop = state.loop
    ended = state.ended

    def _run(self: Any) -> Any:
        if self._loop is not loop:
            return original(self)
        st.cur = self
        st.n = n = st.n + 1
        try:
            self._context.run(self._callback, *self._args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            _callback_failed(self, exc)
        finally:
            st.cur = None
        if st.armed:
            ended(self, n)
        return None

    def _run_precise(self: Any) -> Any:
        if self._loop is not loop:
            return original(self)
        st.cur = self
        st.n = n = st.n + 1
        t0 = st.t0 = perf_counter()
        st.t0_n = n
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
        if st.armed == n:
            st.armed = 0
        if t1 - t0 > st.thr and st.slow is not None:
            st.slow(self, t0, t1 - t0)
        return None

    def _run_chained(self: Any) -> Any:
        # Handle._run was already wrapped (by the app or another tool): call it.
        if self._loop is not loop:
            return original(self)
        st.cur = self
        st.n = n = st.n + 1
        t0 = st.t0 = perf_counter()
        st.t0_n = n
        try:
            return original(self)
        finally:
            t1 = st.last_end = perf_counter()
            st.cur = None
            st.busy += t1 - t0
            if st.armed == n:
                st.armed = 0
            if t1 - t0 > st.thr and st.slow is not None:
                st.slow(self, t0, t1 - t0)

    if _stdlib_code(original) is None:
        chosen = _run_chained
    elif precise:
        chosen = _run_precise
    else:
        chosen = _run
    chosen.__qualname__ = "Handle._run"
    chosen.__wrapped__ = original  # type: ignore[attr-defined]
    _original_run = original
    asyncio.events.Handle._run = chosen  # type: ignore[method-assign]


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
        self._state: Any = None
        self._timer: Any = None
        self._stop: threading.Event | None = None
        self._driver: Driver | None = None
        self._job: Callable[[float, float], float] | None = None
        self._generation = 0

    @classmethod
    def matches(cls, loop: Any) -> bool:
        """asyncio's selector loop or a subclass that keeps its loop iteration.

        Only there is the loop's idle wait known to be ``selector.select``
        (the idle check below); a loop that iterates some other way (a Qt or
        trio integration, Windows' proactor) is not this kind.
        """
        return (isinstance(loop, asyncio.base_events.BaseEventLoop)
                and getattr(type(loop), "_run_once", None)
                is getattr(asyncio.base_events.BaseEventLoop, "_run_once", None)
                and isinstance(getattr(loop, "_selector", None), selectors.BaseSelector))

    def queued_handles(self) -> list[Any] | None:
        ready = getattr(self.loop, "_ready", None)  # BaseEventLoop's (and a subclass's)
        return list(ready) if isinstance(ready, collections.deque) else None

    def info(self) -> dict[str, Any]:
        info = super().info()
        info["callback_timing"] = self._timed
        return info

    def install_timing(self, state: LoopState) -> bool:
        if not self.is_qt:
            state.idle_check = _waiting_in_selector
        self._timed = True
        self._state = state
        self._choose_timing(self.precise_wanted())
        return True

    def _choose_timing(self, precise: bool) -> None:
        """The precise hook, or on asyncio's own loop no hook at all (see _state)."""
        state = self._state
        run_code = None if precise or self.is_qt or self.kind != "asyncio" else stdlib_run()
        # Only where the loop idles in the standard library's selector: a tick that
        # lands in its select says "idle", and one in a callback finds the handle.  A
        # loop that idles elsewhere (qtinter's selector yields to Qt's exec) shows its
        # short runs only through the hook (they begin and end between two looks).
        if run_code is not None and type(getattr(self.loop, "_selector", None)).__module__ \
                == selectors.__name__:
            uninstall_handle_timing()
            state.run_code = run_code
            if state.end_watch is None:
                state.end_watch = EndWatch(state, run_code)
            return
        self._stop_frame_mode()
        install_handle_timing(state, precise)

    def _stop_frame_mode(self) -> None:
        state = self._state
        if state is not None and state.end_watch is not None:
            state.end_watch.disarm()
            state.end_watch = None
            state.run_code = None
            state.cur = None

    def thread_fds(self) -> list[int] | None:
        # The probes' call_soon_threadsafe writes to the selector loop's self-pipe.
        fds = []
        for name in ("_ssock", "_csock"):
            sock = getattr(self.loop, name, None)
            fileno = getattr(sock, "fileno", None)
            if fileno is None:
                return None
            fds.append(fileno())
        return fds if all(fd >= 0 for fd in fds) else None

    def _retime(self) -> bool:
        if self._timed:
            self._choose_timing(self.precise_wanted())
        return self._timed

    def uninstall_timing(self) -> None:
        if self._timed:
            self._stop_frame_mode()
            uninstall_handle_timing()
            self._timed = False

    def heartbeat_interval_s(self, interval_s: float) -> float:
        # Each probe costs the loop thread a few GIL hand-offs, so probes go at
        # most 10 times a second; liveness between them comes from callbacks and
        # from the watchdog seeing the loop wait in its selector.
        return max(interval_s, PROBE_INTERVAL_S)

    def start_heartbeat(self, beat: Callable[[float | None], None], interval_s: float,
                        driver: Driver | None = None) -> None:
        """Probe the loop from another thread with ``call_soon_threadsafe``.

        A repeating ``call_later`` would leave a timer in the loop's heap at all
        times, and with any timer scheduled ``BaseEventLoop._run_once`` reads the
        clock twice more on every iteration: ~10 % on a timer-free callback chain
        (benchmarks/overhead.py).  A probe is queued only when sent; its lag is
        how long a newly ready callback waited to run.

        The probes are sent by ``driver`` (the stall watchdog's thread, which
        wakes every few ms anyway) when there is one, else by a pacemaker thread.
        """
        self.stop_heartbeat()
        loop = self.loop
        interval_s = self.heartbeat_interval_s(interval_s)
        generation = self._generation = self._generation + 1
        intended = perf_counter() + interval_s

        def probe(sent: float, gen: int) -> None:
            if gen == self._generation:  # not a probe left over from an earlier run
                beat(sent)

        def pace(now: float, dated: float = 0.0) -> float:
            """Send the probe if due; returns when the next one is due."""
            # A probe is dated when it was *meant* to be sent: if the sender woke
            # late, something held the GIL, and the loop thread could not have
            # run a callback made ready at that moment either.  A driver that
            # sends on its own schedule (the watchdog's ticks, every few ms) says
            # when that schedule was due: waiting for the next tick is not lag.
            nonlocal intended
            if now >= intended:
                # RuntimeError if the loop was closed
                loop.call_soon_threadsafe(probe, max(intended, dated), generation)
                intended = max(intended + interval_s, now)
            return intended

        if driver is not None:
            self._driver = driver
            self._job = pace
            driver.add_job(pace)
            return
        stop = threading.Event()

        def pacemaker() -> None:
            block_process_signals()
            while not stop.wait(max(0.0, intended - perf_counter())):
                try:
                    pace(perf_counter())
                except RuntimeError:  # the loop was closed
                    return

        self._stop = stop
        threading.Thread(target=pacemaker, name="looptools-pacemaker", daemon=True).start()

    def stop_heartbeat(self) -> None:
        if self._stop is not None:
            self._stop.set()
            self._stop = None
        if self._job is not None and self._driver is not None:
            self._driver.remove_job(self._job)
        self._job = self._driver = None
        self._generation += 1

    def forget_heartbeat(self) -> None:
        # The pacemaker thread did not survive the fork; its Event may be locked.
        self._stop = None
        self._job = self._driver = None
        self._generation += 1


class UnknownLoopPlugin(AsyncioPlugin):
    """A loop looptools does not know: watched conservatively.

    Its callbacks are timed if its handles run through ``Handle._run``, and it
    is probed from another thread for lag, but how it waits when idle is
    unknown, so time outside a timed callback is never called a stall.
    """

    kind = "unknown"
    conservative = True
    not_measured = ("stalls outside asyncio callbacks (Qt slots, timers, paint events)",
                    "idle time (the loop's wait is not recognised)")

    @classmethod
    def matches(cls, loop: Any) -> bool:
        return True

    def install_timing(self, state: LoopState) -> bool:
        install_handle_timing(state, self.precise_wanted())
        self._timed = True
        self._state = state
        return True

    def thread_fds(self) -> list[int] | None:
        return None  # how it wakes up is unknown: share the descriptor table


class UvloopPlugin(AsyncioPlugin):
    """uvloop's handles are Cython objects that cannot be patched: no callback timing.

    Stalls (heartbeat + watchdog), loop lag and task audits still work.
    """

    kind = "uvloop"
    not_measured = ("callback timing (uvloop's handles are Cython)",)

    def install_timing(self, state: LoopState) -> bool:
        return False

    def queued_handles(self) -> list[Any] | None:
        return None  # libuv's queues are not Python's

    def thread_fds(self) -> list[int] | None:
        # The heartbeat is a call_later timer on the loop itself: the watchdog thread
        # never wakes the loop (libuv's wake-up descriptors stay the app's), so it
        # needs none of the app's descriptors.  Sharing the table cost uvloop's
        # callback chain ~10 % (benchmarks/as_users.py --breakdown, "stalls only").
        return []

    def heartbeat_interval_s(self, interval_s: float) -> float:
        return interval_s

    def start_heartbeat(self, beat: Callable[[float | None], None], interval_s: float,
                        driver: Driver | None = None) -> None:
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

    def forget_heartbeat(self) -> None:
        self._timer = None
