"""The Qt dispatcher's busy/idle accounting: a 200 ms slot is busy, a 200 ms sleep is idle.

Run on both dispatchers (glib, and UNIX with QT_NO_GLIB=1) and both Qt loops.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from helpers import ROOT, env


@pytest.mark.parametrize("glib", [True, False], ids=["glib", "unix"])
@pytest.mark.parametrize("kind", ["qasync", "qtasyncio"])
def test_slot_is_busy_and_idle_sleep_is_idle(kind: str, glib: bool) -> None:
    extra = {} if glib else {"QT_NO_GLIB": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "apps" / "dispatcher_app.py"), kind],
        capture_output=True, text=True, timeout=60, env=env(**extra),
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    expected = "QPAEventDispatcherGlib" if glib else "QUnixEventDispatcherQPA"
    assert result["dispatcher"] == expected
    slot, idle = result["slot"], result["idle"]
    # The phase with the blocking slot: at least the slot's 200 ms counts as busy.
    assert slot["busy_ms"] >= 180, result
    # The idle phase: a 200 ms asyncio.sleep is (nearly all) idle.
    assert idle["idle_ms"] >= 170, result
    assert idle["busy_ms"] <= 30, result
