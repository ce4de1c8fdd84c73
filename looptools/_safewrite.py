"""Write a file the user named without ever damaging what the name points at.

Every report, rendered view, baseline and JUnit file goes through :func:`write_file`:

* **a regular file, or nothing yet**: the text goes to a temp file in the target's own
  folder, which is then renamed over the target, so a reader (a browser reloading the
  HTML, a CI step uploading it) never sees half a file and a failed write (a full
  disk) leaves the previous file whole.  The new file keeps the old one's mode, or
  gets the mode a plain ``open()`` would give (``private``: 0600);
* **a symbolic link**: followed.  The file it points at is replaced; the link stays;
* **a character device or a FIFO** (``/dev/null``, ``/dev/stdout``, ``>(cat)``): written
  through, never replaced (as root, a rename once turned ``/dev/null`` into a regular
  file).  A FIFO nobody reads is refused rather than waited on;
* **a name for an open descriptor** (``/dev/stdout``, ``/dev/fd/3``, ``/proc/self/fd/1``, or
  a link into ``/proc``): written through, appended when it is a regular file (a log
  the shell redirected stdout to is neither replaced nor overwritten from its start);
* **anything else** (a directory, a socket, a block device): refused, and so is a
  name that ends with a slash (``out/``: a folder's, which ``Path`` would quietly turn
  into a file ``out``).

Nothing but the target's own temp file is ever created or renamed.  Failures raise
:class:`OSError` (:class:`WriteRefused` for refusals); :func:`why` turns one into the
few words a one-line error message needs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from pathlib import Path

__all__ = ["WriteRefused", "names_a_folder", "why", "write_fallback", "write_file"]

_DESCRIPTOR_NAMES = ("/dev/stdout", "/dev/stderr")
_DESCRIPTOR_PREFIXES = ("/proc/", "/dev/fd/")


class WriteRefused(OSError):
    """The target exists and is not something a report may be written to."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    return "not a regular file"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _names_a_descriptor(target: Path) -> bool:
    text = str(target.absolute())
    if text in _DESCRIPTOR_NAMES or text.startswith(_DESCRIPTOR_PREFIXES):
        return True
    return target.is_symlink() and os.path.realpath(target).startswith("/proc/")


def _write_through(path: Path, data: bytes, fifo: bool, regular: bool = False) -> None:
    flags = os.O_WRONLY | getattr(os, "O_CLOEXEC", 0)
    if fifo:
        flags |= os.O_NONBLOCK
    if regular:
        flags |= os.O_APPEND
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        if fifo and exc.errno == errno.ENXIO:
            raise WriteRefused(errno.ENXIO, "is a FIFO that nothing reads", str(path)) from None
        raise
    try:
        if fifo:  # a reader is there: wait for it, but not for ever
            _write_all_within(fd, data, FIFO_PATIENCE_S)
        else:
            _write_all(fd, data)
    finally:
        os.close(fd)


#: How long a FIFO's reader may take to read the report before the write gives up (a
#: reader that stopped reading once hung the app at exit).
FIFO_PATIENCE_S = 5.0


def _write_all_within(fd: int, data: bytes, patience: float) -> None:
    import select
    import time

    deadline = time.monotonic() + patience
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([], [fd], [], left)[1]:
                raise WriteRefused(errno.ETIMEDOUT, f"is a FIFO whose reader stopped reading "
                                   f"(waited {patience:g} s)", "") from None
            continue
        view = view[written:]


def _refuse_a_planted_link(link: Path) -> None:
    """A link in a shared sticky folder (``/tmp``) that belongs to someone else (not us,
    not the folder's owner) is not followed: the kernel's ``fs.protected_symlinks``
    refuses the same to ``open()``, and a rename to its target would go round that."""
    try:
        mine = os.lstat(link).st_uid
        folder = os.stat(link.parent if str(link.parent) else ".")
    except OSError:
        return
    shared = folder.st_mode & stat.S_ISVTX and folder.st_mode & stat.S_IWOTH
    if shared and mine not in (os.geteuid(), folder.st_uid):
        raise WriteRefused(errno.EACCES, f"is a symbolic link of user {mine} in a shared folder; "
                           "not followed", str(link))


def write_fallback(data: str | bytes, pid: int) -> Path:
    """Write ``data`` to a new private file in the temp folder (where a report goes when
    its own path failed): a random name made with ``O_EXCL`` and never through a link,
    so nobody can plant the file or a link in its place; mode 0600."""
    payload = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    fd, name = tempfile.mkstemp(prefix=f"looptools-report-{pid}-", suffix=".json")
    try:
        _write_all(fd, payload)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    os.close(fd)
    return Path(name)


def names_a_folder(path: str | os.PathLike[str]) -> bool:
    """``path`` as the user gave it ends with a slash: a folder's name, not a file's."""
    given = os.fspath(path)
    return given.endswith(tuple(sep for sep in (os.sep, os.altsep) if sep))


def write_file(path: str | os.PathLike[str], data: str | bytes, *,
               private: bool = False) -> Path:
    """Write ``data`` (text is UTF-8) to ``path`` as the module docstring says; returns
    the path written (the link's target for a symbolic link)."""
    if names_a_folder(path) and not os.path.isdir(path):
        raise WriteRefused(errno.EISDIR, "names a folder (it ends with /); not written",
                           os.fspath(path))
    target = Path(path)
    payload = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    try:
        info: os.stat_result | None = os.stat(target)  # follows symbolic links
    except FileNotFoundError:
        info = None  # nothing there yet (or a link to nothing: created at its target)
    if info is not None and not stat.S_ISREG(info.st_mode):
        if stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode):
            _write_through(target, payload, fifo=stat.S_ISFIFO(info.st_mode))
            return target
        code = errno.EISDIR if stat.S_ISDIR(info.st_mode) else errno.EINVAL
        raise WriteRefused(code, f"is {_kind(info.st_mode)}; not replaced", str(target))
    if info is not None and _names_a_descriptor(target):
        _write_through(target, payload, fifo=False, regular=True)
        return target
    if target.is_symlink():
        _refuse_a_planted_link(target)
    real = Path(os.path.realpath(target)) if target.is_symlink() else target
    folder = real.parent if str(real.parent) else Path(".")
    fd, temp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=folder)
    try:
        try:
            _write_all(fd, payload)
        finally:
            os.close(fd)
        new_mode = 0o600 if private else 0o666 & ~_umask()
        os.chmod(temp, info.st_mode & 0o7777 if info is not None else new_mode)  # was 0600
        os.replace(temp, real)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return real


def why(exc: OSError, path: str | os.PathLike[str]) -> str:
    """What went wrong writing ``path``, in a few words for a one-line message."""
    target = Path(path)
    if isinstance(exc, WriteRefused):
        return str(exc.strerror)
    folder = target.parent if str(target.parent) else Path(".")
    if isinstance(exc, FileNotFoundError):
        if not folder.exists():
            return f"directory {folder} does not exist"
        if not folder.is_dir():
            return f"{folder} is not a directory"
        # The directory is there but refuses new files (/proc, /sys): say what the OS said.
        return f"cannot create files in {folder} ({exc.strerror or 'no such file'})"
    if isinstance(exc, NotADirectoryError):
        return f"{folder} is not a directory"
    if isinstance(exc, IsADirectoryError):
        return "is a directory"
    if isinstance(exc, PermissionError):
        return f"permission denied ({folder} or the file)"
    if exc.errno == errno.ENOSPC:
        return "no space left on the device"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    return exc.strerror or str(exc)
