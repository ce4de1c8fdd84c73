"""An app that puts handlers of its own on real-time signals once its loop runs.

    python rt_handlers_app.py [all]

It takes every real-time signal from SIGRTMIN+5 up that has no handler (``all``:
every one, whatever handler it has), sends each to itself 5 times while the loop
runs, then blocks the loop 150 ms (``time.sleep``: a stall, line marked) and
prints how many signals it sent and how many its handler got.  Exits 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any

TAKE_ALL = sys.argv[1:] == ["all"]
got: dict[int, int] = {}


def handler(signum: int, frame: Any) -> None:
    got[signum] = got.get(signum, 0) + 1


async def main() -> None:
    await asyncio.sleep(0.3)
    mine = [number for number in range(signal.SIGRTMIN + 5, signal.SIGRTMAX)
            if TAKE_ALL or signal.getsignal(number) in (signal.SIG_DFL, None)]
    for number in mine:
        signal.signal(number, handler)
    for _ in range(5):
        for number in mine:
            os.kill(os.getpid(), number)
        await asyncio.sleep(0.1)
    time.sleep(0.15)  # CULPRIT: stall
    await asyncio.sleep(0.2)
    extra = {number: count - 5 for number, count in got.items() if count != 5}
    print(f"sent {5 * len(mine)} got {sum(got.values())} extra {extra}")


asyncio.run(main())
