"""Chat client sample app: Qt widgets on a qasync event loop (Qt and asyncio on one thread).

Architecture
    ChatWindow (QMainWindow) runs on ``qasync.QEventLoop``. A simulated model streams reply tokens
    from an async generator into an ``asyncio.Queue``; a consumer task moves them into a pending
    buffer that a 16 ms QTimer flushes into the transcript. Prompts are tokenised with
    ``asyncio.to_thread``, replies rendered with ``run_in_executor``, and a ModerationWorker thread
    reports back through ``run_coroutine_threadsafe``, ``call_soon_threadsafe`` and a queued
    ``QMetaObject.invokeMethod``. An AudioMeter thread hands the microphone level to the UI
    with ``call_soon_threadsafe`` 100 times a second, so any stall of the UI thread delays its
    hand-offs. The app types and sends its own prompts on timers.

Run ``python sample_apps/chat_qasync.py --help`` for the command line (shared by all sample apps).
The binding is PySide6, or the one ``QT_API`` names: ``pyqt6`` or ``pyqt5``.
On exit it prints one line: ``chat_qasync: 3 replies, 64 tokens, 3 moderated, 515 chars``.

Problems: ``blocking-slot`` is the "Export transcript" button's slot (clicked by a QTimer);
``widget-from-worker`` has the moderation worker thread update the moderation badge (a QLabel
the UI thread owns) itself instead of handing the update to the UI thread; all the others are
injected by the ``run_maintenance`` housekeeping coroutine.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import queue
import signal
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from types import FrameType
from typing import Any

try:
    from _common import AppConfig, end_as_asked, parse_args, wait_for_quit
except ImportError:  # started with -m or runpy: make the sibling module importable
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import AppConfig, end_as_asked, parse_args, wait_for_quit

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: The Qt binding: PySide6 unless ``QT_API`` names another one this app runs on.  qasync
#: picks its binding from ``QT_API`` too, so it is set before qasync is imported: without
#: it, qasync would take the first binding installed (PyQt5 before PySide6), not ours.
BINDINGS = {"pyside6": "PySide6", "pyqt6": "PyQt6", "pyqt5": "PyQt5"}
QT_API = os.environ.setdefault("QT_API", "pyside6").strip().lower()
if QT_API not in BINDINGS:
    print(f"chat_qasync: error: QT_API={QT_API!r}: this app runs on {', '.join(BINDINGS)}",
          file=sys.stderr)
    sys.exit(2)
QtCore: Any = importlib.import_module(f"{BINDINGS[QT_API]}.QtCore")
QtGui: Any = importlib.import_module(f"{BINDINGS[QT_API]}.QtGui")
QtWidgets: Any = importlib.import_module(f"{BINDINGS[QT_API]}.QtWidgets")

import qasync  # noqa: E402 -- after QT_API is set

Q_ARG, QMetaObject, Qt, QTimer = QtCore.Q_ARG, QtCore.QMetaObject, QtCore.Qt, QtCore.QTimer
Slot = QtCore.Slot if QT_API == "pyside6" else QtCore.pyqtSlot
QTextCursor = QtGui.QTextCursor
QApplication, QHBoxLayout, QLabel, QLineEdit = (
    QtWidgets.QApplication, QtWidgets.QHBoxLayout, QtWidgets.QLabel, QtWidgets.QLineEdit)
QListWidget, QMainWindow, QPlainTextEdit, QPushButton = (
    QtWidgets.QListWidget, QtWidgets.QMainWindow, QtWidgets.QPlainTextEdit,
    QtWidgets.QPushButton)
QSplitter, QVBoxLayout, QWidget = QtWidgets.QSplitter, QtWidgets.QVBoxLayout, QtWidgets.QWidget

APP = "chat_qasync"
SUPPORTED = (
    "blocking-slot",
    "blocking-coro",
    "cpu-parse",
    "sync-io",
    "gil-call",
    "leaked-task",
    "unretrieved-exception",
    "widget-from-worker",
)

#: The conversation the app has with itself: (prompt, canned model reply).
SCRIPT: tuple[tuple[str, str], ...] = (
    (
        "Summarise the release notes for 2.4",
        "## Release 2.4\n- **Faster** sync of large transcripts\n- Export to `markdown`"
        " and plain text\n- Fixed the *reconnect* loop after sleep",
    ),
    (
        "Which settings changed?",
        "Two settings moved:\n- `autosave.interval` is now in **seconds**\n"
        "- `export.folder` defaults to your documents folder",
    ),
    (
        "Draft a short announcement",
        "# Chat 2.4 is out\nSync is **twice as fast**, exports keep your formatting, and"
        " the app no longer reconnects in a loop after sleep.",
    ),
)

TOKEN_INTERVAL = 0.008  # seconds between streamed tokens
PROMPT_DELAY_MS = 120  # "typing" time before each automatic prompt
REFRESH_MS = 16  # UI refresh period
METER_INTERVAL = 0.01  # the audio meter's hand-offs: 100 a second
FLAGGED_WORDS = frozenset({"loop", "sleep"})

_O_DSYNC = getattr(os, "O_DSYNC", 0)
_PAGE = 64 * 1024


# --------------------------------------------------------------------------- text helpers


def tokenize(text: str) -> list[str]:
    """Split text into model tokens (a word and its leading whitespace)."""
    tokens: list[str] = []
    word = ""
    for ch in text:
        if ch.isspace() and word.strip():
            tokens.append(word)
            word = ""
        word += ch
    if word:
        tokens.append(word)
    return tokens


def parse_markdown(text: str) -> list[tuple[str, str]]:  # CULPRIT: cpu-parse
    """Parse a small markdown subset into (block kind, rendered text) pairs, char by char."""
    blocks: list[tuple[str, str]] = []
    for line in text.splitlines():
        level = 0
        while level < len(line) and line[level] == "#":
            level += 1
        if level:
            kind = f"h{level}"
        elif line.startswith(("- ", "* ")):
            kind = "li"
        elif not line.strip():
            continue
        else:
            kind = "p"
        out: list[str] = []
        bold = code = False
        i = level + 2 if kind == "li" else level
        while i < len(line):
            ch = line[i]
            if ch == "*" and i + 1 < len(line) and line[i + 1] == "*":
                bold = not bold
                i += 2
                continue
            if ch == "`":
                code = not code
            elif ch == "*" and not code:
                pass
            elif bold:
                out.append(ch.upper())
            else:
                out.append(ch)
            i += 1
        blocks.append((kind, "".join(out).strip()))
    return blocks


# --------------------------------------------------------------------------- model and storage


class TokenModel:
    """A stand-in for a streaming language model."""

    def __init__(self, script: tuple[tuple[str, str], ...]) -> None:
        self._replies = dict(script)

    async def stream_reply(self, prompt: str) -> AsyncIterator[str]:
        reply = self._replies.get(prompt, "Sorry, I did not catch that.")
        for token in tokenize(reply):
            await asyncio.sleep(TOKEN_INTERVAL)
            yield token


class TranscriptStore:
    """Exports and journals the transcript under a private temporary folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.export_path = folder / "transcript.md"
        self.journal_path = folder / "transcript.journal"

    def write_export(self, text: str) -> int:
        self.export_path.write_text(text, encoding="utf-8")
        return len(text)

    def save_sync(self, text: str, seconds: float) -> int:
        """Journal the transcript durably, page by page (O_DSYNC), then read it back."""
        page = (text.encode("utf-8") or b"-").ljust(_PAGE, b" ")[:_PAGE]
        fd = os.open(self.journal_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | _O_DSYNC, 0o644)
        written = 0
        deadline = time.perf_counter() + seconds
        try:
            while True:
                written += os.pwrite(fd, page, written % (16 * _PAGE))  # CULPRIT: sync-io
                if time.perf_counter() >= deadline:
                    break
            check = os.pread(fd, _PAGE, 0)
        finally:
            os.close(fd)
        if check != page:
            raise OSError("transcript journal is corrupt")
        return written


