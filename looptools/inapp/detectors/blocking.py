"""Blocking calls on the loop thread: blockbuster's wrappers, and our own for file opens.

blockbuster replaces ``time.sleep``, ``os`` functions, socket methods and more
with checkers that raise ``BlockingError`` when called from a thread with a
running asyncio loop.  We wrap each checker once more: on ``BlockingError`` from
the monitored loop's thread we count the call and its application call site
and then run the real function, so the app behaves exactly as without us.  With
``blocking_strict`` the error is raised instead (for tests).

Only what can be patched by plain assignment and put back the same way is
patched: module functions and methods of Python classes.  blockbuster also
patches methods of C types in place (``io.BufferedWriter.write``,
``io.TextIOWrapper.write``, ``sqlite3.Cursor.execute``, ``threading.Lock.acquire``,
``os.scandir``'s iterator) through ``forbiddenfruit``; patching
``io.BufferedWriter.write`` that way crashes the interpreter at exit whenever
stdout is a file or a pipe (docs/design.md, "Blocking calls"), so those are
never activated.  What they caught is seen instead where the call starts, by
wrapping module functions the same plain way: a file opened on the loop thread
(``builtins.open`` and ``io.open``), name lookups (``socket.getaddrinfo``,
``gethostbyname``, ``gethostbyaddr``), ``sqlite3.connect`` (when sqlite3 is
imported before the loop starts) and the ``os`` calls blockbuster leaves alone
(``os.open``, ``pread``, ``pwrite``, ``fsync``).  Not an audit hook: a hook cannot be removed, and
CPython calls it for every audited event of the process — qasync's ``call_soon``
reads a function's ``__code__``, an audited event, on every call, and the hook
alone cost a qasync callback chain ~7 % (``benchmarks/as_users.py --breakdown``).

Calls from other threads are not the loop's: they are ignored even if the thread
has a running loop (QtAsyncio's ``run_in_executor`` sets one in its workers),
unless it is a worker-thread loop timed by the ``worker_loops`` detector that is
running one of its callbacks: then the call is handed to that detector
(``WorkerLoops.blocking_call``), which keeps it in that thread's row, apart from
the loop's figures here.  The wrappers are installed while either needs them: the
monitored asyncio loop is attached, or worker loops are watched (a Qt main thread
without asyncio whose workers run ``asyncio.run`` has them from its first worker
loop on); never in strict mode on a worker (its calls are recorded, not raised).
PySide6's own import hook (``shibokensupport/feature.py``) stats and reads files
on every import: that is allowed, or every Qt import inside a coroutine would be
reported.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from looptools._frames import Frame, as_dict, caller_site
from looptools.inapp._patch import dress_as
from looptools.inapp._stats import Longest
from looptools.inapp.hub import Detector
from looptools.settings import Settings

#: Blocking calls kept with their start times (the longest), over all calls and sites.
MAX_RUNS = 1000

_ALLOWED = [
    ("shibokensupport/feature.py", {"_mod_uses_pyside", "feature_import", "__import__"}),
    ("shibokensupport/signature/loader.py", {"feature_import"}),
    ("looptools/inapp/writer.py", {"write_report"}),
    ("looptools/_safewrite.py", {"write_file"}),
    # The stall watchdog's tick waits (GIL released, bounded) for the watchdog
    # thread; attach waits for it to set its descriptor table up.
    ("looptools/inapp/detectors/stalls.py", {"_hand_off", "attach"}),
]

#: Module functions that start a blocking call, wrapped while a loop is monitored:
#: (module, attribute, the name the report gives the call).  A module not imported
#: yet is left alone (importing it would change the app).
OPENERS = (
    ("builtins", "open", "open"),
    ("io", "open", "open"),
    ("socket", "getaddrinfo", "socket.getaddrinfo"),
    ("socket", "gethostbyname", "socket.gethostbyname"),
    ("socket", "gethostbyaddr", "socket.gethostbyaddr"),
    ("sqlite3", "connect", "sqlite3.connect"),
    # os calls blockbuster leaves alone (it has os.read, os.write, os.stat...)
    ("os", "open", "os.open"),
    ("os", "pread", "os.pread"),
    ("os", "pwrite", "os.pwrite"),
    ("os", "fsync", "os.fsync"),
)

#: Our own report writing (``writer.write_report`` -> ``_safewrite.write_file`` ->
#: ``tempfile.mkstemp``): files whose calls to an opener are not the app's.
_OUR_WRITERS = ("inapp/writer.py", "_safewrite.py")


def _writing_a_report(frame: Any) -> bool:
    """True when ``frame`` (an opener's caller) or one of its two callers is our writer."""
    for _ in range(3):
        if frame is None:
            return False
        filename = frame.f_code.co_filename
        if "looptools" in filename and filename.endswith(_OUR_WRITERS):
            return True
        frame = frame.f_back
    return False


#: Py_TPFLAGS_IMMUTABLETYPE: a type whose attributes cannot be assigned (C types).
_IMMUTABLE = 1 << 8


def patchable(owner: Any) -> bool:
    """True when ``owner``'s attributes can be assigned and put back plainly."""
    if not isinstance(owner, type):
        return True  # a module
    return not owner.__flags__ & _IMMUTABLE


class _Busy(threading.local):
    value = False


class BlockingCalls(Detector):
    name = "blocking"

    def __init__(self, settings: Settings) -> None:
        self.strict = settings.blocking_strict
        #: the worker_loops detector while worker loops are watched (see serve_workers)
        self._workers: Any = None
        #: why the wrappers are installed: "loop" (attached), "workers" (serve_workers)
        self._needed: set[str] = set()
        self._installing = threading.Lock()
        self.sites_limit = 20
        self.calls: dict[str, dict[Frame | None, int]] = {}
        self.counts: dict[str, int] = {}
        #: call -> site -> [total seconds, longest seconds], measured around the call
        self.times: dict[str, dict[Frame | None, list[float]]] = {}
        #: ((call, site), started_at_s, duration_ms) of the longest calls, for the trace
        self.runs: Longest[tuple[tuple[str, Frame | None], float, float]] = Longest(MAX_RUNS)
        #: (call, site) of the call just noted, for _timed (loop thread only)
        self._site: tuple[str, Frame | None] | None = None
        self._buster: Any = None
        # (BlockBusterFunction, checker, was the name in the owner's own __dict__)
        self._wrapped: list[tuple[Any, Any, bool]] = []
        self.state: Any = None
        self._busy = _Busy()
        self._error: type[BaseException] = RuntimeError
        #: (module, attribute, what was there, our wrapper) of the OPENERS wrapped
        self._openers: list[tuple[Any, str, Any, Any]] = []

    def attach(self, state: Any, plugin: Any) -> None:
        if state.loop is None:
            return  # blockbuster only sees threads with a running asyncio loop
        self.state = state
        self._need("loop")

    def serve_workers(self, workers: Any) -> None:
        """Any thread: record the blocking calls made on worker-thread loops' threads
        too, handing them to ``workers`` (the ``worker_loops`` detector), or (None) no
        more.  The wrappers are installed if they are not already."""
        if workers is None:
            self._workers = None
            self._release("workers")
        else:
            self._workers = workers
            self._need("workers")

    def _need(self, why: str) -> None:
        with self._installing:
            self._needed.add(why)
            if self._buster is None:
                self._install()

    def _release(self, why: str | None) -> None:
        """No more ``why`` (None: nothing at all): the wrappers go when nothing needs them."""
        with self._installing:
            if why is None:
                self._needed.clear()
            else:
                self._needed.discard(why)
            if not self._needed:
                self._uninstall()

    def _install(self) -> None:
        from blockbuster import BlockBuster, BlockingError

        self._error = BlockingError
        buster = BlockBuster()
        self._buster = buster
        for function in buster.functions.values():
            if function.original_func is None or not patchable(function.module):
                continue
            for filename, names in _ALLOWED:
                function.can_block_in(filename, names)
            owned = function.func_name in vars(function.module)
            function.activate()
            if not function.activated:
                continue
            checker = getattr(function.module, function.func_name)
            recorder = self._recorder(function.full_name, checker, function.original_func)
            setattr(function.module, function.func_name, recorder)
            self._wrapped.append((function, checker, owned))
        made: dict[int, Any] = {}  # one wrapper per original: open is io.open stays true
        for module_name, attribute, call in OPENERS:
            module = sys.modules.get(module_name)
            original = getattr(module, attribute, None) if module is not None else None
            if original is None:
                continue
            wrapper = made.get(id(original))
            if wrapper is None:
                wrapper = made[id(original)] = self._opener(call, original)
            setattr(module, attribute, wrapper)
            self._openers.append((module, attribute, original, wrapper))

    def _record(self, name: str, site: Frame | None) -> None:
        sites = self.calls.setdefault(name, {})
        if site in sites or len(sites) < self.sites_limit:
            sites[site] = sites.get(site, 0) + 1
            self._site = (name, site)
        self.counts[name] = self.counts.get(name, 0) + 1
        if self.counts[name] == 1 and self.hub is not None and self.hub.has("event"):
            self.hub.emit("blocking_call", call=name, site=as_dict(site))

    def _note(self, call: str, frame: Any) -> None:
        """Record one blocking call made at ``frame``, on the loop thread.  A blocking
        call of our own meanwhile is not recorded, and a failure of ours is dropped:
        the app's call goes on either way."""
        busy = self._busy
        busy.value = True
        self._site = None
        try:
            self._record(call, caller_site(frame))
        except Exception:
            pass
        finally:
            busy.value = False

    def _timed(self, original: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        """``original(*args, **kwargs)``, its duration added to the site just noted."""
        site = self._site
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            if site is not None:
                spent = time.perf_counter() - started
                try:
                    entry = self.times.setdefault(site[0], {}).setdefault(site[1], [0.0, 0.0])
                    entry[0] += spent
                    if spent > entry[1]:
                        entry[1] = spent
                    origin = self.hub.started if self.hub is not None else 0.0
                    self.runs.add(spent, (site, started - origin, spent * 1000.0))
                except Exception:
                    pass

    def _on_worker(self, running: Any, call: str, frame: Any, original: Callable[..., Any],
                   args: Any, kwargs: Any) -> Any:
        """``original(*args, **kwargs)`` called at ``frame`` on a worker thread while its
        loop (``running``, a ``WorkerLoop``) runs a callback: timed, and handed to the
        worker_loops detector.  A failure of ours is dropped: the call goes on."""
        busy = self._busy
        busy.value = True
        try:
            site = caller_site(frame)
        except Exception:
            site = None
        finally:
            busy.value = False
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            spent = time.perf_counter() - started
            workers = self._workers
            if workers is not None:
                busy.value = True
                try:
                    workers.blocking_call(running, call, site, spent)
                except Exception:
                    pass
                finally:
                    busy.value = False

    def _opener(self, call: str, original: Callable[..., Any]) -> Callable[..., Any]:
        """``original`` (``open``, a name lookup...), recording a call made on the loop
        thread, or on a worker loop's thread in one of its callbacks.

        After detach, or on any other thread, it is ``original`` plus a check or two:
        a wrapper the app wrapped again in turn cannot be taken out, so it stays
        harmless instead."""
        get_ident = threading.get_ident
        strict = self.strict
        error = self._error
        busy = self._busy
        note = self._note
        timed = self._timed
        on_worker = self._on_worker
        openers = self._openers

        def opener(*args: Any, **kwargs: Any) -> Any:
            ident = get_ident()
            state = self.state
            if state is not None and ident == state.thread_id:
                if state.running and not busy.value and openers \
                        and not (call == "open" and args and isinstance(args[0], int)):
                    # (an int: an open descriptor, a pipe or a socket, wrapped as a file)
                    frame = sys._getframe(1)
                    filename = frame.f_code.co_filename
                    if not (filename.startswith(("<frozen importlib", "<frozen zipimport"))
                            or _writing_a_report(frame)):
                        note(call, frame)
                        if strict:
                            raise error(call)
                        return timed(original, args, kwargs)
                return original(*args, **kwargs)
            workers = self._workers
            if workers is not None and openers and not busy.value \
                    and not (call == "open" and args and isinstance(args[0], int)):
                running = workers.in_callback(ident)
                if running is not None:
                    frame = sys._getframe(1)
                    if not (frame.f_code.co_filename.startswith(
                            ("<frozen importlib", "<frozen zipimport"))
                            or _writing_a_report(frame)):
                        return on_worker(running, call, frame, original, args, kwargs)
            return original(*args, **kwargs)

        return dress_as(opener, original)

    def _recorder(self, name: str, checker: Any, original: Any) -> Any:
        get_ident = threading.get_ident
        strict = self.strict
        error = self._error
        busy = self._busy
        note = self._note
        timed = self._timed
        on_worker = self._on_worker
        # blockbuster's own rule for these: a non-blocking socket never blocks.
        sockets = name.startswith(("socket.socket.", "ssl.SSLSocket."))

        def record(*args: Any, **kwargs: Any) -> Any:
            # The cheap questions first: this runs for every call of these functions
            # in the process, on every thread (an executor's worker writes the loop's
            # self-pipe with socket.send at every run_in_executor result, the loop
            # reads it with recv twice).  blockbuster's checker (a stack walk for a
            # blocking call, an exception to say "no loop on this thread") is asked
            # only where its answer can be recorded.
            ident = get_ident()
            state = self.state
            if state is None or ident != state.thread_id or not state.running:
                # Not the monitored loop's thread: only a worker loop running one of
                # its callbacks is recorded (anywhere else the checker says "run it").
                workers = self._workers
                running = workers.in_callback(ident) if workers is not None else None
                if running is None or busy.value:
                    return original(*args, **kwargs)
                try:
                    return checker(*args, **kwargs)
                except error:
                    return on_worker(running, name, sys._getframe(1), original, args, kwargs)
            if busy.value:  # a blocking call made by our own recording below
                return original(*args, **kwargs)
            if sockets:
                try:
                    nonblocking = not args[0].getblocking()
                except Exception:  # not a socket: the checker decides
                    nonblocking = False
                if nonblocking:  # the loop's own self-pipe, every stream of asyncio's
                    return original(*args, **kwargs)
            try:
                return checker(*args, **kwargs)
            except error:
                note(name, sys._getframe(1))
                if strict:
                    raise
                return timed(original, args, kwargs)

        record.__name__ = getattr(original, "__name__", name)
        record.__qualname__ = getattr(original, "__qualname__", name)
        return record

    def detach(self) -> None:
        # The loop is detached: the wrappers stay while worker loops are watched,
        # unless this detector was switched off (no longer in the hub).
        self.state = None
        switched_off = self.hub is not None and self not in self.hub.detectors
        if switched_off:
            self._workers = None
        self._release(None if switched_off else "loop")

    def forget(self) -> None:
        # In a forked child: no worker thread survived, and the lock may be held.
        self._installing = threading.Lock()
        self.state = None
        self._workers = None
        self._release(None)

    def _uninstall(self) -> None:
        for module, attribute, original, wrapper in reversed(self._openers):
            if getattr(module, attribute, None) is wrapper:
                setattr(module, attribute, original)
        self._openers.clear()  # a wrapper left inside another is a pass-through now
        for function, _checker, owned in reversed(self._wrapped):
            function.deactivate()  # assigns the original back
            if not owned:
                # It was inherited (socket.socket.recv is _socket.socket's):
                # remove the assignment instead of leaving a copy behind.
                try:
                    delattr(function.module, function.func_name)
                except (AttributeError, TypeError):
                    pass
        self._wrapped.clear()
        self._buster = None

    def rows(self, with_runs: bool = False) -> list[dict[str, Any]]:
        runs: dict[tuple[str, Frame | None], list[list[float]]] = {}
        if with_runs:
            for key, started_at_s, duration_ms in self.runs.items():
                runs.setdefault(key, []).append([round(started_at_s, 6), round(duration_ms, 3)])
        rows: list[dict[str, Any]] = []
        for call, sites in list(self.calls.items()):
            ordered = sorted(sites.items(), key=lambda item: item[1], reverse=True)
            times = self.times.get(call, {})
            site_rows: list[dict[str, Any]] = []
            totals: list[float] = []
            longest_ms: list[float] = []
            for site, n in ordered:
                total, longest = times.get(site, (0.0, 0.0))
                totals.append(round(total * 1000.0, 3))
                longest_ms.append(round(longest * 1000.0, 3))
                site_rows.append({
                    **(as_dict(site) or {"function": "?", "file": "?", "line": None}),
                    "count": n, "total_ms": round(total * 1000.0, 3),
                    "max_ms": round(longest * 1000.0, 3)})
                if with_runs:
                    site_rows[-1]["runs"] = sorted(runs.get((call, site), []))
            rows.append({
                "call": call,
                "count": self.counts.get(call, 0),
                "total_ms": round(sum(totals), 3),
                "max_ms": max(longest_ms, default=0.0),
                "sites": site_rows,
            })
        rows.sort(key=lambda row: row["count"], reverse=True)
        return rows

    def contribute(self, report: dict[str, Any]) -> None:
        report["blocking_calls"] = self.rows(with_runs=True)

    def snapshot(self) -> dict[str, Any]:
        return {"blocking_calls": self.rows()[:10]}
