"""What an app that hands work to threads pays on each result, and what is still recorded.

Every ``run_in_executor``/``to_thread`` result crosses two of looptools' wrappers on the
worker (the hand-off detector's ``call_soon_threadsafe``, the blocking detector's
``socket.send`` on the loop's self-pipe) and one on the loop thread (``recv``, twice).
They take their short paths there (docs/design.md, "What it costs"); these tests check
that the short paths are the ones taken, on real loops and threads, and that nothing
they skip was ever recorded: an app's own posts and blocking calls still are.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import socket
import sys
import threading
import time
from typing import Any

import pytest

import looptools
from looptools import _frames
from looptools.inapp.detectors import handoffs


def _line(marker: str) -> int:
    lines = open(__file__, encoding="utf-8").read().splitlines()
    found = [n for n, line in enumerate(lines, 1) if line.rstrip().endswith(f"# {marker}")]
    assert len(found) == 1, marker
    return found[0]


def _later(function: Any, *args: Any) -> Any:
    """``function(*args)``, a moment later: the result is posted by the worker (a job
    done before ``wrap_future`` registers its callback is posted by the loop thread)."""
    time.sleep(0.002)
    return function(*args)


async def _completed_by_the_app() -> None:
    """A concurrent future the app's own thread completes: a hand-off at the app's line."""
    future: concurrent.futures.Future[str] = concurrent.futures.Future()
    wrapped = asyncio.wrap_future(future)
    worker = threading.Thread(target=lambda: future.set_result("done"),  # POST: app
                              name="completer")
    worker.start()
    assert await wrapped == "done"
    worker.join()


def test_executor_results_skip_the_walk_and_app_posts_are_still_recorded() -> None:
    """A standard executor's result is recognised three callers up (no thread name,
    no eight-frame walk); a concurrent future completed by the app's own thread, and a
    job that posts itself, are still hand-offs at the app's line."""
    decided: list[tuple[str, str, bool]] = []  # (thread, caller, cut short), off the loop

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for n in range(20):
            assert await asyncio.to_thread(_later, pow, n, 2) == n * n
        with concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="pool") as pool:
            assert await loop.run_in_executor(pool, _later, sum, [1, 2]) == 3
            with pytest.raises(ZeroDivisionError):  # set_exception takes the same path
                await loop.run_in_executor(pool, _later, divmod, 1, 0)
            posted = asyncio.Event()
            pool.submit(lambda: loop.call_soon_threadsafe(posted.set))  # POST: job
            await posted.wait()
        await _completed_by_the_app()

    loop = asyncio.new_event_loop()
    plain = loop.call_soon_threadsafe

    def under_ours(*args: Any, **kwargs: Any) -> Any:
        # Chained to by the detector's wrapper: two frames up is whoever posted.
        if threading.get_ident() != loop_thread:
            caller = sys._getframe(2)
            decided.append((threading.current_thread().name, caller.f_code.co_name,
                            handoffs._executor_result(caller)))
        return plain(*args, **kwargs)

    # The walk for the app's frame, counted on the default executor's threads (made
    # during the test, so the profile function is theirs): none there.
    walked: list[str] = []
    is_app_file = _frames.is_app_file.__code__

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is is_app_file:
            walked.append(threading.current_thread().name)

    loop_thread = threading.get_ident()
    loop.call_soon_threadsafe = under_ours  # type: ignore[method-assign,assignment]
    threading.setprofile(profile)
    try:
        with looptools.monitor(report=None) as monitor:
            loop.run_until_complete(main())
            rows = monitor.report()["handoffs"]
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
    loop.close()

    assert not [name for name in walked if name.startswith("asyncio_")], walked
    assert "completer" in walked  # the app's own thread: walked, and found
    # Each result a worker posted was recognised (a job done before wrap_future's
    # callback was registered is posted by the loop thread: not here).
    results = [cut for thread, caller, cut in decided
               if thread.startswith(("asyncio_", "pool_")) and caller == "_call_set_state"]
    assert len(results) >= 15 and all(results), decided
    # the app's own thread completed the last future; the job posted by itself
    assert decided[-1] == ("completer", "_call_set_state", False), decided
    assert [cut for _thread, caller, cut in decided if caller == "<lambda>"] == [False]
    sites = {(row["thread"], row["site"]["line"], row["count"]) for row in rows}
    assert sites == {("pool_0", _line("POST: job"), 1), ("completer", _line("POST: app"), 1)} \
        or sites == {("pool_1", _line("POST: job"), 1), ("completer", _line("POST: app"), 1)}, rows


