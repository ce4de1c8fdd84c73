"""Imported by ``looptools.pth`` at interpreter start-up when ``LOOPTOOLS`` is set.

Never raises: a broken configuration prints one line and the app runs as usual.
"""

from __future__ import annotations

import sys

#: what turns monitoring on (``looptools.pth`` starts us for anything but its offs)
ON = ("1", "true", "yes", "on")


def _start() -> None:
    try:
        import os

        value = os.environ.get("LOOPTOOLS", "")
        if value.strip().lower() not in ON:
            # A rejected setting falls back to its default, visibly: off.
            os.environ.pop("LOOPTOOLS", None)  # (children would say it again)
            print(f"looptools: LOOPTOOLS={value!r} is not 1, true, yes or on "
                  "(nor 0, false, no or off); not monitoring this process",
                  file=sys.stderr)
            return

        from looptools import install

        install()
        # Child processes (multiprocessing workers, tools the app runs) are not
        # monitored unless they ask: they would overwrite this process's report.
        os.environ.pop("LOOPTOOLS", None)
    except Exception as exc:  # our failure must never become the app's
        print(f"looptools: not monitoring this process ({type(exc).__name__}: {exc})",
              file=sys.stderr)


_start()
