"""Ends in a chosen way after a stall: normal | exit3 | raise | sigterm-wait."""

from __future__ import annotations

import asyncio
import sys
import time

HOW = sys.argv[1]


async def main() -> None:
    await asyncio.sleep(0.1)
    time.sleep(0.15)
    if HOW == "raise":
        raise RuntimeError("app crashed")
    if HOW == "exit3":
        sys.exit(3)
    if HOW == "sigterm-wait":
        print("ready", flush=True)
        await asyncio.sleep(30)
    print("finished")


asyncio.run(main())
