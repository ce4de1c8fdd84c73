"""The dashboard: panels rendered from a model, `dashboard`/`ps` on a real app, and in tmux."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from rich.console import Console

from looptools.live.dashboard import Dashboard, DashboardState, fmt_ms, short_path, sparkline

CWD = "/home/dev/app"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _stall(at: float, ms: float, function: str, line: int, file: str = "app/preview.py",
           ) -> dict[str, Any]:
    return {"started_at_s": at, "duration_ms": ms, "detected_after_ms": 52.0,
            "culprit": {"function": function, "file": f"{CWD}/{file}", "line": line},
            "stack": [], "callback": "main step", "task": "Task-1 (main)", "gil_held": False,
            "source": "task"}


def _state(clock: FakeClock | None = None, stalled: bool = True) -> DashboardState:
    state = DashboardState(clock=clock or FakeClock())
    state.apply({"v": 1, "type": "hello", "t": 0.02, "pid": 4242, "argv": [f"{CWD}/main.py"],
                 "cwd": CWD, "loop": {"kind": "qasync"}, "threshold_ms": 50.0}, 0)
    state.apply({"v": 1, "type": "snapshot", "t": 12.3, "dropped": 2, "data": {
        "loop": {"kind": "qasync"},
        "lag": {"p50_ms": 0.4, "p99_ms": 12.1, "max_ms": 1500.0},
        "lag_recent": [[t / 2, v] for t, v in enumerate([1, 2, 1, 300, 1, 0.5, 0.2, 2])],
        "dispatcher": {"busy_fraction": 0.37},
        "slow_callbacks": [{"name": "on_reply", "kind": "task", "location": f"{CWD}/chat.py:40",
                            "count": 7, "total_ms": 910.0, "max_ms": 300.0, "p50_ms": 120.0,
                            "p99_ms": 300.0}],
        "stall_now": None,
        "recent_stalls": [_stall(3.5, 1500.0, "load_thumbnails", 12, "app/gallery.py")],
        "stall_summary": {"count": 1, "total_ms": 1500.0, "max_ms": 1500.0},
        "tasks": {"pending_now": 3, "peak_pending": 12, "long_pending": 1,
                  "unretrieved_exceptions": 0},
        "blocking_calls": [{"call": "time.sleep", "count": 4, "sites": [
            {"function": "render_preview", "file": f"{CWD}/app/preview.py", "line": 88,
             "count": 4}]}],
    }}, 0)
    if stalled:
        state.apply({"v": 1, "type": "event", "t": 12.4, "kind": "stall_started",
                     "data": _stall(12.2, 230.0, "render_preview", 88)}, 0)
    return state


def _render(state: DashboardState, width: int, height: int = 24) -> str:
    console = Console(file=io.StringIO(), width=width, height=height, color_system=None,
                      legacy_windows=False)
    console.print(Dashboard(state))
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def test_stall_in_progress_shows_state_and_culprit_at_80x24() -> None:
    clock = FakeClock()
    state = _state(clock)
    out = _render(state, 80)
    lines = out.splitlines()
    assert len(lines) <= 24
    assert all(len(line) <= 80 for line in lines)
    assert "STALLED 230 ms in render_preview (app/preview.py:88)" in out
    assert "pid 4242" in out and "qasync" in out
    assert "busy  37%" in out
    assert "p99 12 ms" in out
    assert "load_thumbnails" in out and "app/gallery.py:12" in out  # a past stall
    assert "on_reply" in out and "chat.py:40" in out  # slow callback
    assert "time.sleep" in out and "render_preview (app/preview.py:88)" in out  # blocking
    assert "dropped 2" in out
    # the stall's duration keeps growing between snapshots
    clock.now += 0.5
    assert "STALLED 730 ms in render_preview" in _render(state, 80)


def test_states_ok_silent_and_ended() -> None:
    clock = FakeClock()
    state = _state(clock, stalled=False)
    assert "│ OK" in _render(state, 80)
    clock.now += 2.5
    assert "NO DATA for 2.5 s" in _render(state, 80)
    state.apply({"v": 1, "type": "bye", "t": 15.0, "dropped": 0,
                 "exit": {"reason": "exception", "signal": None,
                          "exception": "ZeroDivisionError: division by zero"}}, 0)
    assert "ENDED: crashed with ZeroDivisionError" in _render(state, 80)


@pytest.mark.parametrize("width,height", [(40, 24), (30, 12), (20, 8), (60, 30), (200, 60)])
def test_narrow_and_odd_sizes_do_not_crash(width: int, height: int) -> None:
    out = _render(_state(), width, height)
    assert all(len(line) <= width for line in out.splitlines())
    assert len(out.splitlines()) <= max(height, 8)
    assert "STALLED" in out


def test_narrow_header_keeps_the_culprit_location() -> None:
    out = _render(_state(), 40)
    assert "STALLED 230 ms in render_preview" in out and "app/preview.py:88" in out


@pytest.mark.parametrize("width", [80, 60, 40])
def test_long_culprits_keep_their_line_numbers(width: int) -> None:
    state = _state(stalled=False)
    long_name = "ChatWindow.on_export_clicked_with_a_long_name"
    state.apply({"v": 1, "type": "event", "t": 12.4, "kind": "stall_started",
                 "data": _stall(12.2, 230.0, long_name, 468,
                                "sample_apps/some/deeper/folder/chat_qasync.py")}, 0)
    out = _render(state, width)
    header = " ".join(out.splitlines()[1:3] if width < 70 else out.splitlines()[1:2])
    assert "STALLED 230 ms in" in header and "chat_qasync.py:468" in header
    assert "long_name" in header
    table_rows = [line for line in out.splitlines() if line.lstrip("│ ").startswith("now")]
    assert table_rows and "chat_qasync.py:468" in table_rows[0]
    assert all(len(line) <= width for line in out.splitlines())


def test_model_ignores_other_processes_and_garbage_values() -> None:
    state = DashboardState()
    state.apply({"v": 1, "type": "snapshot", "t": 1, "data": {}}, 0)  # before hello: ignored
    assert state.view().state == "waiting"
    state.apply({"v": 1, "type": "hello", "t": 0, "pid": 1, "argv": ["a.py"]}, 7)
    state.apply({"v": 1, "type": "hello", "t": 0, "pid": 2, "argv": ["child.py"]}, 8)
    state.apply({"v": 1, "type": "snapshot", "t": 1, "data": {
        "lag_recent": "nonsense", "slow_callbacks": [1, None], "recent_stalls": [{"x": 1}],
        "tasks": "?"}}, 7)
    view = state.view()
    assert view.pid == 1 and view.other_processes == 1 and view.stalls == []
    assert view.slow_callbacks == [] and view.lag_recent == []
    _render(state, 80)


def test_helpers() -> None:
    assert fmt_ms(0.42) == "0.4 ms" and fmt_ms(230) == "230 ms" and fmt_ms(1500) == "1.50 s"
    assert short_path("/home/dev/app/x/y.py", "/home/dev/app") == "x/y.py"
    assert short_path("/usr/lib/python3/z.py", "/home/dev/app") == "python3/z.py"
    line = sparkline([0, 1, 50, 1500], scale=1500)
    assert len(line) == 4 and line[0] == " " and line[-1] == "█"
    assert set(sparkline([0, 10], scale=10, ascii_only=True)) <= set(" .:-=+*#%@")


# -- a real app, watched with `looptools dashboard` and listed by `looptools ps` ------------------
_LISTENING_APP = textwrap.dedent("""
    import asyncio, sys, time
    import looptools
    from looptools.live.stream import StreamWriter
    monitor = looptools.active()
    if monitor.hub.get("stream") is None:  # until monitor.py adds it by itself
        monitor.hub.add(StreamWriter(monitor.settings, monitor))
    def render_preview():
        time.sleep(0.4)
    async def main():
        print("ready", flush=True)
        for tick in range(int(sys.argv[1])):
            await asyncio.sleep(0.05)
            if tick % 10 == 3:
                render_preview()
    asyncio.run(main())
