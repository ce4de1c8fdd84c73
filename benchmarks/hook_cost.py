"""What the per-callback hook alone costs plain asyncio, without a watchdog or ticks.

    python benchmarks/hook_cost.py [--pairs 30]

In one process: a 50,000-callback ``call_soon`` chain (overhead.py's), run with
asyncio's own ``Handle._run`` and with looptools' lean replacement
(``install_handle_timing``, nothing armed), alternating; prints the median of the
paired ratios.  Set beside ``as_users.py --breakdown`` it tells the hook's share of
what looptools costs that chain from the ticks', the looks' and the probes'.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from overhead import workload

from looptools.inapp.state import LoopState
from looptools.plugins import asyncio_loop


def one(hooked: bool) -> float:
    body = workload("callbacks", 50_000)

    async def timed() -> float:
        if hooked:
            state = LoopState(asyncio.get_running_loop(), threading.get_ident(), 0.05)
            state.armed = 0
            asyncio_loop.install_handle_timing(state, precise=False)
        try:
            await asyncio.sleep(0)
            started = time.perf_counter()
            await body()
            return time.perf_counter() - started
        finally:
            if hooked:
                asyncio_loop.uninstall_handle_timing()

    return asyncio.run(timed())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=30)
    args = parser.parse_args()
    if args.pairs < 1:
        parser.error(f"--pairs must be at least 1, got {args.pairs}")
    ratios = []
    for pair in range(args.pairs + 1):  # pair 0 warms up and is dropped
        if pair % 2:
            plain, hooked = one(False), one(True)
        else:
            hooked, plain = one(True), one(False)
        if pair:
            ratios.append(hooked / plain)
    ratios.sort()
    quarter = len(ratios) // 4
    median = statistics.median(ratios)
    print(f"the callback hook alone, 50,000-callback chain: median {median:.3f}x "
          f"(IQR {ratios[quarter]:.3f}-{ratios[len(ratios) - 1 - quarter]:.3f}, "
          f"{len(ratios)} pairs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
