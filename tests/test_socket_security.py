"""Socket security (issue 13, docs/security.md): who can reach a monitored app's socket,
what it exposes, and that nothing sent to it can harm the app.

Everything runs real processes on real sockets, nothing is mocked: the monitored apps
are subprocesses started with ``LOOPTOOLS=1``; the attackers are raw sockets, real
``looptools dashboard`` processes and, as root, a temporary second user.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import os
import pickle
import pwd
import secrets
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import env as clean_env

from looptools.live.stream import MAX_READERS, LineDecoder, StreamServer, encode

pytestmark = [
    pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="Unix sockets only"),
    pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc"),
]

#: Ticks of 10 ms the app measures its own loop lag over: longer than every attack.
TICKS = 300
#: How long each attack goes on (it starts as soon as the app listens).
ATTACK_S = 2.0
EXIT_CODE = 7

# A real asyncio app: a heartbeat counter, its own loop lag measured over TICKS ticks
# (TIMING on stderr), then it waits for its stdin to close so that a test can inspect
# it, and exits with EXIT_CODE.  SIGPIPE is set back to its default: a write to a
# socket whose reader hung up would kill it (the writer must send with MSG_NOSIGNAL).
_APP = textwrap.dedent("""
    import asyncio, os, signal, sys, time

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)


    async def stdin_closed():
        loop = asyncio.get_running_loop()
        closed = loop.create_future()

        def readable():
            if not os.read(0, 4096) and not closed.done():
                closed.set_result(None)

        loop.add_reader(0, readable)
        try:
            await closed
        finally:
            loop.remove_reader(0)


    async def main(ticks, period):
        late = []
        total = 0
        started = time.perf_counter()
        cpu = time.process_time()
        for tick in range(ticks):
            before = time.perf_counter()
            await asyncio.sleep(period)
            late.append(time.perf_counter() - before - period)
            total += tick
            if tick % 50 == 0:
                print(f"heartbeat {tick}", flush=True)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
        late.sort()
        print(f"done {total}", flush=True)
        print(f"TIMING {late[-1] * 1000:.3f} {late[int(len(late) * 0.99)] * 1000:.3f} "
              f"{sum(late) / len(late) * 1000:.3f} {elapsed:.3f} {cpu:.3f}",
              file=sys.stderr, flush=True)
        await stdin_closed()
        return 7


    print("ready", flush=True)
    sys.exit(asyncio.run(main(int(sys.argv[1]), 0.01)))
""")

_counter = itertools.count()


def _short_dir() -> Path:
    """A folder for XDG_RUNTIME_DIR: short (AF_UNIX paths are ~100 bytes at most) and
    mode 0755, so that only the looptools folder inside it stands in anyone's way."""
    folder = Path(f"/tmp/lt-sec-{os.getpid()}-{next(_counter)}")
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    os.chmod(folder, 0o755)
    return folder


@pytest.fixture
def runtime() -> Iterator[Path]:
    folder = _short_dir()
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@dataclasses.dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str
    timing: dict[str, float]
    other_stderr: list[str]


def _read_line(fd: int, timeout: float) -> str:
    """One line from a raw pipe, a byte at a time, so that nothing after it is consumed."""
    out = b""
    deadline = time.monotonic() + timeout
    while not out.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        byte = os.read(fd, 1)
        if not byte:
            break
        out += byte
    return out.decode("utf-8", "replace")


