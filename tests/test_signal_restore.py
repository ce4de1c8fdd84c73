"""Putting a real-time signal's handler back while another signal's handler runs."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from looptools.inapp import _posix_timer

pytestmark = pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="POSIX only")


def _quit_inside_sigusr1(put_back: Callable[[int, Any], None]) -> list[str]:
    """Our RT signal has arrived but its handler has not run yet when the app's
    SIGUSR1 handler (lower number, run first) makes us put the default back."""
    signum = _posix_timer.free_signals(1)[0]
    seen: list[str] = []

    def ours(number: int, frame: Any) -> None:
        seen.append("ours")

    def apps(number: int, frame: Any) -> None:
        put_back(signum, ours)

    unraisable: list[str] = []
    previous_hook = sys.unraisablehook
    previous_usr1 = signal.signal(signal.SIGUSR1, apps)
    signal.signal(signum, ours)
    sys.unraisablehook = lambda info: unraisable.append(str(info.exc_value))
    try:
        # Both arrive together (held back, then let go): Python runs their
        # handlers in one pass, in signal-number order.
        both = {signal.SIGUSR1, signum}
        signal.pthread_sigmask(signal.SIG_BLOCK, both)
        signal.pthread_kill(threading.get_ident(), signum)
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, both)
        for _ in range(100):  # bytecodes: anything still pending runs
            pass
    finally:
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGUSR1, previous_usr1)
        left = signal.getsignal(signum)
        if left is not signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
    assert left is signal.SIG_DFL
    return unraisable


def test_plain_reset_inside_another_handler_loses_the_signal() -> None:
    # The control: what CPython does when the default is put back there.
    def plain(signum: int, ours: Any) -> None:
        signal.signal(signum, signal.SIG_DFL)

    unraisable = _quit_inside_sigusr1(plain)
    assert any("ignored due to race condition" in text for text in unraisable)


def test_restore_default_inside_another_handler_is_silent() -> None:
    assert _quit_inside_sigusr1(_posix_timer.restore_default) == []


def test_restore_default_leaves_a_handler_that_is_not_ours() -> None:
    signum = _posix_timer.free_signals(1)[0]

    def apps(number: int, frame: Any) -> None:
        pass

    signal.signal(signum, apps)
    try:
        _posix_timer.restore_default(signum, lambda *a: None)
        assert signal.getsignal(signum) is apps
    finally:
        signal.signal(signum, signal.SIG_DFL)


def test_our_sigterm_handler_is_shown_as_the_default_and_the_view_goes_at_stop() -> None:
    import looptools.inapp._sigterm_view as view
    from looptools.inapp.monitor import Monitor

    getsignal, set_handler = signal.getsignal, signal.signal
    assert getsignal(signal.SIGTERM) == signal.SIG_DFL
    monitor = Monitor(exit_hooks=True, report=None, summary=False).start()
    try:
        assert view.getsignal(signal.SIGTERM) == monitor._on_sigterm  # ours, installed
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # what the app sees
        assert signal.getsignal(signal.SIGINT) == getsignal(signal.SIGINT)  # only SIGTERM
        previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
        assert previous == signal.SIG_DFL  # and as it installs its own
        assert signal.signal(signal.SIGTERM, previous) == signal.SIG_IGN
    finally:
        monitor.stop()
    assert signal.getsignal is getsignal and signal.signal is set_handler  # taken off
    assert getsignal(signal.SIGTERM) == signal.SIG_DFL


@pytest.mark.skipif(not hasattr(signal, "SIGRTMIN"), reason="real-time signals")
@pytest.mark.parametrize("take", ["free", "all"])
def test_an_app_that_takes_our_signals_once_the_loop_runs_gets_only_its_own(
        take: str, tmp_path: Path) -> None:
    """The app puts handlers of its own on real-time signals after the loop started
    (``all``: the ticks' own signal too, whatever handler it had).  Our timers stop
    sending them first: the app's handler runs once per signal it sent (before,
    the ticks called it ~170 more times in a second), and the stall is still found.
    Found by a helper's fresh-eyes run."""
    from helpers import ROOT, culprit_line, run_app

    app = ROOT / "tests" / "apps" / "rt_handlers_app.py"
    args = [str(app)] + (["all"] if take == "all" else [])
    alone = run_app(args, tmp_path, monitored=False)
    run = run_app(args, tmp_path)
    assert alone.returncode == run.returncode == 0, run.stderr
    sent, got = (int(word) for word in run.stdout.split()[1:4:2])
    assert got == sent > 0 and run.stdout.endswith("extra {}\n"), run.stdout
    assert alone.stdout.endswith("extra {}\n"), alone.stdout
    assert "Traceback" not in run.stderr, run.stderr
    report = run.report
    assert report is not None
    lines = [s["culprit"]["line"] for s in report["stalls"] if s["culprit"]]
    assert lines == [culprit_line(app, "stall")], report["stalls"]


def test_signal_signal_is_put_back_at_detach() -> None:
    """The wrapper looptools.inapp._sigtaken puts on ``signal.signal`` while the
    ticks run goes with the monitor."""
    import asyncio

    import looptools

    original = signal.signal
    with looptools.monitor(report=None):
        async def main() -> bool:
            await asyncio.sleep(0.05)
            return signal.signal is not original

        assert asyncio.run(main())
    assert signal.signal is original