""")


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPTOOLS")}
    env.update({"XDG_RUNTIME_DIR": str(tmp), "QT_QPA_PLATFORM": "offscreen",
                "LOOPTOOLS_SUMMARY": "0", "LOOPTOOLS_REPORT": "none"}, **extra)
    return env


def test_dashboard_once_and_ps_on_a_real_app(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = Path(f"/tmp/lt-xdg-{os.getpid()}")
    runtime.mkdir(mode=0o700, exist_ok=True)
    app = tmp_path / "listening_app.py"
    app.write_text(_LISTENING_APP)
    proc = subprocess.Popen([sys.executable, str(app), "60"], stdout=subprocess.PIPE, text=True,
                            env=_env(runtime, LOOPTOOLS="1"), cwd=tmp_path)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.8)  # past the first stall
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
        from looptools.cli.dashboard import dashboard, ps

        runner = CliRunner()
        listed = runner.invoke(ps, ["--json"])
        assert listed.exit_code == 0, listed.output
        entries = [json.loads(line) for line in listed.output.splitlines()]
        assert [e["pid"] for e in entries] == [proc.pid]
        table = runner.invoke(ps, [])
        assert str(proc.pid) in table.output and "listening_app.py" in table.output

        shown = runner.invoke(dashboard, [str(proc.pid), "--once"])
        assert shown.exit_code == 0, shown.output
        assert f"pid {proc.pid}" in shown.output and "asyncio" in shown.output
        # FORCE_COLOR (set in many CI logs) colours, but a pipe is no live terminal: one
        # frame, not a redraw loop until the app ends.
        monkeypatch.setenv("FORCE_COLOR", "1")
        started = time.monotonic()
        piped = runner.invoke(dashboard, [str(proc.pid)])
        assert piped.exit_code == 0 and f"pid {proc.pid}" in piped.output, piped.output
        assert time.monotonic() - started < 5 and proc.poll() is None
        monkeypatch.delenv("FORCE_COLOR")
        assert "render_preview" in shown.output and "listening_app.py:9" in shown.output

        missing = runner.invoke(dashboard, ["999999"])
        assert missing.exit_code == 1
        assert "no monitored process with pid 999999" in missing.output
        assert proc.wait(20) == 0
        assert runner.invoke(ps, ["--json"]).output == ""  # it removed its socket
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(runtime, ignore_errors=True)


# -- end to end in a real terminal (tmux, 80x24) -------------------------------------------
_STALLING_APP = textwrap.dedent("""
    import asyncio
    import time


    def render_preview():
        time.sleep(1.5)  # CULPRIT: blocking-slot


    async def main():
        for tick in range(30):
            await asyncio.sleep(0.05)
            if tick == 10:
                render_preview()
        await asyncio.sleep(60)  # stopped by --duration


    asyncio.run(main())