class App:
    """A monitored app in a subprocess (``LOOPTOOLS=1``, listening in ``runtime``)."""

    def __init__(self, runtime: Path, workdir: Path, *, ticks: int = TICKS,
                 script: str = _APP, args: list[str] | None = None, umask: int = -1,
                 **settings: str) -> None:
        self.runtime = runtime
        path = workdir / f"app_{next(_counter)}.py"
        path.write_text(script)
        environ = clean_env(LOOPTOOLS="1", LOOPTOOLS_REPORT="none", LOOPTOOLS_SUMMARY="0",
                            XDG_RUNTIME_DIR=str(runtime))
        environ.update({f"LOOPTOOLS_{key.upper()}": value for key, value in settings.items()})
        self.proc = subprocess.Popen(
            [sys.executable, str(path), *(args if args is not None else [str(ticks)])],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            bufsize=0, env=environ, cwd=workdir, umask=umask)
        assert self.proc.stdout is not None
        first = _read_line(self.proc.stdout.fileno(), 30)
        if first != "ready\n":
            self._fail(f"the app did not start: it printed {first!r}")
        self.pid = self.proc.pid
        self.folder = runtime / "looptools"
        self.socket = self.folder / f"{self.pid}.sock"

    def wait_listening(self, timeout: float = 10.0) -> Path:
        deadline = time.monotonic() + timeout
        while not self.socket.exists():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self._fail(f"no socket at {self.socket}")
            time.sleep(0.01)
        return self.socket

    def finish(self, timeout: float = 60.0) -> Finished:
        """Close the app's stdin (it exits) and collect what it printed."""
        out, err = self.proc.communicate(input=b"", timeout=timeout)
        stdout, stderr = out.decode(), err.decode()
        timing: dict[str, float] = {}
        other = []
        for line in stderr.splitlines():
            if line.startswith("TIMING "):
                values = [float(v) for v in line.split()[1:]]
                timing = dict(zip(("max_ms", "p99_ms", "mean_ms", "elapsed_s", "cpu_s"),
                                  values, strict=True))
            elif line.strip():
                other.append(line)
        return Finished(self.proc.returncode, stdout, stderr, timing, other)

    def kill(self) -> bytes:
        """Kill the app if it still runs; what is left of its stderr."""
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
            return self.proc.communicate(timeout=10)[1] or b""
        return b""

    def _fail(self, message: str) -> None:
        stderr = self.kill().decode(errors="replace")
        raise AssertionError(f"{message}; its stderr:\n{stderr}")

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Finished:
    """The app run with nobody at its socket: what every attacked run must match."""
    folder = _short_dir()
    try:
        with App(folder, tmp_path_factory.mktemp("baseline")) as app:
            app.wait_listening()
            time.sleep(ATTACK_S)  # as long as an attack, so that the run is alike
            return app.finish()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _assert_unaffected(run: Finished, baseline: Finished) -> None:
    """Same exit code and output as the quiet run, no looptools complaint, and its own
    timing not degraded beyond generous bounds (the machine may be busy)."""
    assert run.returncode == baseline.returncode == EXIT_CODE, run.stderr
    assert run.stdout == baseline.stdout
    assert run.other_stderr == [], run.stderr  # e.g. "looptools: live streaming stopped"
    got, quiet = run.timing, baseline.timing
    assert got and quiet, run.stderr
    detail = f"attacked {got}, quiet {quiet}"
    print(detail)
    # A writer thread spinning on the GIL, or the loop thread reading the socket, would
    # show here; a 2 s attack costs the app's process well under a second of CPU.
    assert got["cpu_s"] <= quiet["cpu_s"] + 1.0, detail
    assert got["elapsed_s"] <= quiet["elapsed_s"] * 1.5 + 1.0, detail
    assert got["p99_ms"] <= quiet["p99_ms"] + 50, detail
    assert got["max_ms"] <= quiet["max_ms"] + 250, detail


# -- readers, as the tests' attackers ---------------------------------------------------
def _connect(path: Path, timeout: float = 5.0) -> socket.socket:
    """Connect, waiting while the backlog is full (EAGAIN on a Unix socket with a timeout)
    until the app accepts (it does ~10 times a second)."""
    deadline = time.monotonic() + timeout
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
            return sock
        except BlockingIOError:
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)
        except OSError:
            sock.close()
            raise


def _messages(sock: socket.socket, until: Callable[[list[dict[str, Any]]], bool],
              timeout: float = 5.0) -> list[dict[str, Any]]:
    decoder = LineDecoder()
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    sock.settimeout(0.2)
    while not until(got) and time.monotonic() < deadline:
        try:
            data = sock.recv(1 << 16)
        except TimeoutError:
            continue
        except OSError:
            break
        if not data:
            break
        got.extend(decoder.feed(data))
    return got


def _has_hello(messages: list[dict[str, Any]]) -> bool:
    return any(m["type"] == "hello" for m in messages)


def _served(path: Path, timeout: float = 5.0) -> list[dict[str, Any]]:
    """A fresh reader's first messages: the app still serves dashboards.

    A reader turned away (hung up on at once: MAX_READERS are being served) tries
    again, as a person would: the app frees a slot within a loop turn or two (~0.1 s
    each) of a reader hanging up."""
    deadline = time.monotonic() + timeout
    while True:
        sock = _connect(path)
        try:
            got = _messages(sock, lambda m: _has_hello(m) and any(x["type"] == "snapshot"
                                                                  for x in m))
        finally:
            sock.close()
        if got or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert got and got[0]["type"] == "hello", got
    assert any(m["type"] == "snapshot" for m in got), got
    return got