def test_qasync_executor_results_skip_the_walk_too(qapp: Any) -> None:
    """qasync's default executor is its own ``QThreadExecutor`` (QThreads, not
    ``ThreadPoolExecutor``): its results are recognised the same way, and a future the
    app's own thread completes is still a hand-off at the app's line."""
    import qasync

    decided: list[tuple[str, bool]] = []  # (caller, cut short), posts from other threads

    async def main() -> None:
        for n in range(20):
            assert await asyncio.to_thread(_later, pow, n, 2) == n * n
        with pytest.raises(ZeroDivisionError):
            await asyncio.to_thread(_later, divmod, 1, 0)
        await _completed_by_the_app()

    loop = qasync.QEventLoop(qapp)
    plain = loop.call_soon_threadsafe
    loop_thread = threading.get_ident()

    def under_ours(*args: Any, **kwargs: Any) -> Any:
        if threading.get_ident() != loop_thread:
            caller = sys._getframe(2)
            decided.append((caller.f_code.co_name, handoffs._executor_result(caller)))
        return plain(*args, **kwargs)

    loop.call_soon_threadsafe = under_ours  # type: ignore[method-assign]
    try:
        with looptools.monitor(report=None) as monitor:
            loop.run_until_complete(main())
            rows = monitor.report()["handoffs"]
    finally:
        loop.close()
    results = [cut for caller, cut in decided if caller == "_call_set_state"]
    assert len(results) >= 16 and all(results[:-1]), decided
    assert decided[-1] == ("_call_set_state", False), decided  # the app's own thread
    assert [(row["thread"], row["site"]["line"], row["count"]) for row in rows] == \
        [("completer", _line("POST: app"), 1)], rows


def test_blocking_calls_off_the_loop_thread_and_on_non_blocking_sockets_are_not_recorded(
) -> None:
    """The blocking detector's wrappers answer without blockbuster's checker where its
    answer would be "run it": on any thread but the loop's (no worker loop there), and
    for a non-blocking socket (blockbuster's own rule).  A blocking socket and a sleep on
    the loop thread are recorded as before, and are the only calls it is asked about."""
    from blockbuster import blockbuster

    checker = next(c for c in blockbuster._wrap_blocking.__code__.co_consts
                   if getattr(c, "co_name", None) == "wrapper")
    asked: list[str] = []  # the threads blockbuster's checker ran on

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call" and frame.f_code is checker:
            asked.append(threading.current_thread().name)

    async def main() -> None:
        first, second = socket.socketpair()
        with first, second:
            second.setblocking(False)
            second.sendall(b"xyz")
            assert first.recv(1) == b"x"  # RECORDED: recv
            first.setblocking(False)
            assert first.recv(1) == b"y"
            assert await asyncio.to_thread(first.recv, 1) == b"z"
            with pytest.raises(BlockingIOError):
                first.recv(1)
            second.setblocking(True)
            await asyncio.to_thread(second.sendall, b"!")
            await asyncio.to_thread(time.sleep, 0.001)
            for _ in range(30):  # each result writes and reads the loop's self-pipe
                await asyncio.to_thread(int)
            time.sleep(0.001)  # RECORDED: sleep

    sys.setprofile(profile)
    threading.setprofile(profile)
    try:
        with looptools.monitor(report=None) as monitor:
            asyncio.run(main())
            report = monitor.report()
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
        sys.setprofile(None)
    assert asked == ["MainThread", "MainThread"], asked
    rows = {row["call"]: row for row in report["blocking_calls"]}
    assert set(rows) == {"socket.socket.recv", "time.sleep"}, rows
    for call, marker in (("socket.socket.recv", "RECORDED: recv"),
                         ("time.sleep", "RECORDED: sleep")):
        (site,) = rows[call]["sites"]
        assert rows[call]["count"] == 1 and site["line"] == _line(marker), rows[call]
