"""Does ``zlib.compress`` of a big incompressible buffer hold the GIL for long?

The accuracy harness calls ``zlib.compress(RANDBUF[:n])`` (a memoryview of
random bytes, so the slice copies nothing) as a "GIL-releasing" stall.  This
does the same and prints, for each size, how long the compress takes and the
longest stretches during it in which another thread (waking every 1 ms) could
not run, i.e. the GIL was held.

    python benchmarks/zlib_gil.py [size_bytes ...]
"""

from __future__ import annotations

import os
import sys
import threading
import time
import zlib


def measure(n: int) -> str:
    data = memoryview(os.urandom(n + 1))  # as in the harness
    gaps: list[tuple[float, float]] = []
    done = threading.Event()

    def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            gaps.append((now - last, now))
            last = now

    thread = threading.Thread(target=ticker, daemon=True)
    thread.start()
    time.sleep(0.05)
    t0 = time.perf_counter()
    part = data[:n]
    t1 = time.perf_counter()
    out = zlib.compress(part)
    t2 = time.perf_counter()
    done.set()
    thread.join()
    during = sorted((g for g, at in gaps if t0 <= at <= t2 + 0.01), reverse=True)[:3]
    return (f"{n / 1e6:7.1f} MB: slice {1000 * (t1 - t0):6.1f} ms, compress "
            f"{1000 * (t2 - t1):7.1f} ms ({len(out) / 1e6:.1f} MB out); longest stretches "
            f"with the GIL held: {', '.join(f'{1000 * g:.1f}' for g in during)} ms")


if __name__ == "__main__":
    sizes = [int(arg) for arg in sys.argv[1:]] or [3_200_000, 10_600_000, 106_000_000]
    for size in sizes:
        print(measure(size))
