"""Imported by ``looptools.pth`` at interpreter start-up when ``LOOPTOOLS`` is set.

Never raises: a broken configuration prints one line and the app runs as usual.
"""

from __future__ import annotations

import sys


def _start() -> None:
    try:
        from looptools import install

        install()
    except Exception as exc:  # our failure must never become the app's
        print(f"looptools: not monitoring this process ({type(exc).__name__}: {exc})",
              file=sys.stderr)


_start()
