"""A loop fed by a worker thread at ~100 Hz, once blocked for 300 ms by ``build_index``.

    handoff_app.py KIND      (asyncio | qasync | qtasyncio)

The worker hands chunks over two ways: ``loop.call_soon_threadsafe(on_chunk, t)`` and
``asyncio.run_coroutine_threadsafe(queue.put(t), loop)``.  Each hand-off carries the
time it was posted; the loop side measures when it started, which is the ground truth
printed at the end as ``TRUTH {json}``: per way, the count and the longest wait.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time

KIND = sys.argv[1]
POSTS = 120
truth: dict[str, list[float]] = {"call_soon_threadsafe": [], "run_coroutine_threadsafe": []}


def build_index() -> None:
    time.sleep(0.3)  # BLOCKS THE LOOP


def on_chunk(posted: float) -> None:
    truth["call_soon_threadsafe"].append(time.perf_counter() - posted)


def worker(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[float]) -> None:
    for _ in range(POSTS):
        loop.call_soon_threadsafe(on_chunk, time.perf_counter())  # POST: call_soon
        asyncio.run_coroutine_threadsafe(queue.put(time.perf_counter()), loop)  # POST: coro
        time.sleep(0.01)


async def consume(queue: asyncio.Queue[float]) -> None:
    for _ in range(POSTS):
        posted = await queue.get()
        # Ground truth for the put: when its coroutine ran, not when we read it.
        del posted


async def main() -> None:
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[float] = asyncio.Queue()
    original_put = queue.put

    async def timed_put(posted: float) -> None:
        truth["run_coroutine_threadsafe"].append(time.perf_counter() - posted)
        await original_put(posted)

    queue.put = timed_put  # type: ignore[method-assign]
    thread = threading.Thread(target=worker, args=(loop, queue), name="audio")
    thread.start()
    await asyncio.sleep(0.4)
    build_index()
    await consume(queue)
    while thread.is_alive():
        await asyncio.sleep(0.02)


def run() -> None:
    if KIND == "asyncio":
        asyncio.run(main())
    elif KIND == "qasync":
        import qasync
        from PySide6.QtWidgets import QApplication

        app = QApplication([])
        loop = qasync.QEventLoop(app)
        with loop:
            loop.run_until_complete(main())
    elif KIND == "qtasyncio":
        from PySide6 import QtAsyncio
        from PySide6.QtWidgets import QApplication

        app = QApplication([])
        QtAsyncio.run(main(), keep_running=False, handle_sigint=False)
    else:
        raise SystemExit(f"unknown kind {KIND}")


run()
summary = {via: {"count": len(waits), "max_ms": 1000.0 * max(waits)}
           for via, waits in truth.items()}
print("TRUTH " + json.dumps(summary), flush=True)
