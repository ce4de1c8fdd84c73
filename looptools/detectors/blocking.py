"""Blocking calls on the loop thread, recorded through blockbuster.

blockbuster replaces ``time.sleep``, file/socket I/O, lock acquires and more with
checkers that raise ``BlockingError`` when called from a thread with a running
asyncio loop.  We wrap each checker once more: on ``BlockingError`` from the
monitored loop's thread we count the call and its application call site and
then run the real function, so the app behaves exactly as without us.  With
``blocking_strict`` the error is raised instead (for tests).

Calls from other threads are ignored even if they have a running loop
(QtAsyncio's ``run_in_executor`` sets one in its workers).  PySide6's own import
hook (``shibokensupport/feature.py``) stats and reads files on every import:
that is allowed, or every Qt import inside a coroutine would be reported.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from looptools._frames import Frame, as_dict, caller_site
from looptools._hub import Detector
from looptools.settings import Settings

_ALLOWED = [
    ("shibokensupport/feature.py", {"_mod_uses_pyside", "feature_import", "__import__"}),
    ("shibokensupport/signature/loader.py", {"feature_import"}),
    ("looptools/_report.py", {"write_report"}),
    # The stall watchdog's tick waits (GIL released, bounded) for the watchdog
    # thread; attach waits for it to set its descriptor table up.
    ("looptools/detectors/stalls.py", {"_hand_off", "attach"}),
]


class _Busy(threading.local):
    value = False


class BlockingCalls(Detector):
    name = "blocking"

    def __init__(self, settings: Settings) -> None:
        self.strict = settings.blocking_strict
        self.sites_limit = 20
        self.calls: dict[str, dict[Frame | None, int]] = {}
        self.counts: dict[str, int] = {}
        self._buster: Any = None
        self._wrapped: list[tuple[Any, Any]] = []  # (BlockBusterFunction, checker)
        self.state: Any = None
        self._busy = _Busy()

    def attach(self, state: Any, plugin: Any) -> None:
        if state.loop is None:
            return  # blockbuster only sees threads with a running asyncio loop
        from blockbuster import BlockBuster, BlockingError

        self.state = state
        buster = BlockBuster()
        for function in buster.functions.values():
            for filename, names in _ALLOWED:
                function.can_block_in(filename, names)
        buster.activate()
        self._buster = buster
        for function in buster.functions.values():
            if not function.activated:
                continue
            checker = getattr(function.module, function.func_name)
            recorder = self._recorder(function.full_name, checker, function.original_func,
                                      BlockingError)
            if self._set(function, recorder):
                self._wrapped.append((function, checker))

    @staticmethod
    def _set(function: Any, value: Any) -> bool:
        try:
            setattr(function.module, function.func_name, value)
        except TypeError:
            try:
                import forbiddenfruit

                forbiddenfruit.curse(function.module, function.func_name, value)
            except Exception:
                return False
        return True

    def _recorder(self, name: str, checker: Any, original: Any,
                  error: type[BaseException]) -> Any:
        state = self.state
        calls = self.calls
        counts = self.counts
        get_ident = threading.get_ident
        strict = self.strict
        limit = self.sites_limit

        busy = self._busy

        def record(*args: Any, **kwargs: Any) -> Any:
            if busy.value:  # a blocking call made by our own recording below
                return original(*args, **kwargs)
            try:
                return checker(*args, **kwargs)
            except error:
                if get_ident() != state.thread_id or not state.running:
                    return original(*args, **kwargs)
                busy.value = True
                try:
                    site = caller_site(sys._getframe(1))
                finally:
                    busy.value = False
                sites = calls.setdefault(name, {})
                if site in sites or len(sites) < limit:
                    sites[site] = sites.get(site, 0) + 1
                counts[name] = counts.get(name, 0) + 1
                if counts[name] == 1 and self.hub is not None and self.hub.has("event"):
                    self.hub.emit("blocking_call", call=name, site=as_dict(site))
                if strict:
                    raise
                return original(*args, **kwargs)

        record.__name__ = getattr(original, "__name__", name)
        record.__qualname__ = getattr(original, "__qualname__", name)
        return record

    def detach(self) -> None:
        for function, checker in reversed(self._wrapped):
            self._set(function, checker)
        self._wrapped.clear()
        if self._buster is not None:
            self._buster.deactivate()
            self._buster = None

    def rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for call, sites in list(self.calls.items()):
            ordered = sorted(sites.items(), key=lambda item: item[1], reverse=True)
            rows.append({
                "call": call,
                "count": self.counts.get(call, 0),
                "sites": [
                    {**(as_dict(site) or {"function": "?", "file": "?", "line": None}),
                     "count": n}
                    for site, n in ordered
                ],
            })
        rows.sort(key=lambda row: row["count"], reverse=True)
        return rows

    def contribute(self, report: dict[str, Any]) -> None:
        report["blocking_calls"] = self.rows()

    def snapshot(self) -> dict[str, Any]:
        return {"blocking_calls": self.rows()[:10]}
