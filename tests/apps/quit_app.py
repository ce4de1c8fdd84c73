"""An app that quits the way qasync's README does: ``aboutToQuit`` cancels the
future its main task awaits, the loop stops with that task still pending, and
``qasync.run(main())`` raises its cancellation to the app.  The main task is the
app's (the run hands it its outcome): not a leak.  The task it leaks still is.

    python quit_app.py [leak|slot]

``slot``: the leaked task is made by a button's ``@qasync.asyncSlot`` (no frame
of the app's on the stack that creates it).  On the binding QT_API names.
Prints what the app saw; exits 0.  (QtAsyncio cannot quit this way: its ``run``
raises "Event loop stopped before Future completed", then "Event loop is
closed", without us too.)
"""

from __future__ import annotations

import asyncio
import functools
import sys

import qasync
from qasync import QtCore, QtWidgets

LEAK = sys.argv[1:2]


async def poll_forever() -> None:
    while True:
        await asyncio.sleep(0.05)


class PollButton(QtWidgets.QPushButton):
    @qasync.asyncSlot()
    async def on_clicked(self) -> None:
        await poll_forever()


async def main() -> bool:
    def close_future(future: asyncio.Future[None]) -> None:
        future.cancel()

    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    app = QtWidgets.QApplication.instance()
    assert app is not None
    app.aboutToQuit.connect(functools.partial(close_future, future))
    if LEAK == ["leak"]:
        asyncio.get_running_loop().create_task(poll_forever(), name="leaked-poller")
    elif LEAK == ["slot"]:
        button = PollButton("poll")
        button.clicked.connect(button.on_clicked)
        QtCore.QTimer.singleShot(50, button.click)
    QtCore.QTimer.singleShot(300, app.quit)
    await future
    return True


try:
    qasync.run(main())
except asyncio.CancelledError:
    print("main cancelled")
print("quit")
