"""Stalls in Qt's C++ alone: a ``QGraphicsView`` repaint run by a C++ timer.

No Python runs under Qt's loop from the loop's last sign of life to the end of the
repaint: a ``PreciseTimer`` whose ``timeout`` is connected to the viewport's C++
``repaint`` slot.  Each round picks a scene sized for a target duration (from one
repaint timed at start-up), waits idle, then starts the timer; a Python slot
connected after the repaint stamps its end.  The repaint cannot begin before the
timer is due, so ``[due, end]`` bounds it from outside: a stall dated before ``due``
was dated from an earlier sign of life.

    cpp_stall_app.py qasync|qtasyncio|qt BINDING ROUNDS TARGETS_MS

Prints ``MARKS {"origin": ..., "rounds": [[due, end, cpu], ...]}`` to stderr
(perf_counter seconds; origin: the monitor's; ``cpu``: the loop thread's CPU
seconds from the round's start to its end, the repaint's own time beside CPU
burners that stretch its wall-clock span) and ``done``.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from typing import Any

from _marks import print_marks

kind, binding, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
targets = [float(x) / 1000.0 for x in sys.argv[4].split(",")]

if binding == "PyQt5":
    from PyQt5 import QtCore, QtWidgets
elif binding == "PyQt6":
    from PyQt6 import QtCore, QtWidgets  # type: ignore[no-redef]
else:
    from PySide6 import QtCore, QtWidgets  # type: ignore[no-redef]

app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
rnd = random.Random(7)


def scene(items: int) -> Any:
    made = QtWidgets.QGraphicsScene(0, 0, 800, 600)
    for _ in range(items):
        made.addRect(rnd.uniform(0, 790), rnd.uniform(0, 590), 10, 10)
    return made


# One window (every window is painted on every binding), scenes swapped in between
# rounds.
view = QtWidgets.QGraphicsView()
view.resize(820, 620)
view.show()


def show(made: Any) -> None:
    """Put ``made`` in the view and let the paint that follows run now."""
    view.setScene(made)
    app.processEvents()


def timed_repaint() -> float:
    """One repaint as the rounds make it (a C++ timer's): the loop thread's CPU
    seconds (beside CPU burners its wall-clock time is longer by its waits for a
    CPU, which vary; its own time does not)."""
    done = QtCore.QEventLoop()
    timer = QtCore.QTimer()
    timer.setSingleShot(True)
    timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
    timer.timeout.connect(view.viewport().repaint)
    timer.timeout.connect(done.quit)
    cpu = time.thread_time()
    timer.start(2)
    done.exec() if hasattr(done, "exec") else done.exec_()
    return time.thread_time() - cpu


def sized(target: float, items: int) -> Any:
    """A scene whose repaint takes about ``target`` (the cost is not linear in the
    number of items: each scene is sized by its own repaint, twice)."""
    for _ in range(2):
        made = scene(items)
        show(made)
        took = sorted(timed_repaint() for _ in range(3))[1]
        items = max(1, int(items * target / took))
    made = scene(items)
    show(made)
    return made


scenes = [sized(target, 8000) for target in targets]

marks: list[list[float]] = []
timers: list[Any] = []
armed_cpu: list[float] = []


def ended() -> None:
    marks[-1].append(time.perf_counter())
    marks[-1].append(time.thread_time() - armed_cpu[-1])


def arm() -> None:
    """Start the C++ timer 3-40 ms from now (a random phase against the heartbeat and
    the watchdog's looks)."""
    timer = QtCore.QTimer()
    timer.setSingleShot(True)
    timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
    timer.timeout.connect(view.viewport().repaint)
    timer.timeout.connect(ended)
    delay = rnd.randint(3, 40)
    marks.append([time.perf_counter() + delay / 1000.0])
    armed_cpu.append(time.thread_time())
    timer.start(delay)
    timers.append(timer)


async def main() -> None:
    await asyncio.sleep(0.3)
    for _ in range(rounds):
        # (The paint that follows a scene change is a stall of its own, made by
        # Python: well apart from the round's.)
        await asyncio.sleep(0.08)
        show(rnd.choice(scenes))
        await asyncio.sleep(rnd.uniform(0.12, 0.2))
        arm()
        while len(marks[-1]) < 2:
            await asyncio.sleep(0.01)


def qt_only() -> None:
    left = [rounds]

    def next_round() -> None:
        if not left[0]:
            app.quit()
            return
        left[0] -= 1
        arm()
        timers[-1].timeout.connect(lambda: QtCore.QTimer.singleShot(80, pause))

    def pause() -> None:
        show(rnd.choice(scenes))
        QtCore.QTimer.singleShot(rnd.randint(120, 200), next_round)

    QtCore.QTimer.singleShot(300, pause)
    app.exec() if hasattr(app, "exec") else app.exec_()


if kind == "qt":
    qt_only()
elif kind == "qtasyncio":
    from PySide6 import QtAsyncio

    QtAsyncio.run(main(), keep_running=False, quit_qapp=True)
else:
    import qasync

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    with loop:
        loop.run_until_complete(main())

print_marks(marks)
print("done")
