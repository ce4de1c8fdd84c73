"""Every file looptools writes for the user goes through ``looptools._safewrite``: a device,
a FIFO, a socket, a folder or a link is never replaced, a failed write loses nothing.

Device nodes, FIFOs, sockets and a small full file system are made in temp folders
(``mknod`` and ``mount`` need root; those tests skip without it).  The real
``/dev/null`` is never a target: as root, a rename over it once broke a machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import env as app_env

from looptools._safewrite import WriteRefused, why, write_file

ROOT = Path(__file__).parent.parent
REPORT = Path(__file__).parent / "data" / "render" / "qasync_chat.json"
LOOPTOOLS = [sys.executable, "-m", "looptools"]
#: An app that stalls its loop once, for runs that write a real report.
STALLING_APP = """\
import asyncio, time

def blocking_call():
    time.sleep(0.15)

async def main():
    await asyncio.sleep(0.05)
    blocking_call()
    await asyncio.sleep(0.05)

asyncio.run(main())
print("app done")
"""


def _cli(*args: str, cwd: Path, timeout: float = 60, **extra: str
         ) -> subprocess.CompletedProcess[str]:
    env = {**app_env(NO_COLOR="1", **extra), "PYTHONPATH": str(ROOT)}
    return subprocess.run([*LOOPTOOLS, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _mode(path: Path) -> int:
    return os.lstat(path).st_mode


def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def null_node(tmp_path: Path) -> Path:
    """A character device like /dev/null (major 1, minor 3), made in a temp folder."""
    node = tmp_path / "null"
    if os.geteuid() != 0:
        pytest.skip("mknod needs root")
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except OSError as exc:
        pytest.skip(f"mknod: {exc}")
    return node


# -- the writer itself ------------------------------------------------------------------------


def test_a_character_device_is_written_through_never_replaced(null_node: Path) -> None:
    before = _listing(null_node.parent)
    try:
        assert write_file(null_node, "report\n") == null_node
    except PermissionError:
        pass  # a temp folder mounted nodev refuses the device: refusing is fine too
    assert stat.S_ISCHR(_mode(null_node)), "the device was replaced by a regular file"
    assert os.stat(null_node).st_rdev == os.makedev(1, 3)
    assert _listing(null_node.parent) == before  # no temp file left, nothing created


def test_a_fifo_with_a_reader_gets_the_text(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    opened = threading.Event()

    def reader() -> None:
        with open(fifo, "rb") as handle:  # blocks until the writer opens
            opened.set()
            got.append(handle.read())

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    # the writer opens non-blocking: retry until the reader's open is in place
    for _ in range(200):
        try:
            write_file(fifo, "x" * 200_000)  # more than a pipe buffer: the writer waits
            break
        except WriteRefused:
            threading.Event().wait(0.01)
    thread.join(10)
    assert got == [b"x" * 200_000]
    assert stat.S_ISFIFO(_mode(fifo))


def test_a_fifo_nobody_reads_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(WriteRefused) as caught:
        write_file(fifo, "text")
    assert why(caught.value, fifo) == "is a FIFO that nothing reads"
    assert stat.S_ISFIFO(_mode(fifo)) and _listing(tmp_path) == ["pipe"]


def test_a_socket_and_a_folder_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(path))
        with pytest.raises(WriteRefused) as caught:
            write_file(path, "text")
        assert "is a socket" in why(caught.value, path)
        assert stat.S_ISSOCK(_mode(path))
    folder = tmp_path / "d"
    folder.mkdir()
    with pytest.raises(WriteRefused) as dir_caught:
        write_file(folder, "text")
    assert "is a directory" in why(dir_caught.value, folder)
    assert _listing(folder) == []


def test_a_name_ending_with_a_slash_is_refused_not_written_as_a_file(tmp_path: Path) -> None:
    """``out/`` names a folder; ``Path`` would quietly make it a file ``out`` (a
    fresh-eyes trial found ``--html out/`` writing one)."""
    with pytest.raises(WriteRefused) as caught:
        write_file(f"{tmp_path}/out/", "text")
    assert why(caught.value, f"{tmp_path}/out/") == "names a folder (it ends with /); not written"
    assert _listing(tmp_path) == []
    (tmp_path / "d").mkdir()
    with pytest.raises(WriteRefused) as there:
        write_file(f"{tmp_path}/d/", "text")  # an existing folder: as without the slash
    assert why(there.value, tmp_path / "d") == "is a directory; not replaced"
    assert _listing(tmp_path / "d") == []


def test_a_link_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    real.chmod(0o640)
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert write_file(link, "new") == real
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new" and stat.S_IMODE(os.stat(real).st_mode) == 0o640
    dangling = tmp_path / "dangling.json"
    dangling.symlink_to(tmp_path / "made-here.json")
    write_file(dangling, "made")
    assert dangling.is_symlink() and (tmp_path / "made-here.json").read_text() == "made"
    assert sorted(_listing(tmp_path)) == ["dangling.json", "link.json", "made-here.json",
                                          "real.json"]


def test_a_new_file_gets_the_mode_open_gives_and_private_is_0600(tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        plain = write_file(tmp_path / "plain.json", "x")
        private = write_file(tmp_path / "private.json", "x", private=True)
    finally:
        os.umask(mask)
    assert stat.S_IMODE(os.stat(plain).st_mode) == 0o644
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600


def test_proc_says_what_really_failed(tmp_path: Path) -> None:
    with pytest.raises(OSError) as caught:
        write_file("/proc/looptools-test.html", "x")
    assert why(caught.value, "/proc/looptools-test.html").startswith(
        "cannot create files in /proc")
    with pytest.raises(OSError) as missing:
        write_file(tmp_path / "nope" / "r.json", "x")
    assert why(missing.value, tmp_path / "nope" / "r.json") == \
        f"directory {tmp_path / 'nope'} does not exist"


def test_dev_stdout_redirected_to_a_log_appends_to_it(tmp_path: Path) -> None:
    """``-o /dev/stdout`` with stdout sent to a file: the file is neither replaced (the
    shell's descriptor would point at a deleted inode) nor overwritten from its start."""
    log = tmp_path / "log.txt"
    log.write_text("before\n")
    inode = log.stat().st_ino
    with open(log, "a") as out:
        out.write("from the shell\n")
        out.flush()
        code = ("import sys; from looptools._safewrite import write_file; "
                "write_file('/dev/stdout', 'the report\\n')")
        subprocess.run([sys.executable, "-c", code], stdout=out, check=True, timeout=60,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert log.stat().st_ino == inode
    assert log.read_text() == "before\nfrom the shell\nthe report\n"


@contextlib.contextmanager
def _tiny_tmpfs(folder: Path) -> Iterator[Path]:
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mount needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_leaves_the_previous_file_whole(tmp_path: Path) -> None:
    with _tiny_tmpfs(tmp_path / "small") as small:
        target = small / "baseline.json"
        target.write_text("previous\n" * 100)
        with pytest.raises(OSError) as caught:
            write_file(target, "y" * 200_000)
        assert why(caught.value, target) == "no space left on the device"
        assert target.read_text() == "previous\n" * 100
        assert _listing(small) == ["baseline.json"]


# -- every command that writes, end to end ----------------------------------------------------


def test_report_check_and_baseline_write_through_a_device(null_node: Path,
                                                          tmp_path: Path) -> None:
    for args in (["report", str(REPORT), "-f", "html", "-o", str(null_node)],
                 ["baseline", str(REPORT), "-o", str(null_node)],
                 ["check", str(REPORT), "--junit", str(null_node), "--max-stalls", "1000"]):
        done = _cli(*args, cwd=tmp_path)
        assert "Traceback" not in done.stderr, done.stderr
        assert stat.S_ISCHR(_mode(null_node)), args
    assert _listing(tmp_path) == ["null"]


def test_the_monitor_writes_its_report_through_a_device(null_node: Path,
                                                        tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(STALLING_APP)
    done = subprocess.run([sys.executable, "app.py"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60,
                          env=app_env(LOOPTOOLS="1", LOOPTOOLS_REPORT=str(null_node)))
    assert done.returncode == 0 and done.stdout == "app done\n", done.stderr
    assert stat.S_ISCHR(_mode(null_node))
    assert sorted(_listing(tmp_path)) == ["app.py", "null"]


def test_profile_report_none_writes_no_file_and_check_still_judges(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(STALLING_APP)
    (tmp_path / "budget.toml").write_text("max_stall_ms = 100\n")
    done = _cli("profile", "--no-dashboard", "--report", "none", "--check",
                "--budget", "budget.toml", "app.py", cwd=tmp_path)
    assert done.returncode == 1, done.stderr  # a 150 ms stall, budget 100 ms: over
    assert "app done" in done.stdout
    assert sorted(_listing(tmp_path)) == ["app.py", "budget.toml"], done.stderr
    assert "blocking_call" in done.stderr


def test_profile_unwritable_report_falls_back_and_says_why(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(STALLING_APP)
    done = _cli("profile", "--no-dashboard", "--report", "/proc/looptools-r.json",
                "--html", "/proc/looptools-r.html", "app.py", cwd=tmp_path)
    assert done.returncode == 3, done.stderr  # app ended 0, an output could not be written
    lines = [line for line in done.stderr.splitlines() if "cannot write" in line]
    assert len(lines) == 2, done.stderr
    assert all("cannot create files in /proc" in line for line in lines), lines
    assert "does not exist" not in done.stderr
    fallback = next(line for line in lines if "--report" in line).split("wrote it to ")[1]
    path = Path(fallback.removesuffix(" instead"))
    try:
        report = json.loads(path.read_text())
        assert report["stall_summary"]["count"] == 1
        assert report["stalls"][0]["culprit"]["function"] == "blocking_call"
    finally:
        path.unlink(missing_ok=True)


def test_a_link_planted_by_another_user_in_a_shared_folder_is_not_followed(tmp_path: Path
                                                                           ) -> None:
    if os.geteuid() != 0:
        pytest.skip("lchown to another user needs root")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    link = shared / "looptools-report.json"
    link.symlink_to(victim)
    os.lchown(link, 54321, 54321)
    with pytest.raises(WriteRefused) as caught:
        write_file(link, "the report")
    assert "symbolic link of user 54321" in why(caught.value, link)
    assert victim.read_text() == "precious\n" and link.is_symlink()
    os.lchown(link, os.geteuid(), os.getegid())  # our own link there is followed
    write_file(link, "the report")
    assert victim.read_text() == "the report"


def test_the_fallback_is_a_new_private_file_not_a_name_anyone_can_plant(tmp_path: Path
                                                                        ) -> None:
    (tmp_path / "app.py").write_text(STALLING_APP)
    env = app_env(LOOPTOOLS="1", LOOPTOOLS_REPORT="/proc/looptools-x.json", TMPDIR=str(tmp_path))
    planted = tmp_path / "planted-target.txt"
    planted.write_text("precious\n")
    done = subprocess.Popen([sys.executable, "app.py"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # The old fixed name, planted before the app writes: it must be left alone.
    (tmp_path / f"looptools-report-{done.pid}.json").symlink_to(planted)
    out, err = done.communicate(timeout=60)
    assert done.returncode == 0 and out == "app done\n", err
    assert planted.read_text() == "precious\n"
    line = next(line for line in err.splitlines() if "cannot write the report" in line)
    written = Path(line.split("wrote it to ")[1].removesuffix(" instead"))
    assert written.parent == tmp_path and written.name.startswith(f"looptools-report-{done.pid}-")
    assert stat.S_IMODE(os.stat(written).st_mode) == 0o600 and not written.is_symlink()
    assert json.loads(written.read_text())["stalls"][0]["culprit"]["function"] == "blocking_call"


def test_a_fifo_reader_that_stops_reading_does_not_hang_the_writer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    import looptools._safewrite as safewrite

    monkeypatch.setattr(safewrite, "FIFO_PATIENCE_S", 0.5)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened, never read
    try:
        started = time.monotonic()
        with pytest.raises(WriteRefused) as caught:
            write_file(fifo, "x" * 1_000_000)  # more than the pipe holds
        assert time.monotonic() - started < 5
        assert "reader stopped reading" in why(caught.value, fifo)
    finally:
        os.close(reader)