""")


def _tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True,
                          timeout=10).stdout


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_profile_dashboard_in_tmux(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(_STALLING_APP)
    culprit = next(n for n, line in enumerate(_STALLING_APP.splitlines(), 1) if "CULPRIT" in line)
    session = f"looptools-test-{os.getpid()}"
    venv_bin = os.path.dirname(sys.executable)
    command = (f"cd {tmp_path} && PATH={venv_bin}:$PATH {sys.executable} -m looptools profile "
               f"--duration 4 --grace 2 --html r.html -- python app.py; "
               f"echo EXIT=$? > exit.txt; sleep 60")
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("LOOPTOOLS", None)
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24",
                    command], check=True, env=env, timeout=10)
    try:
        screen = ""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            screen = _tmux("capture-pane", "-p", "-t", session)
            if "STALLED" in screen and "render_preview" in screen:
                break
            time.sleep(0.1)
        print(screen)
        assert "STALLED" in screen, screen
        assert re.search(rf"STALLED \d+ ms in render_preview \(app\.py:{culprit}\)", screen), screen
        lines = screen.splitlines()
        assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
        deadline = time.monotonic() + 20
        while not (tmp_path / "exit.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        final = _tmux("capture-pane", "-p", "-t", session, "-S", "-60")
        assert (tmp_path / "exit.txt").read_text().strip() == "EXIT=0", final
        report = json.loads((tmp_path / "looptools-report.json").read_text())
        assert report["stalls"][0]["culprit"]["function"] == "render_preview"
        assert report["stalls"][0]["culprit"]["line"] == culprit
        assert (tmp_path / "r.html").read_text().lstrip().lower().startswith("<!doctype html")
        assert "ENDED" in final and "wrote looptools-report.json, r.html" in final
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, timeout=10)