class ModerationWorker(threading.Thread):
    """Checks finished replies off the UI thread and hands results back three ways."""

    def __init__(self, window: ChatWindow, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="moderation-worker", daemon=True)
        self.window = window
        self.loop = loop
        self.inbox: queue.Queue[tuple[int, str] | None] = queue.Queue()
        self.checked = 0

    def submit(self, reply_id: int, text: str) -> None:
        self.inbox.put((reply_id, text))

    def refresh_badge(self) -> None:
        """Ask for the moderation badge to be brought up to date (``widget-from-worker``)."""
        self.inbox.put((-1, ""))

    def stop(self) -> None:
        self.inbox.put(None)

    def run(self) -> None:
        while (item := self.inbox.get()) is not None:
            reply_id, text = item
            if reply_id < 0:
                # The shortcut: the worker writes to a widget the UI thread owns.
                badge = self.window.moderation_badge
                badge.setText(f"{self.checked} checked")  # CULPRIT: widget-from-worker
                self.loop.call_soon_threadsafe(self.window._injection_finished)
                continue
            self.checked += 1
            time.sleep(0.02)  # the moderation service round trip
            words = {w.strip(".,*`#").lower() for w in text.split()}
            flagged = len(words & FLAGGED_WORDS)
            verdict = "ok" if not flagged else f"{flagged} flagged"
            asyncio.run_coroutine_threadsafe(
                self.window.record_moderation(reply_id, flagged), self.loop
            )
            self.loop.call_soon_threadsafe(self.window.note_worker_heartbeat, reply_id)
            QMetaObject.invokeMethod(
                self.window,
                "on_moderation_done",
                Qt.ConnectionType.QueuedConnection,
                Q_ARG(int, reply_id),
                Q_ARG(str, verdict),
            )


