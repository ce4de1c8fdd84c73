"""A qasync app on BINDING that registers an atexit call after it made its QApplication,
as the Qt bindings register their own clean-up of the Qt objects Python owns.

usage: python exit_order_app.py BINDING [osexit]

At exit it prints which threads of looptools are still alive then, and whether the
report (``LOOPTOOLS_REPORT``) is written yet: an atexit call registered after the monitor
started runs before the monitor's own unless the monitor moves its own ahead.  With
``osexit`` that call then ends the process by ``os._exit(5)``.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib
import os
import sys
import threading

binding = sys.argv[1]
widgets = importlib.import_module(binding + ".QtWidgets")
os.environ["QT_API"] = binding.lower()
import qasync  # noqa: E402  (after the binding: qasync uses the one imported)

app = widgets.QApplication([])
REPORT = os.environ.get("LOOPTOOLS_REPORT", "")


def at_exit() -> None:
    ours = sorted(t.name for t in threading.enumerate() if t.name.startswith("looptools"))
    written = bool(REPORT) and os.path.exists(REPORT)
    print(f"at exit: threads of looptools {ours}; report written: {written}", flush=True)
    if sys.argv[2:] == ["osexit"]:
        os._exit(5)


atexit.register(at_exit)


async def main() -> None:
    await asyncio.sleep(0.2)
    print("done", flush=True)


loop = qasync.QEventLoop(app)
asyncio.set_event_loop(loop)
with loop:
    loop.run_until_complete(main())
