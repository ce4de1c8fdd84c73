"""An app with a signal wakeup descriptor of its own (``signal.set_wakeup_fd``), idle
for a second, then stalled 300 ms by a spin, then idle again.

``wakeup_fd_app.py KIND``:

* ``qt-BINDING`` (``qt-PySide6``, ``qt-PyQt6``...): the Qt recipe for Ctrl-C, a
  socket pair whose write end is the wakeup descriptor and a ``QSocketNotifier`` on
  the read end; the stall is a timer's slot;
* ``asyncio-foreign``: ``asyncio.run``, with the app's own socket pair as the wakeup
  descriptor, read with ``loop.add_reader``;
* ``asyncio-own``: ``asyncio.run`` with ``loop.add_signal_handler`` (the loop's own
  self-pipe is the descriptor); SIGUSR1 is sent once and its callback must run;
* ``uvloop-foreign``, ``uvloop-own``: the same on ``uvloop.run`` (whose loop sets its
  own self-pipe as the descriptor as it starts, ``add_signal_handler`` or not);
* ``qasync-foreign``, ``qtasyncio-foreign``: the Qt recipe (PySide6) in an app whose
  loop is qasync's or QtAsyncio's; the stall is a coroutine's.

It prints how often its reader ran and the signal numbers it read: without looptools
nothing wakes it (but the one SIGUSR1 of ``asyncio-own``, read by asyncio itself).
"""

from __future__ import annotations

import importlib
import os
import signal
import socket
import sys
import time

kind = sys.argv[1]
reads: list[bytes] = []


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:  # CULPRIT: spin
        pass


def drain(sock: socket.socket) -> None:
    try:
        reads.append(sock.recv(4096))
    except BlockingIOError:
        reads.append(b"")


def report() -> None:
    data = b"".join(reads)
    print(f"reader ran {len(reads)} times; signals {sorted(set(data))}", flush=True)


if kind.startswith("qt-"):
    QtCore = importlib.import_module(f"{kind[3:]}.QtCore")
    app = QtCore.QCoreApplication([])
    r, w = socket.socketpair()
    r.setblocking(False)
    w.setblocking(False)
    signal.set_wakeup_fd(w.fileno())
    signal.signal(signal.SIGINT, lambda *_: app.quit())
    notifier = QtCore.QSocketNotifier(r.fileno(), QtCore.QSocketNotifier.Type.Read
                                      if hasattr(QtCore.QSocketNotifier, "Type")
                                      else QtCore.QSocketNotifier.Read)
    notifier.activated.connect(lambda *_: drain(r))

    def stall() -> None:
        spin(0.3)

    def end() -> None:
        report()
        signal.set_wakeup_fd(-1)
        app.quit()

    QtCore.QTimer.singleShot(1000, stall)
    QtCore.QTimer.singleShot(1600, end)
    app.exec() if hasattr(app, "exec") else app.exec_()
else:
    import asyncio

    runner, _, mode = kind.partition("-")

    async def main() -> None:
        loop = asyncio.get_running_loop()
        if mode == "own":
            got = asyncio.Event()
            loop.add_signal_handler(signal.SIGUSR1, got.set)
        elif runner in ("qasync", "qtasyncio"):  # the Qt recipe
            from PySide6 import QtCore

            r, w = socket.socketpair()
            r.setblocking(False)
            w.setblocking(False)
            signal.set_wakeup_fd(w.fileno())
            notifier = QtCore.QSocketNotifier(r.fileno(), QtCore.QSocketNotifier.Type.Read)
            notifier.activated.connect(lambda *_: drain(r))
        else:
            r, w = socket.socketpair()
            r.setblocking(False)
            w.setblocking(False)
            signal.set_wakeup_fd(w.fileno())
            loop.add_reader(r.fileno(), drain, r)
        await asyncio.sleep(1.0)
        spin(0.3)
        await asyncio.sleep(0.3)
        if mode == "own":
            os.kill(os.getpid(), signal.SIGUSR1)
            await asyncio.wait_for(got.wait(), 5)
            print("SIGUSR1 callback ran", flush=True)
            loop.remove_signal_handler(signal.SIGUSR1)
        else:
            report()
            if runner in ("qasync", "qtasyncio"):
                notifier.setEnabled(False)
            else:
                loop.remove_reader(r.fileno())
            signal.set_wakeup_fd(-1)

    if runner == "uvloop":
        import uvloop

        uvloop.run(main())
    elif runner == "qasync":
        import qasync
        from PySide6.QtCore import QCoreApplication

        app = QCoreApplication([])
        qasync.run(main())
    elif runner == "qtasyncio":
        import PySide6.QtAsyncio as QtAsyncio
        from PySide6.QtCore import QCoreApplication

        app = QCoreApplication([])
        QtAsyncio.run(main(), keep_running=False, quit_qapp=True)
    else:
        asyncio.run(main())