class AudioMeter(threading.Thread):
    """Reads the microphone level and hands it to the UI thread 100 times a second."""

    def __init__(self, window: ChatWindow, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="audio-meter", daemon=True)
        self.window = window
        self.loop = loop
        self.stopped = threading.Event()

    def stop(self) -> None:
        self.stopped.set()

    def run(self) -> None:
        sample = 0
        while not self.stopped.wait(METER_INTERVAL):
            sample += 1
            level = (sample * 37) % 100  # the "microphone"
            try:
                self.loop.call_soon_threadsafe(self.window.on_audio_level, level)
            except RuntimeError:  # the loop closed under us: the session is over
                return


# --------------------------------------------------------------------------- the window


class ChatWindow(QMainWindow):
    def __init__(self, cfg: AppConfig, store: TranscriptStore) -> None:
        super().__init__()
        self.cfg = cfg
        self.store = store
        self.model = TokenModel(SCRIPT)
        self.setWindowTitle("Chat")
        self.resize(900, 600)

        self.transcript = QPlainTextEdit(readOnly=True)
        self.transcript.setPlaceholderText("Say hello…")
        self.moderation_list = QListWidget()
        self.input = QLineEdit(placeholderText="Message")
        self.send_button = QPushButton("Send")
        self.export_button = QPushButton("Export transcript")
        self.context_label = QLabel("context: 0 tokens")
        self.moderation_badge = QLabel("0 checked")
        self.moderation_badge.setObjectName("moderation-badge")
        self.mic_level = QLabel("mic 0%")
        for label in (self.moderation_badge, self.mic_level):
            label.setFixedWidth(90)  # new text never changes the window's size hints

        splitter = QSplitter()
        splitter.addWidget(self.transcript)
        splitter.addWidget(self.moderation_list)
        splitter.setSizes([700, 200])
        row = QHBoxLayout()
        row.addWidget(self.input, 1)
        row.addWidget(self.send_button)
        row.addWidget(self.export_button)
        row.addWidget(self.moderation_badge)
        row.addWidget(self.mic_level)
        column = QVBoxLayout()
        column.addWidget(splitter, 1)
        column.addLayout(row)
        column.addWidget(self.context_label)
        central = QWidget()
        central.setLayout(column)
        self.setCentralWidget(central)
        self.statusBar().showMessage("Connecting…")

        self.send_button.clicked.connect(self.on_send_clicked)
        self.input.returnPressed.connect(self.on_send_clicked)
        self.export_button.clicked.connect(self.on_export_clicked)

        self.refresh_timer = QTimer(self)
        self.refresh_timer.setInterval(REFRESH_MS)
        self.refresh_timer.timeout.connect(self.on_refresh_tick)
        self.prompt_timer = QTimer(self)
        self.prompt_timer.setSingleShot(True)
        self.prompt_timer.setInterval(PROMPT_DELAY_MS)
        self.prompt_timer.timeout.connect(self.send_next_prompt)

        # Conversation state.
        self.pending: list[str] = []
        self.token_queue: asyncio.Queue[str | None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.worker: ModerationWorker | None = None
        self.meter: AudioMeter | None = None
        self.mic_updates = 0
        self.background: set[asyncio.Future[Any]] = set()
        self.next_prompt = 0
        self.current_reply: list[str] = []
        self.replies = 0
        self.tokens = 0
        self.prompt_tokens = 0
        self.rendered_blocks = 0
        self.moderated = 0
        self.heartbeats = 0
        self.moderation_rows = 0
        self.injections_left = len(cfg.injection_times()) * len(cfg.problems)
        self.quit_requested: asyncio.Event | None = None
        self.quit_pending = False
        self.work_done: asyncio.Event | None = None
        self.presence_poller: asyncio.Task[None] | None = None

        # One page of history as the reflow sees it (~2 ms to parse).
        self.history_page = ("\n".join(reply for _, reply in SCRIPT) + "\n") * 32

    # ------------------------------------------------------------------ lifecycle

    async def run_session(self) -> str:
        """The main coroutine: run the conversation, wait for the deadline, shut down."""
        self.loop = asyncio.get_running_loop()
        self.token_queue = asyncio.Queue()
        self.quit_requested = asyncio.Event()
        self.work_done = asyncio.Event()
        started = time.monotonic()

        self.worker = ModerationWorker(self, self.loop)
        self.worker.start()
        self.meter = AudioMeter(self, self.loop)
        self.meter.start()
        self.refresh_timer.start()
        self._spawn(self.consume_tokens())
        self._spawn(self.run_maintenance(started))
        if self.cfg.has("blocking-slot"):
            for when in self.cfg.injection_times():
                self._single_shot(when, self.export_button.click)
        self.statusBar().showMessage("Connected")
        self.prompt_timer.start()

        await self._wait_for_quit()
        return await self.shutdown()

    def request_quit(self) -> None:
        self.quit_pending = True
        if self.quit_requested is not None:
            self.quit_requested.set()

    async def _wait_for_quit(self) -> None:
        assert self.quit_requested is not None and self.work_done is not None
        if self.quit_pending:  # interrupted before the loop was running
            self.quit_requested.set()
        await wait_for_quit(self.cfg, self.quit_requested, self.work_done, "the conversation")

    async def shutdown(self) -> str:
        self.refresh_timer.stop()
        self.prompt_timer.stop()
        for task in list(self.background):
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        if self.worker is not None:
            self.worker.stop()
            await asyncio.to_thread(self.worker.join, 5.0)
        if self.meter is not None:
            self.meter.stop()
            await asyncio.to_thread(self.meter.join, 5.0)
        self.on_refresh_tick()  # flush whatever is still pending
        self.statusBar().showMessage("Disconnected")
        return (
            f"{APP}: {self.replies} replies, {self.tokens} tokens, {self.moderated} moderated, "
            f"{len(self.transcript.toPlainText())} chars"
        )

    def _single_shot(self, seconds: float, slot: Any) -> None:
        """A precise one-off QTimer owned by the window (its timeout is a plain Qt slot)."""
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setTimerType(Qt.TimerType.PreciseTimer)
        timer.timeout.connect(slot)
        timer.start(round(seconds * 1000))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    def _check_done(self) -> None:
        if (
            self.work_done is not None
            and self.replies == len(SCRIPT)
            and self.moderated == self.heartbeats == self.moderation_rows == len(SCRIPT)
            and self.injections_left <= 0
        ):
            self.work_done.set()

    def _injection_finished(self) -> None:
        self.injections_left -= 1
        self._check_done()

    # ------------------------------------------------------------------ conversation

    @Slot()
    def send_next_prompt(self) -> None:
        if self.next_prompt >= len(SCRIPT):
            return
        prompt, _ = SCRIPT[self.next_prompt]
        self.next_prompt += 1
        self.input.setText(prompt)
        self.send_button.click()

    @Slot()
    def on_send_clicked(self) -> None:
        text = self.input.text().strip()
        if not text:
            return
        self.input.clear()
        self.pending.append(f"\nYou: {text}\nAssistant:")
        self.statusBar().showMessage("Assistant is typing…")
        self._spawn(self.ask(text))

    async def ask(self, prompt: str) -> None:
        assert self.token_queue is not None
        self.prompt_tokens += len(await asyncio.to_thread(tokenize, prompt))
        async for token in self.model.stream_reply(prompt):
            await self.token_queue.put(token)
        await self.token_queue.put(None)

    async def consume_tokens(self) -> None:
        """Move streamed tokens from the queue into the buffer the refresh timer paints."""
        assert self.token_queue is not None and self.loop is not None
        while True:
            token = await self.token_queue.get()
            if token is not None:
                self.pending.append(token)
                self.current_reply.append(token)
                self.tokens += 1
                continue
            reply = "".join(self.current_reply).strip()
            self.current_reply.clear()
            self.replies += 1
            self.pending.append("\n")
            blocks = await self.loop.run_in_executor(None, parse_markdown, reply)
            self.rendered_blocks += len(blocks)
            assert self.worker is not None
            self.worker.submit(self.replies, reply)
            self.statusBar().showMessage(f"{self.replies} replies")
            if self.next_prompt < len(SCRIPT):
                self.prompt_timer.start()
            self._check_done()

    @Slot()
    def on_refresh_tick(self) -> None:
        if not self.pending:
            return
        chunk = "".join(self.pending)
        self.pending.clear()
        cursor = self.transcript.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(chunk)
        self.transcript.setTextCursor(cursor)
        self.context_label.setText(f"context: {self.prompt_tokens + self.tokens} tokens")

    async def record_moderation(self, reply_id: int, flagged: int) -> None:
        self.moderated += 1
        self._check_done()

    def note_worker_heartbeat(self, reply_id: int) -> None:
        self.heartbeats += 1
        self._check_done()

    def on_audio_level(self, level: int) -> None:
        self.mic_updates += 1
        if self.mic_updates % 10 == 0:  # the label shows ten updates a second
            self.mic_level.setText(f"mic {level}%")

    @Slot(int, str)
    def on_moderation_done(self, reply_id: int, verdict: str) -> None:
        self.moderation_rows += 1
        self.moderation_list.addItem(f"reply {reply_id}: {verdict}")
        self.moderation_badge.setText(f"{self.moderation_rows} checked")
        self._check_done()

    # ------------------------------------------------------------------ export

    @Slot()
    def on_export_clicked(self) -> None:
        self.statusBar().showMessage("Exporting transcript…")
        if self.cfg.has("blocking-slot"):
            # The legacy exporter waits for the sync client to release its lock, on the UI thread.
            time.sleep(self.cfg.stall)  # CULPRIT: blocking-slot
            self._injection_finished()
        self._spawn(self.export_transcript())

    async def export_transcript(self) -> None:
        chars = await asyncio.to_thread(self.store.write_export, self.transcript.toPlainText())
        self.statusBar().showMessage(f"Exported {chars} characters")

    # ------------------------------------------------------------------ housekeeping (problems)

    async def run_maintenance(self, started: float) -> None:
        """Periodic housekeeping; this is where the coroutine-side problems are injected."""
        for when in self.cfg.injection_times():
            await asyncio.sleep(max(0.0, started + when - time.monotonic()))
            for problem in sorted(self.cfg.problems - {"blocking-slot"}):
                await self.run_housekeeping_step(problem)

    async def run_housekeeping_step(self, problem: str) -> None:
        if problem == "blocking-coro":
            await self.refresh_presence()
        elif problem == "cpu-parse":
            await self.reflow_history()
        elif problem == "sync-io":
            await self.autosave()
        elif problem == "gil-call":
            await self.update_voice_input()
        elif problem == "leaked-task":
            self.start_presence_poller()
        elif problem == "unretrieved-exception":
            self.prefetch_avatar()
            return  # the avatar task reports back itself
        elif problem == "widget-from-worker":
            assert self.worker is not None
            self.worker.refresh_badge()
            return  # the worker reports back itself
        self._injection_finished()

    async def refresh_presence(self) -> None:
        """Ask the server who is online; backs off between attempts."""
        self.statusBar().showMessage("Refreshing presence…")
        time.sleep(self.cfg.stall)  # CULPRIT: blocking-coro
        await asyncio.sleep(0)

    async def reflow_history(self) -> None:
        """Re-render the history after a font change, page by page — on the UI thread."""
        blocks = 0
        deadline = time.perf_counter() + self.cfg.stall  # the history is "that long"
        while time.perf_counter() < deadline:
            blocks += len(parse_markdown(self.history_page))
        self.statusBar().showMessage(f"Reflowed {blocks} blocks")

    async def autosave(self) -> None:
        written = self.store.save_sync(self.transcript.toPlainText(), self.cfg.stall)
        self.statusBar().showMessage(f"Autosaved ({written // 1024} KiB journal)")

    def poll_audio_device(self) -> bool:
        """The speech SDK's device poll: spins in C until the device is ready, holding the GIL."""
        ready_at = time.perf_counter() + self.cfg.stall
        return any(map(ready_at.__le__, iter(time.perf_counter, None)))  # CULPRIT: gil-call

    async def update_voice_input(self) -> None:
        ready = self.poll_audio_device()
        self.statusBar().showMessage("Microphone ready" if ready else "No microphone")

    def start_presence_poller(self) -> None:
        coro = self.poll_presence()
        task = asyncio.create_task(coro, name="leaky-poller")  # CULPRIT: leaked-task
        self.presence_poller = task  # kept, but never awaited or cancelled

    async def poll_presence(self) -> None:
        while True:
            await asyncio.sleep(0.05)

    def prefetch_avatar(self) -> None:
        asyncio.ensure_future(self.fetch_avatar())  # noqa: RUF006 -- fire and forget, on purpose

    async def fetch_avatar(self) -> None:
        try:
            await asyncio.sleep(0.01)
            raise ValueError("boom")  # CULPRIT: unretrieved-exception
        finally:
            self._injection_finished()


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(APP, "Chat client on qasync (sample app for looptools).", SUPPORTED, argv)
    app = QApplication.instance() or QApplication([sys.argv[0]])
    with tempfile.TemporaryDirectory(prefix="chat-qasync-") as folder:
        window = ChatWindow(cfg, TranscriptStore(Path(folder)))
        window.show()
        window.grab()  # first layout, font loading and paint happen before the loop runs
        app.processEvents()

        def on_sigint(signum: int, frame: FrameType | None) -> None:
            if window.loop is None:
                window.request_quit()
            elif not window.loop.is_closed():
                window.loop.call_soon_threadsafe(window.request_quit)

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            summary = qasync.run(window.run_session())
        finally:
            signal.signal(signal.SIGINT, previous)
        window.close()
        window.deleteLater()
    print(summary, flush=True)
    return end_as_asked(cfg)


if __name__ == "__main__":
    sys.exit(main())
