"""looptools: event-loop health for Qt + asyncio apps.

Turn it on with no code change (``LOOPTOOLS=1 python app.py``) or in code::

    import looptools
    looptools.install()                 # monitor until exit, report at exit
    with looptools.monitor(threshold_ms=20) as m:
        ...
    report = m.final_report

This module imports only the standard library and looptools' own core: no
click, rich or Qt (Qt is imported only when attaching to a Qt loop).

``LOOPTOOLS=1`` imports this package at interpreter start-up, before pytest
could mark it for assertion rewriting (its entry point ``pytest11`` is in this
distribution): the marker PYTEST_DONT_REWRITE tells pytest not to try, so that
``LOOPTOOLS=1 pytest -W error`` starts exactly as ``pytest -W error`` does.
"""

from __future__ import annotations

from typing import Any

from looptools._version import __version__
from looptools.inapp.monitor import Monitor, active
from looptools.settings import Settings, SettingsError, resolve

__all__ = [
    "Monitor",
    "Settings",
    "SettingsError",
    "__version__",
    "active",
    "install",
    "monitor",
    "resolve",
    "uninstall",
]


def install(**settings: Any) -> Monitor:
    """Start monitoring this process until exit (or :func:`uninstall`).

    Writes the report and prints a summary to stderr at exit, on SIGTERM and
    after an unhandled exception.  Calling it again returns the running monitor.
    """
    running = active()
    if running is not None:
        return running
    return Monitor(exit_hooks=True, **settings).start()


def uninstall() -> dict[str, Any] | None:
    """Stop the monitor started by :func:`install`; returns its report."""
    running = active()
    if running is None:
        return None
    return running.stop()


def monitor(**settings: Any) -> Monitor:
    """A :class:`Monitor` to use as a context manager (no exit hooks, no summary)."""
    settings.setdefault("summary", False)
    return Monitor(**settings)
