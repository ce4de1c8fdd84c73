"""Imported by ``looptools.pth`` at interpreter start-up when ``LOOPTOOLS`` is set.

Never raises: a broken configuration prints one line and the app runs as usual.
"""

from __future__ import annotations

import sys


def _start() -> None:
    try:
        import os

        from looptools import install

        install()
        # Child processes (multiprocessing workers, tools the app runs) are not
        # monitored unless they ask: they would overwrite this process's report.
        os.environ.pop("LOOPTOOLS", None)
    except Exception as exc:  # our failure must never become the app's
        print(f"looptools: not monitoring this process ({type(exc).__name__}: {exc})",
              file=sys.stderr)


_start()
