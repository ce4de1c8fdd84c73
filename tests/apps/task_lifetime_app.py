"""A task that stops its loop and then fails, on a loop that already ran once.

Without looptools the task is freed as it ends, so asyncio reports its exception
("never retrieved") at once and a weak reference to it is dead when
``run_forever`` returns.  Prints what the app saw: ``alive=<bool> seen=<messages>``.

    python task_lifetime_app.py asyncio|qasync|qtasyncio
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from typing import Any


def main(kind: str) -> None:
    if kind == "asyncio":
        loop: Any = asyncio.new_event_loop()
    elif kind == "qasync":
        import qasync

        app = qasync.QApplication.instance() or qasync.QApplication([])
        loop = qasync.QEventLoop(app)
    else:
        from PySide6.QtAsyncio import QAsyncioEventLoopPolicy
        from PySide6.QtWidgets import QApplication

        QApplication.instance() or QApplication([])
        loop = QAsyncioEventLoopPolicy().new_event_loop()
    asyncio.set_event_loop(loop)
    seen: list[str] = []
    loop.set_exception_handler(lambda *args: seen.append(str(args[-1].get("message"))))
    # The loop has run once, so looptools is attached when the task is made.
    loop.run_until_complete(asyncio.sleep(0))

    async def stops_then_fails() -> None:
        loop.stop()
        raise ValueError("lost")

    task = weakref.ref(loop.create_task(stops_then_fails()))
    loop.run_forever()
    print(f"alive={task() is not None} seen={seen}", flush=True)
    loop.close()
    asyncio.set_event_loop(None)


if __name__ == "__main__":
    main(sys.argv[1])
