"""A Qt slot just under the threshold, again and again; the app times each itself.

    slot_spans_app.py qt|qasync|qtasyncio SECONDS COUNT

A ``QTimer`` slot sleeps ``SECONDS`` every 120 ms, ``COUNT`` times, then the app
quits.  ``qt``: a Qt main thread without asyncio; ``qasync``, ``qtasyncio``: the
same slot beside that asyncio loop.  Prints ``SPANS [[start, end], ...]``
(perf_counter seconds) on stderr.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

MODE, SECONDS, COUNT = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
spans: list[tuple[float, float]] = []
app = QApplication(sys.argv[:1])
done: asyncio.Event | None = None  # beside an asyncio loop: set after the last slot


def slot() -> None:
    began = time.perf_counter()
    time.sleep(SECONDS)  # CULPRIT: slot
    spans.append((began, time.perf_counter()))
    if len(spans) == COUNT:
        timer.stop()
        if done is not None:
            done.set()  # the coroutine ends, and with it the loop
        else:
            app.quit()


timer = QTimer()
timer.timeout.connect(slot)
timer.start(120)


async def main() -> None:
    global done
    done = asyncio.Event()
    await done.wait()


if MODE == "qasync":
    import qasync

    qasync.run(main())
elif MODE == "qtasyncio":
    from PySide6 import QtAsyncio

    QtAsyncio.run(main(), keep_running=False)
else:
    app.exec()
print("SPANS " + json.dumps(spans), file=sys.stderr, flush=True)