def _send_for(socks: list[socket.socket], chunk: bytes, seconds: float) -> int:
    """Send ``chunk`` again and again on every socket for ``seconds``; bytes sent."""
    for sock in socks:
        sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        _, writable, _ = select.select([], socks, [], 0.05)
        for sock in writable:
            try:
                sent += sock.send(chunk)
            except BlockingIOError:
                pass
    return sent


Attack = Callable[["App"], Callable[[], None] | None]


def _garbage(app: App) -> None:
    """Random bytes on as many connections as the app serves, as fast as it takes them."""
    socks = [_connect(app.socket) for _ in range(MAX_READERS)]
    try:
        for sock in socks:  # each was accepted: the garbage reaches the app's own socket
            assert _has_hello(_messages(sock, _has_hello)), "not served"
        sent = _send_for(socks, os.urandom(1 << 20), ATTACK_S)
    finally:
        for sock in socks:
            sock.close()
    # More than the kernel's socket buffers hold (~200 KiB each): the app read (and
    # dropped) what it was sent.
    print(f"garbage: {sent / 2**20:.1f} MiB sent")
    assert sent > MAX_READERS * 256 * 1024, sent
    _served(app.socket)


def _oversized_line(app: App) -> None:
    """One line far longer than any reader accepts (8 MiB), sent as fast as it goes."""
    sock = _connect(app.socket)
    try:
        assert _has_hello(_messages(sock, _has_hello))
        sock.sendall(b'{"v": 1, "type": "hello", "argv": ["')
        sent = _send_for([sock], b"A" * (1 << 20), ATTACK_S)
        sock.setblocking(True)
        sock.settimeout(5)
        sock.sendall(b'"]}\n')
    finally:
        sock.close()
    print(f"oversized line: {sent / 2**20:.1f} MiB sent")
    assert sent > 256 * 1024, sent
    _served(app.socket)


def _slow_reader(app: App) -> Callable[[], None]:
    """Connects, reads nothing while the app runs; reads what is left after it exits."""
    sock = _connect(app.socket)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    time.sleep(ATTACK_S)
    _served(app.socket)  # the others are still served

    def after() -> None:
        try:
            got = _messages(sock, lambda m: False, timeout=10)  # to the app's hang-up
        finally:
            sock.close()
        assert got and got[0]["type"] == "hello", got[:1]

    return after


def _fifty_dashboards(app: App) -> None:
    """50 readers at once: at most MAX_READERS are served, the rest are turned away; then a
    real ``looptools dashboard PID --once`` still works."""
    socks: list[socket.socket] = []
    waiting = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(50)]
    for sock in waiting:
        sock.setblocking(False)
    deadline = time.monotonic() + 3 * ATTACK_S  # ~5 are let in per accept, ~10 times a second
    try:
        while waiting and time.monotonic() < deadline:  # a full backlog says EAGAIN
            for sock in list(waiting):
                try:
                    sock.connect(str(app.socket))
                except (BlockingIOError, InterruptedError):
                    continue
                waiting.remove(sock)
                socks.append(sock)
            time.sleep(0.005)
        assert not waiting, f"{len(waiting)} of 50 could not connect"
        results = [_messages(sock, _has_hello, timeout=0.3) for sock in socks]
        served = sum(_has_hello(r) for r in results)
        print(f"50 readers: {served} served, {50 - served} turned away")
        assert 1 <= served <= MAX_READERS, served
    finally:
        for sock in socks + waiting:
            sock.close()
    time.sleep(0.3)  # the app notices the hang-ups
    shown = subprocess.run(
        [sys.executable, "-m", "looptools", "dashboard", str(app.pid), "--once"],
        capture_output=True, text=True, timeout=30,
        env=clean_env(XDG_RUNTIME_DIR=str(app.runtime)))
    assert shown.returncode == 0, shown.stderr
    assert f"pid {app.pid}" in shown.stdout, shown.stdout


