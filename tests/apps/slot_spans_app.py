"""A Qt slot just under the threshold, again and again; the app times each itself.

    slot_spans_app.py qt|qasync SECONDS COUNT

A ``QTimer`` slot sleeps ``SECONDS`` every 120 ms, ``COUNT`` times, then the app
quits.  ``qt``: a Qt main thread without asyncio; ``qasync``: the same slot beside a
qasync loop.  Prints ``SPANS [[start, end], ...]`` (perf_counter seconds) on stderr.
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


def slot() -> None:
    began = time.perf_counter()
    time.sleep(SECONDS)  # CULPRIT: slot
    spans.append((began, time.perf_counter()))
    if len(spans) == COUNT:
        timer.stop()
        app.quit()


timer = QTimer()
timer.timeout.connect(slot)
timer.start(120)
if MODE == "qasync":
    import qasync

    async def main() -> None:
        done = asyncio.Event()
        app.aboutToQuit.connect(done.set)
        await done.wait()

    qasync.run(main())
else:
    app.exec()
print("SPANS " + json.dumps(spans), file=sys.stderr, flush=True)
