"""A qasync GUI loop with the three kinds of thread trouble the dashboard's Threads panel shows.

    threads_app.py SECONDS [--repeat] [--quiet]      (QT_API=pyside6; the binding is PySide6)

* a worker loop that stalls: a ``threading.Thread`` named "device-poller" runs its own
  asyncio loop, whose coroutine calls ``read_device``, which blocks it for 300 ms
  (the line marked ``CULPRIT: worker``);
* hand-offs delayed by a GUI stall: a thread named "audio" posts ``on_chunk`` with
  ``loop.call_soon_threadsafe`` every 10 ms (``POST: audio``) while the GUI loop is blocked
  once for 300 ms in ``build_index`` (``CULPRIT: gui``);
* a thread-affinity violation: a thread named "hotkey" starts a ``QTimer`` the GUI thread
  owns (Qt warns "Timers cannot be started from another thread"; ``SITE: timer``).

Prints ``ready`` once all three happened, then runs until SECONDS have passed.  With
``--repeat`` the worker loop stalls again every second, for 800 ms (a live view has
something to catch while it goes on), and the GUI loop for 300 ms.  ``--quiet``: nothing on
stdout (under `looptools profile`, whose dashboard has the terminal).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication

SECONDS = float(sys.argv[1])
REPEAT = "--repeat" in sys.argv
QUIET = "--quiet" in sys.argv
chunks: list[float] = []


def say(line: str) -> None:
    if not QUIET:
        print(line, flush=True)


def read_device(seconds: float) -> None:
    time.sleep(seconds)  # CULPRIT: worker


async def poll(stop: threading.Event) -> None:
    ticks = 0
    while not stop.is_set():
        await asyncio.sleep(0.02)
        ticks += 1
        if ticks == 10:
            read_device(0.3)
        elif REPEAT and ticks % 50 == 0:
            read_device(0.8)


def device_poller(stop: threading.Event) -> None:
    asyncio.run(poll(stop))


def on_chunk(posted: float) -> None:
    chunks.append(time.perf_counter() - posted)


def audio(loop: asyncio.AbstractEventLoop, stop: threading.Event) -> None:
    while not stop.is_set():
        loop.call_soon_threadsafe(on_chunk, time.perf_counter())  # POST: audio
        time.sleep(0.01)


class Gui(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.timer = QTimer()
        self.timer.setSingleShot(True)


def hotkey(gui: Gui) -> None:
    gui.timer.start(50)  # SITE: timer


def build_index() -> None:
    time.sleep(0.3)  # CULPRIT: gui


async def main() -> None:
    loop = asyncio.get_running_loop()
    stop = threading.Event()
    gui = Gui()
    threads = [threading.Thread(target=device_poller, args=(stop,), name="device-poller"),
               threading.Thread(target=audio, args=(loop, stop), name="audio"),
               threading.Thread(target=hotkey, args=(gui,), name="hotkey")]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    await asyncio.sleep(0.3)
    build_index()
    await asyncio.sleep(0.6)  # the worker's stall is over, the hand-offs have run
    say("ready")
    while time.monotonic() - started < SECONDS:
        await asyncio.sleep(1.0)
        if REPEAT:
            build_index()
    stop.set()
    for thread in threads:
        thread.join(5)
    say(f"done {len(chunks) > 0}")


if __name__ == "__main__":
    import qasync

    app = QApplication([])
    event_loop = qasync.QEventLoop(app)
    with event_loop:
        event_loop.run_until_complete(main())
