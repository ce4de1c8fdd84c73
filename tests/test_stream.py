"""The live stream: a real writer in a real monitor, real Unix sockets, real reader processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest

import looptools
from looptools.live.stream import (
    LineDecoder,
    StreamServer,
    StreamWriter,
    _Inbox,
    connect,
    encode,
    ensure_private_dir,
    listed_processes,
)

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="Unix sockets only")


def render_preview() -> None:
    time.sleep(0.25)  # the culprit of the stalls below


async def _app(stall_at: int = 3, ticks: int = 12) -> None:
    for tick in range(ticks):
        await asyncio.sleep(0.02)
        if tick == stall_at:
            render_preview()


def _short_dir(tmp_path: Path) -> Path:
    # AF_UNIX paths must stay under ~100 bytes; pytest's tmp_path can be long.
    folder = Path(f"/tmp/lt-test-{os.getpid()}-{abs(hash(tmp_path)) % 10**6}")
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder


@pytest.fixture
def sock_dir(tmp_path: Path) -> Any:
    folder = _short_dir(tmp_path)
    yield folder
    for child in folder.iterdir():
        if child.is_dir():
            for inner in child.iterdir():
                inner.unlink()
            child.rmdir()
        else:
            child.unlink()
    folder.rmdir()


def _collect(server_path: Path) -> tuple[StreamServer, list[dict[str, Any]]]:
    messages: list[dict[str, Any]] = []
    server = StreamServer(server_path, lambda message, n: messages.append(message)).start()
    return server, messages


def test_writer_streams_hello_events_snapshots_and_bye(sock_dir: Path) -> None:
    server, messages = _collect(sock_dir / "s.sock")
    try:
        with looptools.monitor(stream=str(sock_dir / "s.sock"), report=None,
                               threshold_ms=50) as monitor:
            writer = monitor.hub.get("stream")
            assert isinstance(writer, StreamWriter)
            asyncio.run(_app())
        server.drain()
    finally:
        server.close()
    kinds = [(m["type"], m.get("kind")) for m in messages]
    assert kinds[0] == ("hello", None)
    assert kinds[-1] == ("bye", None)
    assert ("event", "stall_started") in kinds and ("event", "stall_ended") in kinds
    assert ("snapshot", None) in kinds
    assert all(m["v"] == 1 and isinstance(m["t"], (int, float)) for m in messages)
    hello = messages[0]
    assert hello["pid"] == os.getpid() and hello["argv"] == sys.argv
    started = next(m for m in messages if m.get("kind") == "stall_started")
    assert started["data"]["culprit"]["function"] == "render_preview"
    ended = next(m for m in messages if m.get("kind") == "stall_ended")
    assert ended["data"]["duration_ms"] >= 200
    assert ended["t"] >= started["t"]
    snapshots = [m for m in messages if m["type"] == "snapshot"]
    assert all("dropped" in m and isinstance(m["data"], dict) for m in snapshots)
    assert any(s["data"]["recent_stalls"] for s in snapshots)
    # stacks stay out of snapshots; the culprit stays in
    for snap in snapshots:
        for stall in snap["data"]["recent_stalls"]:
            assert stall["stack"] == [] and stall["culprit"]["function"] == "render_preview"
    assert messages[-1]["exit"]["reason"] in ("stopped", "normal")
    assert server.bad_lines == 0


def test_writer_lines_are_json_lines(sock_dir: Path) -> None:
    """Every message is exactly one line: a newline inside a string is escaped."""
    line = encode({"v": 1, "type": "event", "t": 1.0, "kind": "x", "data": {"s": "a\nb"}})
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert LineDecoder.decode(line[:-1]) == json.loads(line)


_READER = textwrap.dedent("""
    import signal, sys, time
    from looptools.live.stream import StreamServer
    count = [0]
    server = StreamServer(sys.argv[1], lambda m, n: count.__setitem__(0, count[0] + 1)).start()
    print("ready", flush=True)
    signal.signal(signal.SIGTERM, lambda *a: (print(count[0], flush=True), sys.exit(0)))
    while True:
        time.sleep(0.1)
