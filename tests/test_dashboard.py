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
from looptools.live.stream import LineDecoder, encode, message_problem

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
    assert "p99 12.1 ms" in out
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
    assert fmt_ms(0.42) == "0.42 ms" and fmt_ms(230) == "230 ms" and fmt_ms(1500) == "1.50 s"
    assert short_path("/home/dev/app/x/y.py", "/home/dev/app") == "x/y.py"
    assert short_path("/usr/lib/python3/z.py", "/home/dev/app") == "python3/z.py"
    line = sparkline([0, 1, 50, 1500], scale=1500)
    assert len(line) == 4 and line[0] == " " and line[-1] == "█"
    assert set(sparkline([0, 10], scale=10, ascii_only=True)) <= set(" .:-=+*#%@")


# -- other threads: worker-thread loops, hand-offs, thread affinity -------------------------
def _frame(function: str, file: str, line: int) -> dict[str, Any]:
    return {"function": function, "file": f"{CWD}/{file}", "line": line}


def _threads_snapshot() -> dict[str, Any]:
    """What the worker_loops, handoffs and affinity detectors add to a snapshot."""
    return {
        "worker_loops": {
            "loops": 3, "running": 2,
            "stall_summary": {"count": 2, "total_ms": 550.0, "max_ms": 300.0},
            "threads": [{"thread": "device-poller", "loops": 1, "kinds": {"asyncio": 1},
                         "stalls": {"count": 2, "total_ms": 550.0, "max_ms": 300.0},
                         "worst": {"started_at_s": 0.5, "duration_ms": 300.0,
                                   "culprit": _frame("read_device", "app/device.py", 35),
                                   "callback": "poll step", "task": "Task-2 (poll)",
                                   "thread": "device-poller", "thread_ident": 1234}}],
            "stalled_now": [{"thread": "job-runner", "thread_ident": 99, "loop_kind": "asyncio",
                             "started_at_s": 12.0, "duration_ms": 120.0,
                             "culprit": _frame("parse_blob", "app/jobs.py", 77),
                             "callback": "job step"}]},
        "handoffs": [
            {"via": "run_coroutine_threadsafe", "thread": "asr",
             "site": _frame("on_text", "app/asr.py", 12), "count": 30, "p50_ms": 0.3,
             "p99_ms": 3.1, "max_ms": 4.0, "worst_during_stall_in": None},
            {"via": "call_soon_threadsafe", "thread": "audio",
             "site": _frame("audio_loop", "app/audio.py", 57), "count": 214, "p50_ms": 0.2,
             "p99_ms": 271.8, "max_ms": 292.3,
             "worst_during_stall_in": _frame("build_index", "app/index.py", 73)}],
        "handoff_sites": 2,
        "affinity": [
            {"source": "qt_warning", "call": "QObject::startTimer",
             "site": _frame("hotkey", "app/keys.py", 69), "count": 1, "first_at_s": 0.2,
             "object": None, "owner_thread": None,
             "calling_thread": {"name": "hotkey", "ident": 5},
             "message": "QObject::startTimer: Timers cannot be started from another thread"},
            {"source": "widget_call", "call": "QLabel.setText",
             "site": _frame("on_done", "app/keys.py", 80), "count": 3, "first_at_s": 0.3,
             "object": {"class": "QLabel", "object_name": "status"},
             "owner_thread": {"name": "MainThread", "ident": 1},
             "calling_thread": {"name": "worker", "ident": 5}, "message": None}],
        "affinity_sites": 2,
    }


def _threads_state(clock: FakeClock | None = None) -> DashboardState:
    state = _state(clock, stalled=False)
    state.apply({"v": 1, "type": "snapshot", "t": 12.3, "dropped": 2,
                 "data": {**state.snapshot, **_threads_snapshot()}}, 0)
    assert state.rejected == 0
    return state


