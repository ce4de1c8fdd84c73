"""A task the app cancels after a stop and then runs the loop for itself, as
aiohttp's ``web.run_app`` does (the app ends it: not a leak), alone or beside one
it leaks.

    python run_again_app.py LOOP MODE [leak]

LOOP: asyncio | uvloop.  MODE: interrupt (a SIGINT stops the first run, as Ctrl-C
stops a server) | stop (the first run ends on another future).  Prints what the app
saw; exits 0.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

LOOP, MODE = sys.argv[1], sys.argv[2]
LEAK = sys.argv[3:] == ["leak"]


async def serve() -> None:
    if MODE == "interrupt":
        asyncio.get_running_loop().call_later(0.3, os.kill, os.getpid(), signal.SIGINT)
    while True:
        await asyncio.sleep(1)


async def poll_forever() -> None:
    while True:
        await asyncio.sleep(0.05)


if LOOP == "uvloop":
    import uvloop

    loop = uvloop.new_event_loop()
else:
    loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
tasks = [loop.create_task(poll_forever(), name="leaked-poller")] if LEAK else []
main = loop.create_task(serve(), name="server")
try:
    loop.run_until_complete(main if MODE == "interrupt" else asyncio.sleep(0.3))
except KeyboardInterrupt:
    print("interrupted")
finally:
    main.cancel()
    try:
        loop.run_until_complete(main)
    except asyncio.CancelledError:
        print("server cancelled:", main.done())
    loop.close()