""")


def _start_reader(path: Path) -> subprocess.Popen[str]:
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(path)], stdout=subprocess.PIPE,
                              text=True)
    assert reader.stdout is not None
    assert reader.stdout.readline().strip() == "ready"
    return reader


async def _timed_ticks(n: int, period: float) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await asyncio.sleep(period)
    return time.perf_counter() - started


def test_paused_then_killed_reader_does_not_slow_the_app(sock_dir: Path) -> None:
    path = sock_dir / "r.sock"
    reader = _start_reader(path)
    try:
        with looptools.monitor(report=None, detectors="stalls,lag,tasks") as monitor:
            writer = StreamWriter(monitor.settings, monitor, connect_to=str(path),
                                  snapshot_every=0.002, max_pending=64 * 1024,
                                  reconnect_every=0.5)
            monitor.hub.add(writer)
            deadline = time.monotonic() + 5
            while writer.readers == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert writer.readers == 1

            reader.send_signal(signal.SIGSTOP)  # paused: reads nothing from now on
            elapsed = asyncio.run(_timed_ticks(100, 0.01))
            # the socket buffer and our bounded buffer are full: messages are dropped
            assert writer.dropped > 0
            # 100 ticks of 10 ms: the app ran at its own pace
            assert elapsed < 1.0 + 0.5

            # The hook on the loop thread stays O(1) even now.
            t0 = time.perf_counter()
            for _ in range(10_000):
                writer.event("slow_callback", {"name": "x"})
            per_call = (time.perf_counter() - t0) / 10_000
            assert per_call < 50e-6

            reader.send_signal(signal.SIGKILL)  # killed while paused
            reader.wait(5)
            attempts_before = writer.connect_attempts
            elapsed = asyncio.run(_timed_ticks(100, 0.01))
            assert elapsed < 1.5
            deadline = time.monotonic() + 3
            while writer.readers and time.monotonic() < deadline:
                time.sleep(0.01)
            assert writer.readers == 0
            time.sleep(1.2)
            # reconnecting is rate-limited (0.5 s, doubling), not a busy loop
            assert writer.connect_attempts - attempts_before <= 3
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait(5)


def test_queue_full_counts_drops_without_blocking(monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = _Inbox(4)
    try:
        assert [inbox.put((0.0, "blocking_call", {})) for _ in range(6)] == [True] * 4 + [False] * 2
        assert len(inbox.take(0.0)) == 4
    finally:
        inbox.close()
    monkeypatch.setenv("LOOPTOOLS_LISTEN", "0")
    with looptools.monitor(report=None, detectors="lag") as monitor:
        writer = StreamWriter(monitor.settings, monitor, queue_size=4)  # no socket: inert
        assert writer.connect_path is None and writer.listen_path is None
        for _ in range(10):  # no thread, so no reader: nothing is queued or counted
            writer.event("blocking_call", {"call": "time.sleep"})
        assert writer.dropped == 0 and not writer.inbox.items
        writer.close()


def test_reader_counts_garbage_and_carries_on(sock_dir: Path) -> None:
    server, messages = _collect(sock_dir / "g.sock")
    try:
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.connect(str(sock_dir / "g.sock"))
        good = {"v": 1, "type": "hello", "t": 0.0, "pid": 1, "argv": ["x"]}
        client.sendall(b"not json at all\n" + encode(good) + b'{"v": 2, "type": "hello"}\n'
                       + b"[1, 2]\n" + b'{"v": 1, "type": "nonsense"}\n' + b"\xff\xfe\n\n"
                       + encode({**good, "type": "bye"}))
        client.close()
        server.drain()
    finally:
        server.close()
    assert [m["type"] for m in messages] == ["hello", "bye"]
    assert server.bad_lines == 5


def test_decoder_drops_an_endless_line() -> None:
    decoder = LineDecoder()
    assert list(decoder.feed(b"x" * (9 << 20))) == []
    assert list(decoder.feed(b"tail of it\n" + encode({"v": 1, "type": "bye", "t": 1}))) == [
        {"v": 1, "type": "bye", "t": 1}]
    assert decoder.bad == 1


def test_sockets_and_folders_are_owner_only(sock_dir: Path) -> None:
    server = StreamServer(sock_dir / "p.sock", lambda m, n: None)
    try:
        assert stat.S_IMODE(os.stat(sock_dir / "p.sock").st_mode) == 0o600
    finally:
        server.close()
    registry = sock_dir / "reg"
    with looptools.monitor(report=None, detectors="lag") as monitor:
        writer = StreamWriter(monitor.settings, monitor, listen_on=registry / "123.sock")
        monitor.hub.add(writer)
        deadline = time.monotonic() + 5
        while not (registry / "123.json").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stat.S_IMODE(os.stat(registry).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(registry / "123.sock").st_mode) == 0o600
        assert stat.S_IMODE(os.stat(registry / "123.json").st_mode) == 0o600
    assert not (registry / "123.sock").exists()  # removed when the monitor stopped
    assert not (registry / "123.json").exists()


def test_private_dir_is_tightened_or_refused(sock_dir: Path) -> None:
    loose = sock_dir / "loose"
    loose.mkdir(mode=0o755)
    os.chmod(loose, 0o755)
    ensure_private_dir(loose)
    assert stat.S_IMODE(os.stat(loose).st_mode) == 0o700
    link = sock_dir / "link"
    link.symlink_to(loose)
    with pytest.raises(PermissionError, match="not a directory"):
        ensure_private_dir(link)
    link.unlink()
    if os.getuid() == 0:
        os.chown(loose, 65534, 65534)
        with pytest.raises(PermissionError, match="belongs to uid 65534"):
            ensure_private_dir(loose)
        os.chown(loose, 0, 0)


def test_listening_app_is_listed_watched_and_pruned(sock_dir: Path) -> None:
    registry = sock_dir / "reg"
    ensure_private_dir(registry)
    stale = registry / "999999.sock"  # a dead pid's leftover
    leftover = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    leftover.bind(str(stale))
    leftover.close()
    (registry / "999999.json").write_text("{}")
    messages: list[dict[str, Any]] = []
    with looptools.monitor(report=None, threshold_ms=50) as monitor:
        writer = StreamWriter(monitor.settings, monitor, listen_on=registry / f"{os.getpid()}.sock")
        monitor.hub.add(writer)
        deadline = time.monotonic() + 5
        while not list(registry.glob(f"{os.getpid()}.json")) and time.monotonic() < deadline:
            time.sleep(0.01)
        found = listed_processes(registry)
        assert [entry["pid"] for entry in found] == [os.getpid()]
        assert found[0]["argv"] == sys.argv
        assert not stale.exists()  # pruned
        client = connect(found[0]["socket"], lambda m, n: messages.append(m))
        try:
            asyncio.run(_app())
            deadline = time.monotonic() + 3
            while not any(m.get("kind") == "stall_ended" for m in messages) \
                    and time.monotonic() < deadline:
                time.sleep(0.01)
        finally:
            monitor.stop(write=False)
            client.closed.wait(3)
            client.close()
    assert messages[0]["type"] == "hello" and messages[0]["mode"] == "listen"
    assert any(m.get("kind") == "stall_ended" for m in messages)
    assert messages[-1]["type"] == "bye"
    assert listed_processes(registry) == []


def _stream_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name == "looptools-stream"]


def test_listening_has_no_thread_until_a_dashboard_knocks(sock_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Any second thread costs a busy loop a few per cent (benchmarks/as_users.py
    --breakdown): listening, the writer thread exists only while a dashboard reads."""
    import looptools.live.stream as stream

    monkeypatch.setattr(stream, "IDLE_EXIT_S", 0.3)
    registry = sock_dir / "reg"
    path = registry / f"{os.getpid()}.sock"

    async def idle(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    def hello_from_app() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = []
        client = connect(path, lambda m, n: got.append(m))
        try:
            asyncio.run(idle(0.6))  # the heartbeat sees the knock and starts the thread
            assert _stream_threads() == ["looptools-stream"]
        finally:
            client.close()
        return got

    with looptools.monitor(report=None, threshold_ms=50) as monitor:
        writer = StreamWriter(monitor.settings, monitor, listen_on=path)
        monitor.hub.add(writer)
        assert writer.lazy and path.exists() and path.with_suffix(".json").exists()
        asyncio.run(idle(0.3))
        assert _stream_threads() == []  # listening, nobody reading: no thread
        first = hello_from_app()
        assert first and first[0]["type"] == "hello" and first[0]["mode"] == "listen"
        assert any(m["type"] == "snapshot" for m in first)
        asyncio.run(idle(0.6))  # the reader left; the thread ends after IDLE_EXIT_S
        deadline = time.monotonic() + 3
        while _stream_threads() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _stream_threads() == [] and path.exists()  # still listening
        second = hello_from_app()  # and the next dashboard is served again
        assert second and second[0]["type"] == "hello"
    assert not path.exists() and not path.with_suffix(".json").exists()
    assert _stream_threads() == []


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # reaped: no process has this pid now (reuse within the test is rare)


def test_apps_clear_dead_entries_and_leave_no_empty_folder(sock_dir: Path) -> None:
    """A SIGKILLed process cannot remove its registry entry; the next monitored process
    clears it.  The last one out removes the per-user folder."""
    registry = sock_dir / "looptools"
    ensure_private_dir(registry)
    dead = _dead_pid()
    for suffix in (".sock", ".json"):
        (registry / f"{dead}{suffix}").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPTOOLS")}
    env.update(LOOPTOOLS="1", LOOPTOOLS_REPORT="none", LOOPTOOLS_SUMMARY="0",
               XDG_RUNTIME_DIR=str(sock_dir))
    app = [sys.executable, "-c", "import asyncio; asyncio.run(asyncio.sleep(0.2))"]
    done = subprocess.run(app, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    assert not registry.exists(), sorted(p.name for p in registry.iterdir())

    # Someone else still listed (a live pid: ours): the folder and that entry stay.
    ensure_private_dir(registry)
    (registry / f"{os.getpid()}.json").write_text("{}")
    done = subprocess.run(app, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in registry.iterdir()) == [f"{os.getpid()}.json"]


_FD_STARVED_APP = textwrap.dedent("""
    import asyncio, os, resource, sys
    async def main():
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        await asyncio.sleep(0.2)
        highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
        resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 1, hard))  # no new descriptor
        print("starved", flush=True)
        await asyncio.sleep(1.5)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        print("fed", flush=True)
        await asyncio.sleep(3)
    asyncio.run(main())
""")


def test_a_process_out_of_descriptors_streams_again_once_it_has_some(sock_dir: Path) -> None:
    """accept() failing with EMFILE once ended streaming for good (and removed the socket)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPTOOLS")}
    env.update(LOOPTOOLS="1", LOOPTOOLS_REPORT="none", LOOPTOOLS_SUMMARY="0",
               XDG_RUNTIME_DIR=str(sock_dir))
    proc = subprocess.Popen([sys.executable, "-c", _FD_STARVED_APP], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    messages: list[dict[str, Any]] = []
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "starved\n"
        path = sock_dir / "looptools" / f"{proc.pid}.sock"
        client = connect(str(path), lambda m, n: messages.append(m))
        assert proc.stdout.readline() == "fed\n"
        deadline = time.monotonic() + 4
        while not messages and time.monotonic() < deadline:
            time.sleep(0.02)
        client.close()
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert messages and messages[0]["type"] == "hello", err
    assert proc.returncode == 0 and err == "", err


# -- other threads in snapshots (the dashboard's Threads panel) --------------------------------
def read_device() -> None:
    time.sleep(0.4)  # the culprit of the worker loop's stall below


def _post(loop: asyncio.AbstractEventLoop, done: list[int]) -> None:
    loop.call_soon_threadsafe(done.append, 1)  # the posting site of every poster


def test_snapshots_carry_other_threads_live_bounded_and_readable() -> None:
    """A real monitor: seven threads post to the main loop while it is blocked (five sites
    sent, seven counted), and a worker loop stalls: a snapshot taken during the stall names
    it live, with its culprit; the lines pass the stream's reader."""
    worker_loop = asyncio.new_event_loop()
    worker = threading.Thread(target=worker_loop.run_forever, name="device-poller")

    async def stall() -> None:
        read_device()

    async def main(monitor: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        loop = asyncio.get_running_loop()
        done: list[int] = []
        posters = [threading.Thread(target=_post, args=(loop, done), name=f"poster-{i}")
                   for i in range(7)]
        for poster in posters:
            poster.start()
            poster.join()
            time.sleep(0.01)  # the loop is blocked: each waits 10 ms more than the next
        await asyncio.sleep(0.01)
        assert len(done) == 7
        future = asyncio.run_coroutine_threadsafe(stall(), worker_loop)
        seen: list[dict[str, Any]] = []
        while not future.done():
            seen.append(monitor.snapshot())
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.05)
        return seen, monitor.snapshot()

    with looptools.monitor(report=None) as monitor:
        worker.start()
        seen, after = asyncio.run(main(monitor))
        worker_loop.call_soon_threadsafe(worker_loop.stop)
        worker.join(10)
    worker_loop.close()
    live = [s for s in seen if (s.get("worker_loops") or {}).get("stalled_now")]
    assert live, seen[-1].get("worker_loops")
    (now,) = live[-1]["worker_loops"]["stalled_now"]
    assert now["thread"] == "device-poller" and now["loop_kind"] == "asyncio"
    assert now["culprit"]["function"] == "read_device"
    assert 50 <= now["duration_ms"] <= 450
    workers = after["worker_loops"]
    assert workers["stalled_now"] == [] and workers["stall_summary"]["count"] == 1
    (row,) = workers["threads"]
    assert row["thread"] == "device-poller" and row["stalls"]["count"] == 1
    assert row["worst"]["culprit"]["function"] == "read_device"
    assert row["worst"]["duration_ms"] == pytest.approx(400, rel=0.25)
    # The five longest waits of seven sites, percentiles computed for those only.
    assert after["handoff_sites"] == 7 and len(after["handoffs"]) == 5
    assert [r["thread"] for r in after["handoffs"]] == [f"poster-{i}" for i in range(5)]
    assert all(r["site"]["function"] == "_post" and r["count"] == 1 for r in after["handoffs"])
    for snapshot in [*live, after]:
        line = encode({"v": 1, "type": "snapshot", "t": 1.0, "dropped": 0, "data": snapshot})
        decoder = LineDecoder()
        assert len(list(decoder.feed(line))) == 1 and decoder.bad == 0


def test_affinity_snapshot_is_the_first_sites_and_their_count() -> None:
    from looptools.inapp.detectors.affinity import AffinityViolations
    from looptools.settings import Settings

    detector = AffinityViolations(Settings())
    assert detector.snapshot() == {}
    for line in range(7):
        for _ in range(line + 1):
            detector._record("qt_warning", "QObject::startTimer", ("tick", "/app/t.py", line),
                             None, None, "QObject::startTimer: Timers cannot be started from "
                             "another thread")
    snapshot = detector.snapshot()
    assert snapshot["affinity_sites"] == 7
    assert [r["site"]["line"] for r in snapshot["affinity"]] == [0, 1, 2, 3, 4]
    assert [r["count"] for r in snapshot["affinity"]] == [1, 2, 3, 4, 5]
    assert snapshot["affinity"][0]["calling_thread"]["name"] == threading.current_thread().name
    line = encode({"v": 1, "type": "snapshot", "t": 1.0, "dropped": 0, "data": snapshot})
    assert len(list(LineDecoder().feed(line))) == 1
