"""Streaming a running app's state to `looptools profile` and `looptools dashboard`.

Two halves that share one wire format (documented in docs/dashboard.md):

* In the app, :class:`StreamWriter` is a :class:`~looptools.inapp.hub.Detector` whose
  only work on the loop and watchdog threads is an append to a bounded inbox (a
  full inbox counts a drop) that takes no lock: the exit hooks run from signal
  handlers, which may interrupt a hook half-way and call one again.  Its own
  daemon thread turns the inbox into JSON lines, builds a snapshot every 0.25 s
  with ``monitor.snapshot()`` and writes to non-blocking Unix sockets with a
  bounded per-reader buffer, so a slow, paused or killed reader costs the app
  nothing but dropped messages.  It either *connects* to the socket
  `looptools profile` listens on (``LOOPTOOLS_STREAM``), or *listens* on a
  per-user registry socket (``<runtime dir>/<pid>.sock``) that
  ``looptools dashboard PID`` connects to and ``looptools ps`` lists.
* On the reading side, :class:`LineDecoder` splits bytes into messages and counts
  lines that are not messages (not JSON, unusable numbers or nesting, a field of the
  wrong type: :func:`message_problem`); :class:`StreamServer` and :func:`connect` feed
  the decoded messages to a callback on a reader thread, which no message can end.

Only the standard library is imported: this module runs inside the user's app.
Unix domain sockets only; there is deliberately no TCP transport.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import json
import os
import select
import selectors
import socket
import stat
import sys
import tempfile
import threading
import time
from _thread import allocate_lock as _thread_lock
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from looptools import _jsonsafe
from looptools.inapp._ourthreads import block_process_signals
from looptools.inapp.hub import Detector

if TYPE_CHECKING:
    from looptools.inapp.monitor import Monitor
    from looptools.settings import Settings

__all__ = [
    "WIRE_VERSION",
    "LineDecoder",
    "StreamServer",
    "StreamWriter",
    "connect",
    "encode",
    "ensure_private_dir",
    "listed_processes",
    "listening_wanted",
    "message_problem",
    "registry_dir",
    "registry_socket",
]

#: The ``v`` of every message; a reader ignores (and counts) other versions.
WIRE_VERSION = 1
MESSAGE_TYPES = frozenset({"hello", "event", "snapshot", "bye"})
#: Seconds between snapshots while a reader is connected.
SNAPSHOT_EVERY = 0.25
#: Events waiting for the writer thread; more are dropped (and counted).
QUEUE_SIZE = 2048
#: Bytes waiting for one reader; more messages are dropped (and counted).
MAX_PENDING = 1 << 20
#: A reader drops a line longer than this (and counts it as bad).
MAX_LINE = 8 << 20
#: At most this many dashboards read one app at a time.
MAX_READERS = 4
#: Stack frames kept per stall in event messages (innermost kept).
MAX_STACK = 24
#: Listening with no reader, the heartbeat looks for a knocking dashboard this often.
KNOCK_EVERY = 0.1
#: Listening, the writer thread ends after this long without a reader.
IDLE_EXIT_S = 2.0
_SEND = getattr(socket, "MSG_NOSIGNAL", 0)
#: put in the inbox by close() so that the writer thread wakes up at once
_WAKE: tuple[float, str, dict[str, Any]] = (0.0, "", {})


class _Inbox:
    """A bounded inbox the hooks append to, and a pipe that wakes the writer thread.

    ``collections.deque.append`` is atomic and takes no lock, and so is a
    ``write`` to a pipe: a signal handler that interrupts ``put`` on the loop
    thread and calls it again (``looptools`` stops from its SIGTERM handler)
    cannot deadlock, as it did on ``queue.Queue``'s lock.
    """

    def __init__(self, size: int) -> None:
        self.items: collections.deque[tuple[float, str, dict[str, Any]]] = collections.deque()
        self.size = size
        self._read, self._write = os.pipe()
        os.set_blocking(self._read, False)
        os.set_blocking(self._write, False)

    def put(self, item: tuple[float, str, dict[str, Any]]) -> bool:
        if len(self.items) >= self.size:
            return False
        self.items.append(item)
        with contextlib.suppress(OSError):  # full (the writer is behind) or closed
            os.write(self._write, b"\0")
        return True

    def clear(self) -> None:
        self.items.clear()

    def take(self, wait: float, limit: int = 1000) -> list[tuple[float, str, dict[str, Any]]]:
        """Up to ``limit`` items, waiting up to ``wait`` seconds for the first."""
        if not self.items and wait > 0:
            with contextlib.suppress(OSError, ValueError):
                select.select([self._read], [], [], wait)
        with contextlib.suppress(OSError):
            while os.read(self._read, 4096):
                pass
        out: list[tuple[float, str, dict[str, Any]]] = []
        items = self.items
        while items and len(out) < limit:
            out.append(items.popleft())
        return out

    def close(self) -> None:
        for fd in (self._read, self._write):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._read = self._write = -1


def _warn(line: str) -> None:
    try:
        print(line, file=sys.stderr, flush=True)
    except Exception:  # stderr may be closed; never fail the app
        pass


def encode(message: dict[str, Any]) -> bytes:
    """One message as one JSON line (UTF-8, ``\\n``-terminated, no newlines inside)."""
    return (json.dumps(message, separators=(",", ":"), default=str) + "\n").encode("utf-8")


# -- the per-user registry ---------------------------------------------------------------
def registry_dir(environ: dict[str, str] | None = None) -> Path:
    """``$XDG_RUNTIME_DIR/looptools`` when that is usable, else ``<tmp>/looptools-<uid>``."""
    environ = dict(os.environ) if environ is None else environ
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isdir(runtime) and os.access(runtime, os.W_OK | os.X_OK):
        return Path(runtime) / "looptools"
    return Path(tempfile.gettempdir()) / f"looptools-{os.getuid()}"


def registry_socket(pid: int, folder: Path | None = None) -> Path:
    """Where the process ``pid`` listens for dashboards."""
    return (folder or registry_dir()) / f"{pid}.sock"


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` with mode 0700, or check that an existing one is ours and private.

    Raises :class:`PermissionError` (one line) for a symlink, another user's
    folder, or a folder others can read or enter: a socket there could be read
    or replaced by someone else.
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise PermissionError(f"{path} is not a directory (a symlink?); not using it")
    if info.st_uid != os.getuid():
        raise PermissionError(f"{path} belongs to uid {info.st_uid}, not to you; not using it")
    if info.st_mode & 0o077:
        os.chmod(path, 0o700)  # ours: tighten it rather than refuse
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


#: At most this many registry names are looked at when a process starts listening
#: (each dead process's two unlinks cost ~0.1 ms; an app starts in one stale 2 ms).
PRUNE_AT_START = 16


def prune_dead(folder: Path, limit: int = PRUNE_AT_START) -> int:
    """Delete registry entries (``<pid>.sock``, ``<pid>.json``) of processes that are gone.

    A process killed with SIGKILL, or ended by ``os._exit``, cannot remove its own
    entry; each process that starts listening clears up to ``limit`` of them (a
    ``kill(pid, 0)`` each), so litter never piles up.  A live pid is left alone,
    whoever it is now.  Returns how many processes' entries were removed."""
    removed = 0
    try:
        with os.scandir(folder) as entries:
            names = [e.name for _, e in zip(range(limit), entries, strict=False)]
    except OSError:
        return 0
    for name in names:
        stem, dot, suffix = name.partition(".")
        if not dot or suffix not in ("sock", "json") or not stem.isdigit():
            continue
        pid = int(stem)
        if pid == os.getpid() or _pid_alive(pid):
            continue
        gone = False
        for stale in (folder / f"{pid}.sock", folder / f"{pid}.json"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(stale)
                gone = True
        removed += gone
    return removed


def listed_processes(folder: Path | None = None, prune: bool = True) -> list[dict[str, Any]]:
    """The monitored processes listening in the registry, oldest first.

    Each entry is the process's ``<pid>.json`` (pid, argv, cwd, started_at, …)
    plus ``socket``.  With ``prune``, entries of processes that are gone (dead
    pid, or a socket nobody listens on) are deleted.
    """
    folder = folder or registry_dir()
    out: list[dict[str, Any]] = []
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return out
    for name in names:
        if not name.endswith(".sock") or not name[:-5].isdigit():
            continue
        pid = int(name[:-5])
        sock_path = folder / name
        info_path = folder / f"{pid}.json"
        alive = _pid_alive(pid) and _accepts(sock_path)
        if not alive:
            if prune:
                for stale in (sock_path, info_path):
                    with contextlib.suppress(OSError):
                        os.unlink(stale)
            continue
        entry: dict[str, Any] = {"pid": pid}
        try:
            loaded = json.loads(info_path.read_text("utf-8"))
            if isinstance(loaded, dict):
                entry.update(loaded)
        except (OSError, ValueError):
            pass
        entry["pid"] = pid
        entry["socket"] = str(sock_path)
        out.append(entry)
    out.sort(key=lambda e: str(e.get("started_at", "")))
    return out


def _accepts(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(str(path))
    except OSError as exc:
        # A full backlog is a live but busy listener.
        return exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
    finally:
        probe.close()
    return True


def listening_wanted(environ: dict[str, str] | None = None) -> bool:
    """False when ``LOOPTOOLS_LISTEN`` switches the registry socket off (0/false/no/off)."""
    environ = dict(os.environ) if environ is None else environ
    return environ.get("LOOPTOOLS_LISTEN", "1").strip().lower() not in ("0", "false", "no", "off")


# -- the writer (in the app) ---------------------------------------------------------------
class _Peer:
    """One connected reader: a non-blocking socket and a bounded output buffer."""

    __slots__ = ("limit", "out", "sock")

    def __init__(self, sock: socket.socket, limit: int = MAX_PENDING) -> None:
        sock.setblocking(False)
        self.sock = sock
        self.out = bytearray()
        self.limit = limit

    def offer(self, line: bytes) -> bool:
        """Queue whole lines only, so a reader never sees half a message."""
        if len(self.out) + len(line) > self.limit:
            return False
        self.out += line
        return True

    def flush(self) -> bool:
        """Send what the socket takes now; False when the reader has gone."""
        while self.out:
            try:
                sent = self.sock.send(self.out, _SEND)
            except (BlockingIOError, InterruptedError):
                return True
            except OSError:
                return False
            if sent <= 0:
                return True
            del self.out[:sent]
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def _trim_stall(stall: Any, keep_stack: int) -> Any:
    if not isinstance(stall, dict):
        return stall
    out = dict(stall)
    stack = out.get("stack")
    if isinstance(stack, list):
        out["stack"] = stack[-keep_stack:] if keep_stack else []
    return out


class StreamWriter(Detector):
    """Streams hello, events, snapshots and bye as JSON lines; see the module docstring.

    ``StreamWriter(settings, monitor)`` connects to ``settings.stream`` when it is
    set and otherwise listens on :func:`registry_socket` for this pid (unless
    ``LOOPTOOLS_LISTEN=0``).  ``connect_to``/``listen_on`` override both (tests).

    Listening, there is no thread while no dashboard reads: any second thread
    costs a single-threaded app's loop a few per cent (``looptools.inapp._fdtable``;
    measured by ``benchmarks/as_users.py --breakdown``).  The socket is listened
    on from the start, and the loop thread's heartbeat looks (every
    ``KNOCK_EVERY``, one ``select`` with no wait) whether a dashboard knocks;
    then it starts the thread, which ends again ``IDLE_EXIT_S`` after the last
    reader left.  So a dashboard that connects while the loop is frozen hears
    from the app when the loop runs again.  Without a heartbeat (no stall, lag
    or dispatcher detector) or connecting, the thread runs from the start.
    """

    name = "stream"

    def __init__(self, settings: Settings, monitor: Monitor, *,
                 connect_to: str | None = None, listen_on: str | os.PathLike[str] | None = None,
                 snapshot_every: float = SNAPSHOT_EVERY, queue_size: int = QUEUE_SIZE,
                 reconnect_every: float = 1.0, max_pending: int = MAX_PENDING) -> None:
        self.monitor = monitor
        self.snapshot_every = snapshot_every
        self.reconnect_every = reconnect_every
        self.max_pending = max_pending
        self.connect_attempts = 0
        self.inbox = _Inbox(queue_size)
        #: messages not delivered: inbox full, or a reader too far behind
        self.dropped = 0
        self.sent = 0
        self.connect_path: str | None = None
        self.listen_path: Path | None = None
        if connect_to is not None or listen_on is not None:
            self.connect_path = connect_to
            self.listen_path = Path(listen_on) if listen_on is not None else None
        elif settings.stream:
            self.connect_path = settings.stream
        elif listening_wanted():
            self.listen_path = registry_socket(os.getpid())
        self._origin = monitor.hub.started
        self._peers: list[_Peer] = []
        self._listener: socket.socket | None = None
        self._listen_inode: int | None = None
        self._next_connect = 0.0
        self._backoff = reconnect_every
        self._warned_connect = False
        self._stop = threading.Event()
        self._closed = False
        self._bye: dict[str, Any] | None = None
        self._thread: threading.Thread | None = None
        self._cleaned = _thread_lock()
        self._next_knock = 0.0
        wants_heartbeat = getattr(monitor, "_wants_heartbeat", None)
        #: listening, with a thread only while a dashboard reads (see the class docstring)
        self.lazy = self.listen_path is not None and self.connect_path is None \
            and callable(wants_heartbeat) and bool(wants_heartbeat())
        if self.listen_path is not None:
            try:
                self._listen()
            except OSError as exc:
                _warn(f"looptools: cannot listen for dashboards at {self.listen_path} "
                      f"({exc.strerror or exc}); the app is unaffected")
                self.listen_path = None
                self.lazy = False
        if (self.connect_path or self.listen_path) and not self.lazy:
            self._start_thread()

    def _start_thread(self) -> None:
        self._thread = threading.Thread(target=self._run, name="looptools-stream",
                                        daemon=True)
        self._thread.start()

    # -- hooks: loop and watchdog threads; an append only ---------------------------------
    def event(self, kind: str, payload: dict[str, Any]) -> None:
        if self._closed or self._thread is None:
            return  # no thread: no reader to send it to
        if not self.inbox.put((time.perf_counter(), kind, payload)):
            self.dropped += 1

    def heartbeat(self, now: float, lag: float) -> None:
        # On the loop thread: listening with no thread, is a dashboard knocking?
        if not self.lazy or now < self._next_knock or self._closed:
            return
        self._next_knock = now + KNOCK_EVERY
        listener = self._listener
        if self._thread is not None or listener is None:
            return
        try:
            knocking = bool(select.select([listener], [], [], 0)[0])
        except (OSError, ValueError):
            return
        if knocking and not self._closed:
            self.inbox.clear()
            self._start_thread()

    def contribute(self, report: dict[str, Any]) -> None:
        # The monitor builds its final report when it stops: say goodbye then.
        if getattr(self.monitor, "_stopped", False):
            self.close(exit_info=report.get("meta", {}).get("exit"))

    # -- lifecycle ------------------------------------------------------------------------
    def close(self, exit_info: dict[str, Any] | None = None, timeout: float = 1.0) -> None:
        """Send a last snapshot and ``bye``, then stop the thread (waits up to ``timeout``)."""
        if self._closed:
            return
        self._closed = True
        self._bye = {"exit": exit_info}
        self._stop.set()
        self.inbox.put(_WAKE)  # the writer may be waiting for the inbox
        thread = self._thread
        if thread is None:
            self._cleanup()  # no thread (listening and never read, or it has ended)
        elif thread is not threading.current_thread():
            thread.join(timeout)
            if self._thread is None:  # it ended by itself (idle) just before
                self._cleanup()

    def forget(self) -> None:
        # A forked child: the writer thread is gone; close this copy of the
        # sockets and the inbox's pipe, and leave the socket file (the parent's)
        # alone.
        self._closed = True
        self._thread = None
        for sock in [self._listener, *(peer.sock for peer in self._peers)]:
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
        self._listener = None
        self._peers = []
        self.inbox.close()

    @property
    def readers(self) -> int:
        return len(self._peers)

    # -- the writer thread ----------------------------------------------------------------
    def _t(self, when: float | None = None) -> float:
        return round((when if when is not None else time.perf_counter()) - self._origin, 6)

    def _hello(self) -> bytes:
        # getattr: the thread starts inside Monitor.__init__, which may not be done yet.
        monitor = self.monitor
        settings = getattr(monitor, "settings", None)
        started_at = getattr(monitor, "started_at", None)
        from looptools._version import __version__

        return encode({
            "v": WIRE_VERSION, "type": "hello", "t": self._t(),
            "pid": os.getpid(), "argv": [str(a) for a in sys.argv],
            "cwd": _cwd(), "executable": sys.executable,
            "python": sys.version.split()[0], "looptools": __version__,
            "started_at": started_at.isoformat() if started_at is not None else _utc_now(),
            "loop": getattr(monitor, "loop_info", None),
            "threshold_ms": getattr(settings, "threshold_ms", None),
            "mode": "listen" if self.listen_path else "connect",
        })

    def _run(self) -> None:
        block_process_signals()
        idle = False
        try:
            idle = self._loop()
        except Exception as exc:  # our failure must never become the app's
            self.lazy = False  # and it is not started again
            _warn(f"looptools: live streaming stopped ({type(exc).__name__}: {exc}); "
                  "the app and its report are unaffected")
        finally:
            if idle and not self._stop.is_set():
                self._thread = None  # the heartbeat starts another for the next reader
            if not idle or self._stop.is_set():
                self._cleanup()

    def _loop(self) -> bool:
        """Serve readers until stopped (False) or, lazy, idle for IDLE_EXIT_S (True)."""
        next_snapshot = time.perf_counter()
        last_reader = next_snapshot
        while True:
            stopping = self._stop.is_set()
            now = time.perf_counter()
            if not stopping:
                self._accept_or_connect(now)
            if self._peers:
                last_reader = now
            elif self.lazy and not stopping and now - last_reader >= IDLE_EXIT_S:
                return True
            if self._peers:
                wait = max(0.0, next_snapshot - now)
                if any(peer.out for peer in self._peers):
                    wait = min(wait, 0.02)  # a reader is behind: keep pushing
                if self._listener is not None:
                    wait = min(wait, 0.1)  # another dashboard may be knocking
            else:
                wait = 0.1  # waiting to accept or to retry connecting
            for line in self._drain(0.0 if stopping else wait):
                self._broadcast(line)
            now = time.perf_counter()
            if self._peers and (now >= next_snapshot or stopping):
                snapshot = self._snapshot()
                if snapshot is not None:
                    self._broadcast(snapshot)
                next_snapshot = now + self.snapshot_every
            if stopping:
                self._broadcast(encode({"v": WIRE_VERSION, "type": "bye", "t": self._t(),
                                        "dropped": self.dropped, **(self._bye or {})}))
                self._flush_all(deadline=time.perf_counter() + 0.5)
                return False
            self._flush_all()

    def _drain(self, wait: float) -> list[bytes]:
        items = self.inbox.take(wait)
        if not self._peers:
            return []  # nobody listening: events are discarded, not counted as drops
        out = []
        for when, kind, payload in items:
            if not kind:
                continue  # _WAKE
            if kind.startswith("stall_"):
                payload = _trim_stall(payload, MAX_STACK)
            try:
                out.append(encode({"v": WIRE_VERSION, "type": "event", "t": self._t(when),
                                   "kind": kind, "data": payload}))
            except (TypeError, ValueError):  # a payload JSON cannot hold: skip it
                self.dropped += 1
        return out

    def _snapshot(self) -> bytes | None:
        try:
            data = self.monitor.snapshot()  # built here, on the writer thread
        except Exception:  # the monitor is still being set up, or racing its own exit
            return None
        # Stacks stay out of snapshots: the culprit frame is what a dashboard shows.
        if data.get("stall_now") is not None:
            data["stall_now"] = _trim_stall(data["stall_now"], 0)
        if isinstance(data.get("recent_stalls"), list):
            data["recent_stalls"] = [_trim_stall(s, 0) for s in data["recent_stalls"]]
        return encode({"v": WIRE_VERSION, "type": "snapshot", "t": self._t(),
                       "dropped": self.dropped, "data": data})

    def _broadcast(self, line: bytes) -> None:
        for peer in self._peers:
            if peer.offer(line):
                self.sent += 1
            else:
                self.dropped += 1

    def _flush_all(self, deadline: float | None = None) -> None:
        while True:
            alive = []
            for peer in self._peers:
                if peer.flush() and not _hung_up(peer.sock):
                    alive.append(peer)
                else:
                    peer.close()
            self._peers = alive
            if deadline is None or not any(p.out for p in alive) or \
                    time.perf_counter() >= deadline:
                return
            time.sleep(0.005)

    def _accept_or_connect(self, now: float) -> None:
        if self._listener is not None:
            while True:
                try:
                    sock, _ = self._listener.accept()
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as exc:
                    # A reader gone before we took it: the next one.  Out of descriptors
                    # (EMFILE, ENFILE) or memory: try again next round, never give up
                    # streaming for good (that would end the thread and its socket).
                    if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                        continue
                    break
                if len(self._peers) >= MAX_READERS:
                    sock.close()
                    continue
                peer = _Peer(sock, self.max_pending)
                peer.offer(self._hello())
                self._peers.append(peer)
        elif self.connect_path and not self._peers and now >= self._next_connect:
            self._connect(now)

    def _connect(self, now: float) -> None:
        assert self.connect_path is not None
        self.connect_attempts += 1
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(1.0)
        try:
            sock.connect(self.connect_path)
        except OSError as exc:
            sock.close()
            # Rate-limited: one attempt per backoff period, the period doubling to 8 s.
            self._next_connect = now + self._backoff
            self._backoff = min(self._backoff * 2, 8.0)
            if not self._warned_connect:
                self._warned_connect = True
                _warn(f"looptools: cannot connect to the live stream at {self.connect_path} "
                      f"({exc.strerror or exc}); will retry, the app is unaffected")
            return
        self._backoff = self.reconnect_every
        self._next_connect = now + self.reconnect_every
        peer = _Peer(sock, self.max_pending)
        peer.offer(self._hello())
        self._peers.append(peer)

    def _listen(self) -> None:
        assert self.listen_path is not None
        path = self.listen_path
        ensure_private_dir(path.parent)
        prune_dead(path.parent)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a stale socket of an earlier process with our pid
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                listener.bind(str(path))
            except FileNotFoundError:
                # Another process's exit removed the folder, empty, just now: make it again.
                ensure_private_dir(path.parent)
                listener.bind(str(path))
            # The folder is 0700, so nobody could reach the socket before this chmod.
            os.chmod(path, 0o600)
            listener.listen(MAX_READERS)
            listener.setblocking(False)
        except OSError:
            listener.close()
            raise
        self._listener = listener
        self._listen_inode = os.stat(path).st_ino
        started_at = getattr(self.monitor, "started_at", None)
        info = {"pid": os.getpid(), "argv": [str(a) for a in sys.argv], "cwd": _cwd(),
                "executable": sys.executable,
                "started_at": started_at.isoformat() if started_at is not None else _utc_now()}
        _write_private(path.with_suffix(".json"), json.dumps(info))

    def _cleanup(self) -> None:
        if not self._cleaned.acquire(False):
            return  # done already (the thread and close() may both get here)
        for peer in self._peers:
            peer.close()
        self._peers = []
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        path = self.listen_path
        if path is not None and self._listen_inode is not None:
            with contextlib.suppress(OSError):
                # Only our own socket: another process may have taken the pid's name since.
                if os.stat(path).st_ino == self._listen_inode:
                    os.unlink(path)
                    os.unlink(path.with_suffix(".json"))
            with contextlib.suppress(OSError):
                os.rmdir(path.parent)  # the per-user folder, when we were its last entry
        self.inbox.close()


def _hung_up(sock: socket.socket) -> bool:
    """True when the reader closed its end (we never read what readers send)."""
    try:
        data = sock.recv(4096, socket.MSG_DONTWAIT | socket.MSG_PEEK)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
    if data == b"":
        return True
    with contextlib.suppress(OSError):
        sock.recv(65536, socket.MSG_DONTWAIT)  # discard whatever a reader sent us
    return False


def _utc_now() -> str:
    import datetime

    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def _cwd() -> str:
    try:
        return os.getcwd()
    except OSError:
        return ""


def _write_private(path: Path, text: str) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


# -- the reading side (looptools profile / dashboard) --------------------------------------
class LineDecoder:
    """Bytes in, messages out; anything that is not a v1 message is counted in ``bad``."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._skipping = False
        self.bad = 0
        self.messages = 0

    def feed(self, data: bytes) -> Iterator[dict[str, Any]]:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_LINE:
                    self._buffer.clear()
                    if not self._skipping:
                        self.bad += 1
                    self._skipping = True
                return
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if self._skipping:  # the tail of an over-long line
                self._skipping = False
                continue
            message = self.decode(line)
            if message is None:
                if line.strip():
                    self.bad += 1
                continue
            self.messages += 1
            yield message

    @staticmethod
    def decode(line: bytes) -> dict[str, Any] | None:
        """One line as a v1 message, or ``None`` for anything else.

        Anything else: not JSON (or nested deeper than :data:`_jsonsafe.MAX_DEPTH`,
        holding ``NaN``, ``Infinity`` or a number beyond :data:`_jsonsafe.MAX_NUMBER`),
        not an object, another wire version or message type, or a v1 message with a
        field of the wrong type (:func:`message_problem`).  Lone surrogates in strings come
        back escaped, so that a message can always be printed.
        """
        try:
            message = _jsonsafe.loads(line)
        except ValueError:  # JSONDecodeError, UnsafeJSON, UnicodeDecodeError
            return None
        if message_problem(message) is not None:
            return None
        assert isinstance(message, dict)
        return message


# -- the shape of v1 messages, as readers use them (docs/dashboard.md, "Wire format") ---------
# A key may be missing (readers have defaults; detectors that are off send nothing); a key
# that is there must have the type readers and the rebuilt report expect.  Keys not listed
# here are not looked at.
_Check = Callable[[Any], bool]


def _number(value: Any) -> bool:
    # The comparison also refuses NaN and infinities (decoded lines hold none; a
    # message handed to DashboardState.apply in-process may).
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and -_jsonsafe.MAX_NUMBER <= value <= _jsonsafe.MAX_NUMBER


def _integer(value: Any) -> bool:
    return isinstance(value, int) and _number(value)


def _string(value: Any) -> bool:
    return isinstance(value, str)


def _boolean(value: Any) -> bool:
    return isinstance(value, bool)


def _fraction(value: Any) -> bool:
    return _number(value) and 0 <= value <= 1


def _pair(value: Any) -> bool:
    return isinstance(value, list) and len(value) == 2 and all(map(_number, value))


def _counts(value: Any) -> bool:
    return isinstance(value, dict) and all(map(_integer, value.values()))


def _or_null(check: _Check) -> _Check:
    return lambda value: value is None or check(value)


def _array(check: _Check) -> _Check:
    return lambda value: isinstance(value, list) and all(map(check, value))


def _object(fields: dict[str, _Check], required: tuple[str, ...] = ()) -> _Check:
    def check(value: Any) -> bool:
        return isinstance(value, dict) and all(key in value for key in required) and \
            all(test(value[key]) for key, test in fields.items() if key in value)
    return check


_FRAME = _object({"function": _string, "file": _string, "line": _or_null(_integer)})
_STALL = _object({
    "started_at_s": _number, "duration_ms": _number, "detected_after_ms": _or_null(_number),
    "culprit": _or_null(_FRAME), "stack": _array(_FRAME), "callback": _or_null(_string),
    "task": _or_null(_string), "gil_held": _boolean, "source": _string,
    "stack_source": _string, "samples": _integer, "culprit_samples": _integer,
}, required=("started_at_s", "duration_ms"))
_THREAD = _object({"name": _or_null(_string), "ident": _or_null(_integer)})
_SUMMARY = _object({"count": _integer, "total_ms": _number, "max_ms": _number})
_WORKER_STALL = _object({
    "thread": _or_null(_string), "thread_ident": _or_null(_integer),
    "loop_kind": _or_null(_string), "started_at_s": _number, "duration_ms": _number,
    "culprit": _or_null(_FRAME), "callback": _or_null(_string), "task": _or_null(_string),
}, required=("duration_ms",))
_LOOP = _object({"kind": _string, "class": _or_null(_string), "variant": _or_null(_string),
                 "callback_timing": _boolean, "qt_dispatcher": _or_null(_string),
                 "attached_at_s": _or_null(_number)})
_SNAPSHOT = _object({
    "t": _number, "loop": _or_null(_LOOP), "running": _boolean,
    "stall_now": _or_null(_STALL), "recent_stalls": _array(_STALL),
    "stall_summary": _object({"count": _integer, "total_ms": _number, "max_ms": _number}),
    "lag": _or_null(_object({key: _number for key in
                             ("p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")})),
    "lag_recent": _array(_pair),
    "dispatcher": _or_null(_object({"busy_fraction": _fraction, "iterations": _integer,
                                    "longest_busy_ms": _number})),
    "slow_callbacks": _array(_object({
        "name": _string, "kind": _string, "location": _or_null(_string), "count": _integer,
        "total_ms": _number, "max_ms": _number, "p50_ms": _number, "p99_ms": _number})),
    "tasks": _or_null(_object({key: _integer for key in
                               ("pending_now", "peak_pending", "long_pending",
                                "unretrieved_exceptions")})),
    "blocking_calls": _array(_object({
        "call": _string, "count": _integer,
        "sites": _array(_object({"function": _string, "file": _string,
                                 "line": _or_null(_integer), "count": _integer}))})),
    # Other threads (docs/dashboard.md, "Threads"): a few rows each, as in the report.
    "worker_loops": _object({
        "loops": _integer, "running": _integer, "stall_summary": _SUMMARY,
        "threads": _array(_object({
            "thread": _string, "loops": _integer, "kinds": _counts, "stalls": _SUMMARY,
            "worst": _or_null(_WORKER_STALL)}, required=("thread",))),
        "stalled_now": _array(_WORKER_STALL)}),
    "handoffs": _array(_object({
        "via": _string, "thread": _or_null(_string), "site": _or_null(_FRAME),
        "count": _integer, "p50_ms": _number, "p99_ms": _number, "max_ms": _number,
        "worst_during_stall_in": _or_null(_FRAME)})),
    "handoff_sites": _integer,
    "affinity": _array(_object({
        "source": _string, "call": _string, "site": _or_null(_FRAME), "count": _integer,
        "first_at_s": _number, "object": _or_null(_object({"class": _or_null(_string),
                                                           "object_name": _or_null(_string)})),
        "owner_thread": _or_null(_THREAD), "calling_thread": _or_null(_THREAD),
        "message": _or_null(_string)})),
    "affinity_sites": _integer,
})
_MESSAGES: dict[str, _Check] = {
    "hello": _object({"pid": _integer, "argv": _array(_string), "cwd": _string,
                      "started_at": _string, "loop": _or_null(_LOOP),
                      "threshold_ms": _or_null(_number)}),
    "snapshot": _object({"data": _SNAPSHOT}, required=("data",)),
    "event": _object({"kind": _string, "data": lambda value: isinstance(value, dict)},
                     required=("kind", "data")),
    "bye": _object({"exit": _or_null(_object({"reason": _string,
                                              "signal": _or_null(_string),
                                              "exception": _or_null(_string)}))}),
}
_ENVELOPE = _object({"t": _number, "dropped": _integer})
#: Events whose ``data`` is a stall, as in the report's ``stalls[]``.
_STALL_EVENTS = frozenset({"stall_started", "stall_ended"})


def message_problem(message: Any) -> str | None:
    """Why a decoded ``message`` is not a v1 message its readers can use, or ``None``.

    Checked: that it is an object of wire version 1 and a known type, the types of
    ``t`` and ``dropped``, and those of the fields of each message type that
    :class:`looptools.live.dashboard.DashboardState` and ``looptools profile``'s rebuilt
    report read (hello's ``pid``, ``argv``, ``loop``...; a snapshot's stalls, lag,
    dispatcher, tasks, other threads' rows...; a stall event's stall).  Numbers, depth and
    strings are :func:`looptools._jsonsafe.loads`'s to check.
    """
    if not isinstance(message, dict):
        return f"not an object but {type(message).__name__}"
    if message.get("v") != WIRE_VERSION:
        return f"not wire version {WIRE_VERSION}"
    kind = message.get("type")
    if not isinstance(kind, str) or kind not in MESSAGE_TYPES:  # a list is unhashable
        return "unknown message type"
    if not _ENVELOPE(message):
        return "'t' or 'dropped' is not a number"
    check = _MESSAGES.get(kind)
    if check is not None and not check(message):
        return f"a field of this {kind} message has the wrong type"
    if kind == "event" and message.get("kind") in _STALL_EVENTS and \
            not _STALL(message.get("data")):
        return f"the stall of this {message.get('kind')} event has the wrong shape"
    return None


Handler = Callable[[dict[str, Any], int], None]


def _deliver(handler: Handler, message: dict[str, Any], number: int,
             decoder: LineDecoder) -> None:
    """Pass ``message`` on; one the handler cannot take counts as bad, and reading goes on.

    :meth:`LineDecoder.decode` already drops messages of the wrong shape; this is so
    that no message at all can end the reader thread.
    """
    try:
        handler(message, number)
    except Exception:
        decoder.messages -= 1
        decoder.bad += 1


class StreamServer:
    """Listens on a Unix socket (what `looptools profile` gives the app) and reads messages.

    ``on_message(message, connection_number)`` runs on the reader thread; the
    connection number tells apart processes that inherited the environment.
    """

    def __init__(self, path: str | os.PathLike[str], on_message: Handler) -> None:
        self.path = Path(path)
        self.on_message = on_message
        self.decoders: dict[int, LineDecoder] = {}
        self.connections = 0
        self._selector = selectors.DefaultSelector()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(str(self.path))
            os.chmod(self.path, 0o600)
            self._listener.listen(8)
            self._listener.setblocking(False)
        except OSError:
            self._listener.close()
            raise
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._run, name="looptools-reader", daemon=True)

    @property
    def bad_lines(self) -> int:
        return sum(d.bad for d in self.decoders.values())

    def start(self) -> StreamServer:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._selector.select(0.05):
                if key.data is None:
                    self._accept()
                else:
                    self._read(key.fileobj, key.data)  # type: ignore[arg-type]

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except (BlockingIOError, InterruptedError):
            return
        sock.setblocking(False)
        number = self.connections
        self.connections += 1
        self.decoders[number] = LineDecoder()
        self._selector.register(sock, selectors.EVENT_READ, number)

    def _read(self, sock: socket.socket, number: int) -> None:
        try:
            data = sock.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._selector.unregister(sock)
            sock.close()
            return
        decoder = self.decoders[number]
        for message in decoder.feed(data):
            _deliver(self.on_message, message, number, decoder)

    def drain(self, quiet_for: float = 0.2, timeout: float = 1.5) -> None:
        """Wait until nothing arrived for ``quiet_for`` s or every writer hung up."""
        deadline = time.monotonic() + timeout
        last = -1
        quiet_since = time.monotonic()
        while time.monotonic() < deadline:
            total = sum(d.messages + d.bad for d in self.decoders.values())
            open_connections = len(self._selector.get_map()) - 1
            if total != last:
                last, quiet_since = total, time.monotonic()
            elif open_connections == 0 or time.monotonic() - quiet_since >= quiet_for:
                return
            time.sleep(0.02)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(2.0)
        for key in list(self._selector.get_map().values()):
            with contextlib.suppress(OSError):
                key.fileobj.close()  # type: ignore[union-attr]
        self._selector.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


class StreamClient:
    """Reads one app's registry socket (``looptools dashboard PID``) on a reader thread."""

    def __init__(self, sock: socket.socket, on_message: Handler) -> None:
        self.sock = sock
        self.on_message = on_message
        self.decoder = LineDecoder()
        self.closed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="looptools-reader", daemon=True)

    def start(self) -> StreamClient:
        self._thread.start()
        return self

    def _run(self) -> None:
        self.sock.settimeout(0.1)
        try:
            while not self._stop.is_set():
                try:
                    data = self.sock.recv(1 << 16)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break
                for message in self.decoder.feed(data):
                    _deliver(self.on_message, message, 0, self.decoder)
        finally:
            self.closed.set()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(1.0)
        with contextlib.suppress(OSError):
            self.sock.close()


def connect(path: str | os.PathLike[str], on_message: Handler,
            timeout: float = 2.0) -> StreamClient:
    """Connect to a listening app; raises :class:`OSError` when nobody listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(os.fspath(path))
    except OSError:
        sock.close()
        raise
    return StreamClient(sock, on_message).start()
