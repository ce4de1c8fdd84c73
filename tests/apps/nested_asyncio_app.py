"""A Qt main thread without qasync that runs plain asyncio loops from its slots, then
freezes in a later slot: after the asyncio loop stopped, Qt runs on and must be
watched again.

``nested_asyncio_app.py BINDING MODE``:

* ``once``: a slot at 0.2 s runs ``loop.run_until_complete(asyncio.sleep(0.01))``;
* ``guest``: from 0.2 s to ~0.7 s an asyncio loop runs as a guest of Qt's event loop,
  one step per Qt event (``run_forever`` started from an event, the loop's first
  callback stops it and posts the next event: PySide6's old ``minimal`` example);
* ``twice``: ``once``, then again at 1.5 s, with a second freeze at 1.8 s;
* ``often``: from 0.2 s to 0.7 s a 2 ms timer's slot runs ``run_until_complete``
  each time; under looptools the app says on stderr how often the monitor went back
  to watching Qt (``QT ATTACHES n``).

At 1.0 s a timer's slot spins 300 ms (the culprit); the app quits at 2.2 s.
"""

from __future__ import annotations

import asyncio
import importlib
import sys
import time

binding, mode = sys.argv[1], sys.argv[2]
QtCore = importlib.import_module(f"{binding}.QtCore")
app = QtCore.QCoreApplication([])
loop = asyncio.new_event_loop()
steps = [0]
tasks: list[asyncio.Task[None]] = []


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:  # CULPRIT: spin
        pass


def freeze() -> None:
    spin(0.3)


def once() -> None:
    print("ran", loop.run_until_complete(asyncio.sleep(0.01, "once")), flush=True)


class Reenter(QtCore.QObject):  # type: ignore[misc]
    """Runs the guest loop one step per posted event."""

    def event(self, event: object) -> bool:
        if steps[0] >= 0:
            loop.call_soon(step)
            loop.run_forever()
        return True


reenter = Reenter()
USER = QtCore.QEvent.Type.User if hasattr(QtCore.QEvent, "Type") else QtCore.QEvent.User


def step() -> None:
    loop.stop()
    steps[0] += 1
    QtCore.QCoreApplication.postEvent(reenter, QtCore.QEvent(USER))


def guest() -> None:
    async def work() -> None:
        await asyncio.sleep(0.5)
        print("guest done after", "many" if steps[0] > 10 else steps[0], "steps", flush=True)
        steps[0] = -1_000_000

    tasks.append(loop.create_task(work()))
    QtCore.QCoreApplication.postEvent(reenter, QtCore.QEvent(USER))


if mode == "often":
    if "looptools._autostart" in sys.modules:  # under LOOPTOOLS=1
        from looptools.inapp.monitor import Monitor

        attaches = [0]
        attach = Monitor._attach_qt_only

        def counted(self: Monitor, binding: object) -> None:
            attaches[0] += 1
            attach(self, binding)

        Monitor._attach_qt_only = counted  # type: ignore[method-assign]
        QtCore.QTimer.singleShot(2100, lambda: print(f"QT ATTACHES {attaches[0]}",
                                                     file=sys.stderr, flush=True))
    often = QtCore.QTimer()
    often.timeout.connect(lambda: loop.run_until_complete(asyncio.sleep(0)))
    QtCore.QTimer.singleShot(200, lambda: often.start(2))
    QtCore.QTimer.singleShot(700, often.stop)
else:
    QtCore.QTimer.singleShot(200, guest if mode == "guest" else once)
QtCore.QTimer.singleShot(1000, freeze)
if mode == "twice":
    QtCore.QTimer.singleShot(1500, once)
    QtCore.QTimer.singleShot(1800, freeze)
QtCore.QTimer.singleShot(2200, app.quit)
app.exec() if hasattr(app, "exec") else app.exec_()
loop.close()
print("bye", flush=True)