def _panel(out: str, title: str) -> list[str]:
    """The lines of the panel whose title starts with ``title``, borders left out."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"╭─ {title}"))
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("╰"))
    return [line.strip("│ ") for line in lines[start + 1:end]]


@pytest.mark.parametrize("width,height", [(80, 24), (120, 40)])
def test_threads_panel_names_threads_sites_and_culprits(width: int, height: int) -> None:
    clock = FakeClock()
    state = _threads_state(clock)
    out = _render(state, width, height)
    lines = out.splitlines()
    assert len(lines) <= height and all(len(line) <= width for line in lines)
    # The main loop stays the headline: its panels keep their place, Threads comes last.
    assert "│ OK" in lines[1]
    for title in ("Loop", "Tasks & stream", "Recent stalls (1)", "Slow callbacks"):
        assert f"─ {title} ─" in out, title
    assert out.index("Recent stalls") < out.index("Slow callbacks") < out.index("─ Threads")
    assert "load_thumbnails" in out and "on_reply" in out
    assert "Threads · 3 worker loops · 2 hand-off sites · 2 affinity sites" in out
    panel = " | ".join(_panel(out, "Threads"))
    assert f"job-runner (asyncio) STALLED {fmt_ms(120)} in parse_blob (app/jobs.py:77)" \
        in panel
    assert f"device-poller (asyncio) 2 stalls, max {fmt_ms(300)} in read_device" in panel
    # hand-offs worst p99 first: the site, how many, p99, max, the stall's culprit
    assert re.search(rf"audio_loop \((app/)?audio\.py:57\) ×214  p99 {fmt_ms(271.8)}  "
                     rf"max {fmt_ms(292.3)}  held by build_index", panel), panel
    assert "hotkey (app/keys.py:69) QObject::startTimer from hotkey" in panel
    if height >= 40:  # room for every row, each group labelled, and the blocking calls
        assert "Blocking calls" in out
        assert _panel(out, "Threads")[0].startswith("worker   job-runner")
        assert "on_text (app/asr.py:12) ×30  p99 3.10 ms  max 4.00 ms  [asr]" in panel
        assert "on_done (app/keys.py:80) QLabel.setText from worker, owner MainThread, on " \
            "QLabel 'status' ×3" in panel
        assert panel.index("audio_loop") < panel.index("on_text")
    # a worker loop's stall going on keeps counting between snapshots, as the main loop's
    clock.now += 0.5
    assert f"job-runner (asyncio) STALLED {fmt_ms(620)} in parse_blob" \
        in _render(state, width, height)


@pytest.mark.parametrize("width,height", [(40, 24), (30, 12), (20, 8), (60, 30), (200, 60)])
def test_threads_panel_in_narrow_and_odd_sizes(width: int, height: int) -> None:
    out = _render(_threads_state(), width, height)
    assert all(len(line) <= width for line in out.splitlines())
    assert len(out.splitlines()) <= max(height, 8)
    if height >= 24:
        assert "Threads" in out and "Recent stalls" in out


def test_no_threads_panel_when_other_threads_are_fine() -> None:
    """Worker loops that never stalled, and nothing else: the screen is as it was."""
    state = _state(stalled=False)
    before = _render(state, 80)
    quiet = {"loops": 4, "running": 1, "stall_summary": {"count": 0, "total_ms": 0.0,
                                                         "max_ms": 0.0},
             "threads": [{"thread": "device-poller", "loops": 4, "kinds": {"asyncio": 4},
                          "stalls": {"count": 0, "total_ms": 0.0, "max_ms": 0.0},
                          "worst": None}], "stalled_now": []}
    state.apply({"v": 1, "type": "snapshot", "t": 12.3, "dropped": 2,
                 "data": {**state.snapshot, "worker_loops": quiet}}, 0)
    assert state.rejected == 0 and state.snapshot["worker_loops"] == quiet
    assert _render(state, 80) == before and "Threads" not in before


def test_final_screen_shows_every_row_of_the_report() -> None:
    """Once the app ended, the report's rows (all of them) replace the snapshot's few, and
    no worker loop is stalled any more."""
    state = _threads_state()
    snap = _threads_snapshot()
    extra_sites = [{**snap["handoffs"][0], "thread": f"poster-{i}", "p99_ms": 10.0 + i,
                    "max_ms": 20.0 + i, "site": _frame("post", "app/posters.py", 100 + i)}
                   for i in range(5)]
    report = {"worker_loops": {**snap["worker_loops"], "watched": 3, "run_s": 2.0,
                               "stalls": []},
              "handoffs": snap["handoffs"] + extra_sites,
              "affinity": {"violations": snap["affinity"], "dropped": 1}}
    del report["worker_loops"]["stalled_now"]
    state.apply({"v": 1, "type": "bye", "t": 15.0, "dropped": 0, "exit": {"reason": "normal"}},
                0)
    assert "STALLED" not in " ".join(_panel(_render(state, 120, 40), "Threads"))
    state.finish(report, "ENDED: the app exited with status 0")
    out = _render(state, 120, 40)
    assert "ENDED: the app exited with status 0" in out
    assert "Threads · 3 worker loops · 7 hand-off sites · 3 affinity sites" in out
    panel = _panel(out, "Threads")
    text = " | ".join(panel)
    assert "STALLED" not in text and "device-poller (asyncio) 2 stalls" in text
    sites = [line for line in panel if " p99 " in line]
    assert len(sites) == 7 and "audio_loop" in sites[0] and "posters.py:104" in sites[1]
    assert "on_text" in sites[-1]  # worst p99 first


def test_stream_lines_with_mistyped_thread_rows_are_dropped_not_shown() -> None:
    """A snapshot whose thread rows have the wrong types is not a usable line (the
    decoder drops it); one without them, from an older app, is."""
    state = _state(stalled=False)
    good = {"v": 1, "type": "snapshot", "t": 12.3, "dropped": 2, "data": state.snapshot}
    assert message_problem(good) is None
    for key, value in [("handoffs", [{"count": "many"}]), ("handoff_sites", 1.5),
                       ("affinity", [{"site": "app.py:3"}]),
                       ("worker_loops", {"threads": [{"thread": None}]}),
                       ("worker_loops", {"stalled_now": [{"thread": "w"}]}),
                       ("worker_loops", {"threads": [{"thread": "w", "kinds": {"asyncio": "1"}}]})]:
        bad = {**good, "data": {**state.snapshot, key: value}}
        assert message_problem(bad) is not None, (key, value)
        assert list(LineDecoder().feed(encode(bad))) == []
        state.apply(bad, 0)
    assert state.rejected == 6
    _render(state, 80)


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


# -- other threads in a real app: `looptools dashboard --once` and a live run in tmux ------------
THREADS_APP = Path(__file__).resolve().parent / "apps" / "threads_app.py"


def _marked(marker: str) -> int:
    return next(n for n, line in enumerate(THREADS_APP.read_text().splitlines(), 1)
                if f"# {marker}" in line)


def _check_threads_panel(panel: list[str], width: int) -> None:
    """The worker thread and its culprit, the hand-off site with its p99 and the stall that
    held it, the affinity site (tests/apps/threads_app.py)."""
    text = " | ".join(panel)
    assert all(len(line) <= width - 4 for line in panel), panel
    worker = next(line for line in panel if line.lstrip().removeprefix("worker ").lstrip()
                  .startswith("device-poller (asyncio) "))
    assert re.search(r"\d+ stalls?, max [\d.]+ m?s in read_device", worker), worker
    if width >= 120:
        assert f"threads_app.py:{_marked('CULPRIT: worker')})" in worker, worker
    handoff = re.search(rf"audio \((?:apps/)?threads_app\.py:{_marked('POST: audio')}\) ×\d+  "
                        r"p99 ([\d.]+) ms  max [\d.]+ m?s  held by build_index", text)
    assert handoff, text
    assert 150 <= float(handoff.group(1)) <= 450  # posts waited behind the 300 ms build_index
    assert re.search(rf"hotkey \((apps/)?threads_app\.py:{_marked('SITE: timer')}\) "
                     r"QObject::startTimer from hotkey", text), text


def test_threads_panel_of_a_real_app_with_dashboard_once(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = Path(f"/tmp/lt-xdg-th-{os.getpid()}")
    runtime.mkdir(mode=0o700, exist_ok=True)
    proc = subprocess.Popen([sys.executable, str(THREADS_APP), "20"], stdout=subprocess.PIPE,
                            text=True, cwd=tmp_path,
                            env=_env(runtime, LOOPTOOLS="1", QT_API="pyside6"))
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
        from looptools.cli.dashboard import dashboard

        for width, height in ((80, 24), (120, 40)):
            monkeypatch.setenv("COLUMNS", str(width))
            monkeypatch.setenv("LINES", str(height))
            shown = CliRunner().invoke(dashboard, [str(proc.pid), "--once"])
            assert shown.exit_code == 0, shown.output
            out = shown.output
            print(out)
            assert all(len(line) <= width for line in out.splitlines())
            assert len(out.splitlines()) <= height
            assert f"pid {proc.pid}" in out and "qasync" in out
            assert "bad lines 0" in out  # the snapshots with thread rows were all usable
            # the GUI loop's stall is still the first thing shown
            assert re.search(r"Recent stalls \(1\).*build_index", out, re.S)
            assert "Threads · 1 worker loop · 1 hand-off site · 1 affinity site" in out
            _check_threads_panel(_panel(out, "Threads"), width)
        proc.terminate()
        assert proc.wait(20) is not None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(runtime, ignore_errors=True)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_threads_panel_live_and_on_the_final_screen_in_tmux(tmp_path: Path) -> None:
    """`looptools profile` in a 120x40 terminal: the worker loop's stall shows while it goes
    on, and the final screen (from the app's report) keeps the panel."""
    session = f"looptools-threads-{os.getpid()}"
    venv_bin = os.path.dirname(sys.executable)
    command = (f"cd {tmp_path} && PATH={venv_bin}:$PATH QT_API=pyside6 "
               f"QT_QPA_PLATFORM=offscreen {sys.executable} -m looptools profile -- "
               f"python {THREADS_APP} 6 --repeat --quiet 2> stderr.txt; echo EXIT=$? > exit.txt; "
               "sleep 60")  # (Qt's warning on stderr would scroll the screen)
    env = {**os.environ, "TERM": "xterm-256color"}
    env.pop("LOOPTOOLS", None)
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40",
                    command], check=True, env=env, timeout=10)
    try:
        live = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (tmp_path / "exit.txt").exists():
            screen = _tmux("capture-pane", "-p", "-t", session)
            if re.search(r"device-poller \(asyncio\) STALLED [\d.]+ m?s in read_device", screen):
                live = screen
                break
            time.sleep(0.05)
        print(live)
        assert live, _tmux("capture-pane", "-p", "-t", session)
        lines = live.splitlines()
        assert len(lines) <= 40 and all(len(line) <= 120 for line in lines)
        deadline = time.monotonic() + 30
        while not (tmp_path / "exit.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        final = _tmux("capture-pane", "-p", "-t", session)
        print(final)
        assert (tmp_path / "exit.txt").read_text().strip() == "EXIT=0", final
        assert "ENDED" in final
        panel = _panel(final, "Threads")
        assert "STALLED" not in " ".join(panel)  # nothing goes on after the end
        _check_threads_panel(panel, 120)
        report = json.loads((tmp_path / "looptools-report.json").read_text())
        count = report["worker_loops"]["stall_summary"]["count"]
        assert count >= 2 and f"device-poller (asyncio) {count} stalls" in " ".join(panel)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, timeout=10)
