"""Reports of real runs of the sample apps, one per loop kind, made once per test session.

The chart and trace tests (tests/test_html_browser.py, tests/test_trace.py) read them:
each app runs under ``LOOPTOOLS=1`` with problems that give every chart something to
draw — stalls with stacks (a task or a slot that blocks twice), slow callbacks, blocking
calls (``time.sleep``, the journal's ``os.pwrite``), and two tasks that share the name
``leaky-poller`` — and the report it wrote at exit is used as it is.  uvloop has no
sample app: the probe app (tests/apps/probe_app.py) runs on it.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

from helpers import PROBE, ROOT, run_app, validate

#: loop kind -> the command line (after the interpreter) of its run
RUNS: dict[str, list[str]] = {
    "qasync": [str(ROOT / "sample_apps" / "chat_qasync.py"),
               "--problem", "blocking-coro,sync-io,leaked-task"],
    "qtasyncio": [str(ROOT / "sample_apps" / "browser_qtasyncio.py"),
                  "--problem", "blocking-coro,sync-io,leaked-task"],
    "asyncio": [str(ROOT / "sample_apps" / "pipeline_asyncio.py"),
                "--problem", "blocking-coro,sync-io,leaked-task"],
    "qt": [str(ROOT / "sample_apps" / "gallery_threadpool.py"),
           "--problem", "blocking-slot,sync-io"],
    "uvloop": [str(PROBE), "uvloop", "blocking-coro", "150"],
}
SAMPLE_ARGS = ["--repeat", "2", "--every", "0.4", "--stall-ms", "150", "--duration", "1.5"]

_made: dict[str, dict[str, Any]] = {}
_folder: Path | None = None


def sample_report(kind: str) -> dict[str, Any]:
    """The report of the run for loop ``kind`` (made on first use, then kept)."""
    global _folder
    if kind not in _made:
        if _folder is None:
            _folder = Path(tempfile.mkdtemp(prefix="looptools-sample-runs-"))
            atexit.register(shutil.rmtree, _folder, True)
        folder = _folder / kind
        folder.mkdir(exist_ok=True)
        args = RUNS[kind] + ([] if kind == "uvloop" else SAMPLE_ARGS)
        run = run_app(args, folder, timeout=120)
        assert run.returncode == 0, run.stderr
        assert run.report is not None, run.stderr
        validate(run.report)
        assert run.report["loop"]["kind"] == kind, run.report["loop"]
        _made[kind] = run.report
    return _made[kind]