def _connect_storm(app: App) -> None:
    """~2,000 connects, each hung up at once, never read."""
    accepted = refused = 0
    for _ in range(2000):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.connect(str(app.socket))
            accepted += 1
        except (BlockingIOError, InterruptedError):  # the backlog is full
            refused += 1
        finally:
            sock.close()
        time.sleep(ATTACK_S / 2000 / 2)
    print(f"connect storm: {accepted} connected, {refused} refused (backlog full)")
    assert accepted >= 20, (accepted, refused)
    _served(app.socket)


ATTACKS: dict[str, Attack] = {
    "garbage": _garbage,
    "oversized_line": _oversized_line,
    "slow_reader": _slow_reader,
    "fifty_dashboards": _fifty_dashboards,
    "connect_storm": _connect_storm,
}


@pytest.mark.parametrize("attack", list(ATTACKS))
def test_app_is_unaffected_by_what_readers_do(attack: str, runtime: Path, tmp_path: Path,
                                              baseline: Finished) -> None:
    with App(runtime, tmp_path) as app:
        app.wait_listening()
        after = ATTACKS[attack](app)
        run = app.finish()
    if after is not None:
        after()
    _assert_unaffected(run, baseline)


# -- nothing a reader sends is unpickled, evaluated or obeyed ---------------------------------
class _Plant:
    """Unpickling this creates a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


def _payloads(marker: Path) -> list[bytes]:
    """Lines that would create ``marker`` if anything unpickled, evaluated or executed them,
    and lines that look like orders."""
    code = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    out = [pickle.dumps(_Plant(marker), protocol=protocol) + b"\n"
           for protocol in (0, 2, pickle.HIGHEST_PROTOCOL)]
    out += [
        code.encode() + b"\n",
        f"exec({code!r})\n".encode(),
        json.dumps({"v": 1, "type": "event", "t": 0, "kind": "exec", "data": {"code": code}})
        .encode() + b"\n",
        json.dumps({"__reduce__": code, "py/object": "os.system", "!!python/object": code})
        .encode() + b"\n",
        encode({"v": 1, "type": "bye", "t": 0, "dropped": 0,
                "exit": {"reason": "signal", "signal": "SIGTERM", "exception": None}}),
        b'{"command": "stop"}\nSTOP\nquit\n\x03\x04',
    ]
    return out


def test_nothing_sent_to_the_app_is_unpickled_evaluated_or_obeyed(
        runtime: Path, tmp_path: Path, baseline: Finished) -> None:
    marker = tmp_path / "marker"
    # The payloads work: loaded or evaluated here, they do make the marker.
    pickle.loads(_payloads(marker)[0]).close()
    assert marker.exists()
    marker.unlink()
    eval(compile(_payloads(marker)[3], "payload", "eval"))
    assert marker.exists()
    marker.unlink()

    with App(runtime, tmp_path) as app:
        app.wait_listening()
        for payload in _payloads(marker):
            sock = _connect(app.socket)
            try:
                assert _has_hello(_messages(sock, _has_hello))
                sock.sendall(payload)
                # and the connection goes on: the app only ever writes to it
                assert _messages(sock, lambda m: any(x["type"] == "snapshot" for x in m))
            finally:
                sock.close()
        time.sleep(0.3)
        # the forged "bye" and the "stop" lines stopped nothing: neither the app nor its
        # monitor, which still serves readers
        assert app.proc.poll() is None
        _served(app.socket)
        run = app.finish()
    assert not marker.exists()
    _assert_unaffected(run, baseline)


def test_readers_do_not_unpickle_or_evaluate_what_an_app_sends(runtime: Path,
                                                               tmp_path: Path) -> None:
    """The other direction: `looptools profile`'s reader (StreamServer) and `looptools
    dashboard` take JSON lines only, whatever a process at the socket sends them."""
    marker = tmp_path / "marker"
    hello = encode({"v": 1, "type": "hello", "t": 0.0, "pid": 4242, "argv": ["evil.py"],
                    "cwd": "/", "loop": None, "threshold_ms": 50.0})
    snapshot = encode({"v": 1, "type": "snapshot", "t": 0.5, "dropped": 0,
                       "data": {"t": 0.5, "running": True, "recent_stalls": []}})

    messages: list[dict[str, Any]] = []
    server = StreamServer(runtime / "p.sock", lambda m, n: messages.append(m)).start()
    try:
        sock = _connect(runtime / "p.sock")
        try:
            for payload in _payloads(marker):
                sock.sendall(payload)
            sock.sendall(b"\n" + hello)
        finally:
            sock.close()
        server.drain()
    finally:
        server.close()
    # The lines that are well-formed messages are passed on as data (the "exec" event's
    # code is a string in a dict), the rest counted as bad lines; nothing ran.
    assert [m["type"] for m in messages] == ["event", "bye", "hello"]
    assert server.bad_lines >= 5 and not marker.exists()

    fake_app = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    fake_app.bind(str(runtime / "fake.sock"))
    fake_app.listen(1)
    fake_app.settimeout(20)

    def serve() -> None:
        with contextlib.suppress(OSError):
            conn, _ = fake_app.accept()
            with conn:
                conn.sendall(b"".join(_payloads(marker)) + b"\n" + hello + snapshot)
                conn.settimeout(20)
                while conn.recv(4096):  # until the dashboard hangs up
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        shown = subprocess.run(
            [sys.executable, "-m", "looptools", "dashboard", str(runtime / "fake.sock"),
             "--once"], capture_output=True, text=True, timeout=30, env=clean_env())
    finally:
        fake_app.close()
        thread.join(5)
    assert shown.returncode == 0, shown.stderr
    assert "pid 4242" in shown.stdout and "evil.py" in shown.stdout, shown.stdout
    assert not marker.exists()


# -- only the user can reach the socket -------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_socket_is_0600_in_a_0700_folder_of_the_user_whatever_the_umask(
        runtime: Path, tmp_path: Path) -> None:
    # umask 0: a plain bind() would make the socket 0777, a plain mkdir() the folder 0777
    with App(runtime, tmp_path, ticks=20, umask=0) as app:
        sock = app.wait_listening()
        info = app.folder / f"{app.pid}.json"
        deadline = time.monotonic() + 5
        while not info.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        folder = os.lstat(app.folder)
        assert stat.S_ISDIR(folder.st_mode) and not stat.S_ISLNK(folder.st_mode)
        assert folder.st_uid == os.geteuid()
        assert _mode(app.folder) == 0o700
        assert stat.S_ISSOCK(os.lstat(sock).st_mode)
        assert os.lstat(sock).st_uid == os.geteuid() and _mode(sock) == 0o600
        assert _mode(info) == 0o600
        assert sorted(os.listdir(app.folder)) == sorted([sock.name, info.name])
        run = app.finish()
    assert run.returncode == EXIT_CODE and run.other_stderr == [], run.stderr
    assert not app.folder.exists()  # the last one out removes the folder


def test_an_existing_folder_with_wider_permissions_is_tightened(runtime: Path,
                                                                tmp_path: Path) -> None:
    folder = runtime / "looptools"
    folder.mkdir()
    os.chmod(folder, 0o777)
    with App(runtime, tmp_path, ticks=20) as app:
        app.wait_listening()
        assert _mode(folder) == 0o700 and _mode(app.socket) == 0o600
        run = app.finish()
    assert run.returncode == EXIT_CODE and run.other_stderr == [], run.stderr


@pytest.mark.parametrize("squat", ["another_users_folder", "symlink"])
def test_a_folder_of_another_user_or_a_symlink_is_refused(squat: str, runtime: Path,
                                                          tmp_path: Path) -> None:
    """Someone who made the folder first (possible in /tmp, where it falls back to
    ``looptools-<uid>``) gets no socket in it: the app runs on without listening."""
    folder = runtime / "looptools"
    elsewhere = runtime / "elsewhere"
    elsewhere.mkdir()
    os.chmod(elsewhere, 0o777)
    if squat == "symlink":
        folder.symlink_to(elsewhere)
        expected = "is not a directory (a symlink?)"
    else:
        if os.geteuid() != 0:
            pytest.skip("chown to another user needs root")
        folder.mkdir()
        os.chmod(folder, 0o777)
        os.chown(folder, 65534, 65534)
        expected = "belongs to uid 65534"
    with App(runtime, tmp_path, ticks=20) as app:
        time.sleep(0.3)
        run = app.finish()
    assert run.returncode == EXIT_CODE and "done 190" in run.stdout
    assert len(run.other_stderr) == 1, run.stderr
    assert run.other_stderr[0].startswith("looptools: cannot listen for dashboards")
    assert expected in run.other_stderr[0], run.other_stderr
    assert os.listdir(elsewhere) == []
    if squat == "another_users_folder":
        assert os.listdir(folder) == [] and os.lstat(folder).st_uid == 65534
    else:
        assert folder.is_symlink()


def test_listening_can_be_switched_off(runtime: Path, tmp_path: Path) -> None:
    """LOOPTOOLS_LISTEN=0: no folder, no socket; the app holds no socket but asyncio's own."""
    with App(runtime, tmp_path, ticks=5, listen="0") as app:
        time.sleep(0.3)
        assert not app.folder.exists()
        sockets = _socket_inodes(app.pid)
        unix = _unix_sockets()
        # asyncio's self-pipe is a socketpair: two unnamed Unix sockets, nothing else
        assert len(sockets) == 2 and all(unix.get(inode) == "" for inode in sockets), \
            (sockets, {i: unix.get(i) for i in sockets})
        run = app.finish()
    assert run.returncode == EXIT_CODE and run.other_stderr == [], run.stderr


# -- another user is refused -------------------------------------------------------------------
@dataclasses.dataclass
class User:
    name: str
    uid: int
    gid: int


def _run_quiet(command: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def other_user() -> Iterator[User]:
    """A temporary system user, removed at the end (the only change to the system)."""
    if os.geteuid() != 0:
        pytest.skip("creating a second user needs root")
    useradd, userdel = shutil.which("useradd"), shutil.which("userdel")
    if useradd is None or userdel is None:
        pytest.skip("useradd/userdel are not installed")
    name = f"lt-test-{secrets.token_hex(4)}"
    made = None
    for _ in range(5):  # /etc/passwd may be locked by someone else for a moment
        made = _run_quiet([useradd, "--system", "--no-create-home", "--user-group",
                           "--shell", "/usr/sbin/nologin", name])
        if made.returncode == 0:
            break
        time.sleep(0.5)
    assert made is not None
    if made.returncode != 0:
        pytest.skip(f"useradd failed: {made.stderr.strip()}")
    try:
        entry = pwd.getpwnam(name)
        yield User(name, entry.pw_uid, entry.pw_gid)
    finally:
        for _ in range(5):
            if _run_quiet([userdel, name]).returncode == 0:
                break
            time.sleep(0.5)
        groupdel = shutil.which("groupdel")
        if groupdel is not None and _run_quiet(["getent", "group", name]).returncode == 0:
            _run_quiet([groupdel, name])


# Runs as the other user with the system's Python (-I -S: nothing of ours is imported).
_PROBE = textwrap.dedent("""
    import errno, json, os, socket, sys

    def attempt(action):
        try:
            action()
            return "ok"
        except OSError as exc:
            return errno.errorcode.get(exc.errno, str(exc.errno))

    def connect(path):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        try:
            sock.connect(path)
        finally:
            sock.close()

    folder, sock_path, info_path, control = sys.argv[1:5]
    print(json.dumps({
        "uid": os.getuid(), "groups": os.getgroups(),
        "list": attempt(lambda: os.listdir(folder)),
        "connect": attempt(lambda: connect(sock_path)),
        "read_info": attempt(lambda: open(info_path).close()),
        "control": attempt(lambda: connect(control)),
    }))
""")


def _system_python() -> str:
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(candidate) and os.stat(candidate).st_mode & 0o001:
            return candidate
    pytest.skip("no Python that another user may run")


def _probe_as(user: User, *paths: Path) -> dict[str, Any]:
    done = subprocess.run(
        [_system_python(), "-I", "-S", "-c", _PROBE, *map(str, paths)],
        capture_output=True, text=True, timeout=30, cwd="/", env={"PATH": "/usr/bin:/bin"},
        user=user.uid, group=user.gid, extra_groups=[])
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert isinstance(result, dict)
    return result


def test_another_user_can_neither_list_the_folder_nor_connect(
        other_user: User, runtime: Path, tmp_path: Path) -> None:
    # The control: a socket anyone may use, which the other user does reach.
    control_dir = runtime / "open"
    control_dir.mkdir()
    os.chmod(control_dir, 0o755)
    control = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    control.bind(str(control_dir / "c.sock"))
    os.chmod(control_dir / "c.sock", 0o666)
    control.listen(1)
    try:
        with App(runtime, tmp_path, ticks=20) as app:
            app.wait_listening()
            info = app.folder / f"{app.pid}.json"
            probe = _probe_as(other_user, app.folder, app.socket, info, control_dir / "c.sock")
            assert probe["uid"] == other_user.uid and 0 not in probe["groups"]
            assert probe["control"] == "ok", probe  # the probe can connect where allowed
            assert probe["list"] == "EACCES", probe
            assert probe["connect"] == "EACCES", probe
            assert probe["read_info"] == "EACCES", probe

            # Each layer holds by itself: with the folder opened for entering (0711),
            # the socket's and the file's own 0600 still refuse.
            os.chmod(app.folder, 0o711)
            try:
                probe = _probe_as(other_user, app.folder, app.socket, info,
                                  control_dir / "c.sock")
            finally:
                os.chmod(app.folder, 0o700)
            assert probe["list"] == "EACCES", probe
            assert probe["connect"] == "EACCES", probe
            assert probe["read_info"] == "EACCES", probe
            _served(app.socket)  # while the owner is served
            run = app.finish()
    finally:
        control.close()
    assert run.returncode == EXIT_CODE and run.other_stderr == [], run.stderr


# -- no TCP ----------------------------------------------------------------------------
def _socket_inodes(pid: int) -> set[int]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                out.add(int(target[8:-1]))
    return out


def _inet_inodes(pid: int, listening_only: bool) -> set[int]:
    out = set()
    for table in ("tcp", "tcp6", "udp", "udp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
                fields = line.split()
                if not listening_only or (table.startswith("tcp") and fields[3] == "0A"):
                    out.add(int(fields[9]))
    return out


def _unix_sockets() -> dict[int, str]:
    """inode -> path ('' when unnamed) of every Unix socket in this network namespace."""
    out = {}
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        out[int(fields[6])] = fields[7] if len(fields) > 7 else ""
    return out


def test_the_app_has_no_tcp_listener_only_unix_sockets(runtime: Path, tmp_path: Path) -> None:
    with App(runtime, tmp_path, ticks=20) as app:
        sock_path = app.wait_listening()
        reader = _connect(sock_path)  # a dashboard reading: the writer thread runs too
        try:
            assert _has_hello(_messages(reader, _has_hello))
            owned = _socket_inodes(app.pid)
            unix = _unix_sockets()
            assert str(sock_path) in {unix.get(inode) for inode in owned}  # the scan sees it
            assert not owned & _inet_inodes(app.pid, listening_only=True)
            assert not owned & _inet_inodes(app.pid, listening_only=False)
            assert owned <= set(unix), "a socket of the app is not a Unix socket"
            if shutil.which("ss"):
                listening = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True,
                                           timeout=30).stdout
                assert f"pid={app.pid}," not in listening
        finally:
            reader.close()
        run = app.finish()
    assert run.returncode == EXIT_CODE


# -- reports and stream hold no local variable values ---------------------------------------
_SECRET_APP = textwrap.dedent("""
    import asyncio, sys, time


    def render_preview(api_token):
        header = "Bearer " + api_token
        session = {"authorization": header, "token": api_token}
        time.sleep(0.4)  # the stall: its frame holds the secret in three locals
        return len(session)


    async def main(api_token):
        for tick in range(20):
            await asyncio.sleep(0.02)
            if tick == 15:
                render_preview(api_token)
        await asyncio.sleep(0.3)  # the snapshots after the stall


    print("ready", flush=True)
    asyncio.run(main(sys.stdin.readline().strip()))  # the secret is in no file, arg or env
""")


def test_reports_and_stream_hold_no_local_variable_values(runtime: Path,
                                                          tmp_path: Path) -> None:
    secret = f"s3cr3t-{secrets.token_hex(16)}"
    report = tmp_path / "r.json"
    with App(runtime, tmp_path, script=_SECRET_APP, args=[], umask=0o027,
             report=str(report), summary="1") as app:
        sock_path = app.wait_listening()
        reader = _connect(sock_path)
        received = bytearray()
        reader.settimeout(0.2)
        assert app.proc.stdin is not None
        app.proc.stdin.write(secret.encode() + b"\n")
        app.proc.stdin.flush()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # everything, to the app's goodbye
            try:
                data = reader.recv(1 << 16)
            except TimeoutError:
                continue
            if not data:
                break
            received += data
        reader.close()
        run = app.finish()
    assert run.returncode == 0, run.stderr
    stream = bytes(received)
    messages = list(LineDecoder().feed(stream))
    assert messages[0]["type"] == "hello" and messages[-1]["type"] == "bye"
    ended = [m for m in messages if m.get("kind") == "stall_ended"]
    assert ended and ended[0]["data"]["culprit"]["function"] == "render_preview"
    assert ended[0]["data"]["stack"], "the stall's stack is streamed"

    data = json.loads(report.read_text())
    assert data["stalls"][0]["culprit"]["function"] == "render_preview"
    # What they do hold (docs/security.md): the command line and working directory.
    assert data["meta"]["argv"] == messages[0]["argv"] and data["meta"]["argv"][0].endswith(".py")
    assert data["meta"]["cwd"] == messages[0]["cwd"] == str(tmp_path)
    assert _mode(report) == 0o640  # written with the app's umask (027)
    html = tmp_path / "r.html"
    rendered = subprocess.run([sys.executable, "-m", "looptools", "report", str(report),
                               "-f", "html", "-o", str(html)], capture_output=True, text=True,
                              timeout=60, env=clean_env(), cwd=tmp_path)
    assert rendered.returncode == 0, rendered.stderr
    assert "render_preview" in html.read_text()

    for what, content in (("stream", stream), ("report", report.read_bytes()),
                          ("html", html.read_bytes()), ("stderr", run.stderr.encode())):
        for needle in (secret, secret.split("-")[1]):
            assert needle.encode() not in content, f"the secret is in the {what}"


# -- `looptools profile` streams through a private folder of its own ---------------------------
_PROFILED_APP = textwrap.dedent("""
    import asyncio, json, os, stat

    path = os.environ["LOOPTOOLS_STREAM"]
    folder = os.path.dirname(path)
    info = {
        "stream": path,
        "folder_mode": stat.S_IMODE(os.lstat(folder).st_mode),
        "folder_uid": os.lstat(folder).st_uid,
        "folder_is_dir": stat.S_ISDIR(os.lstat(folder).st_mode),
        "socket_mode": stat.S_IMODE(os.lstat(path).st_mode),
        "socket_is_socket": stat.S_ISSOCK(os.lstat(path).st_mode),
        "listen": os.environ.get("LOOPTOOLS_LISTEN"),
    }
    asyncio.run(asyncio.sleep(0.3))
    info["registry_exists"] = os.path.exists(
        os.path.join(os.environ["XDG_RUNTIME_DIR"], "looptools"))
    print("INFO " + json.dumps(info), flush=True)
""")


def test_profile_streams_through_its_own_private_folder(runtime: Path,
                                                        tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(_PROFILED_APP)
    done = subprocess.run(
        [sys.executable, "-m", "looptools", "profile", "--no-dashboard", "--report", "r.json",
         "app.py"], capture_output=True, text=True, timeout=60, cwd=tmp_path,
        env=clean_env(XDG_RUNTIME_DIR=str(runtime)))
    assert done.returncode == 0, done.stderr
    line = next(x for x in done.stdout.splitlines() if x.startswith("INFO "))
    info = json.loads(line[5:])
    assert info["folder_is_dir"] and info["folder_uid"] == os.geteuid()
    assert info["folder_mode"] == 0o700
    assert info["socket_is_socket"] and info["socket_mode"] == 0o600
    assert info["listen"] == "0" and not info["registry_exists"]  # no second socket
    assert not Path(info["stream"]).parent.exists()  # removed when profile ended
    assert (tmp_path / "r.json").exists()


def test_a_killed_reader_does_not_take_the_app_down_with_sigpipe(runtime: Path,
                                                                 tmp_path: Path) -> None:
    """The app's SIGPIPE is at its default (it would die): readers killed mid-stream."""
    with App(runtime, tmp_path, ticks=20) as app:
        app.wait_listening()
        for _ in range(3):
            reader = subprocess.Popen(
                [sys.executable, "-c", textwrap.dedent(f"""
                    import socket, time
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.connect({str(app.socket)!r})
                    s.recv(100)
                    print("reading", flush=True)
                    time.sleep(60)
                """)], stdout=subprocess.PIPE, text=True)
            assert reader.stdout is not None and reader.stdout.readline() == "reading\n"
            time.sleep(0.3)
            reader.send_signal(signal.SIGKILL)
            reader.wait(10)
        time.sleep(0.3)
        assert app.proc.poll() is None
        _served(app.socket)
        run = app.finish()
    assert run.returncode == EXIT_CODE and run.other_stderr == [], run.stderr
