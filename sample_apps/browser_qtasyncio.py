"""File browser sample app: PySide6 widgets on PySide6.QtAsyncio (Qt and asyncio on one thread).

Architecture
    BrowserWindow (QMainWindow) runs under ``PySide6.QtAsyncio.run(keep_running=False,
    quit_qapp=True)``. It lists a workspace folder it creates in a QTreeWidget and shows file
    previews in a side pane. A QTimer "download" writes new files into the folder; the
    QFileSystemWatcher ``directoryChanged`` signal starts an asyncio rescan task, which scans the
    folder and loads previews with ``run_in_executor``.

Run ``python sample_apps/browser_qtasyncio.py --help`` for the command line (shared by all sample
apps). On exit it prints one line: ``browser_qtasyncio: 14 files, 14 previews, 6 downloads, 661
bytes``.

Problems: ``blocking-slot`` is the "Properties" button's slot (clicked by a QTimer); all the
others are injected by the ``run_maintenance`` housekeeping coroutine. QtAsyncio's default
exception handler prints to stdout (and reports every cancelled task), so the app installs one
that logs real errors to stderr.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from types import FrameType
from typing import Any

try:
    from _common import AppConfig, end_as_asked, parse_args, wait_for_quit
except ImportError:  # started with -m or runpy: make the sibling module importable
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import AppConfig, end_as_asked, parse_args, wait_for_quit

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import PySide6.QtAsyncio as QtAsyncio
from PySide6.QtCore import QFileSystemWatcher, Qt, QTimer, Slot
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

APP = "browser_qtasyncio"
SUPPORTED = (
    "blocking-slot",
    "blocking-coro",
    "cpu-parse",
    "sync-io",
    "gil-call",
    "leaked-task",
    "unretrieved-exception",
)

log = logging.getLogger(APP)

#: Files the workspace starts with: name -> contents.
SEED_FILES: dict[str, str] = {
    "README.md": "# Quarterly report\nDrafts, data and scripts for the **Q3** report.\n",
    "notes.md": "## Meeting notes\n- ship the *browser* preview\n- fix `sync` on resume\n",
    "budget.csv": "team,q1,q2,q3\nplatform,120,135,150\ndesktop,80,95,90\nweb,60,70,85\n",
    "headcount.csv": "team,people\nplatform,12\ndesktop,7\nweb,9\n",
    "build.py": "import sys\n\n\ndef main() -> int:\n    return 0\n\n\nsys.exit(main())\n",
    "todo.txt": "review charts\nexport PDF\nsend to finance\n",
    "chart-data.csv": "month,revenue\njul,410\naug,432\nsep,455\n",
    "summary.txt": "Revenue grew 11% quarter on quarter.\n",
}

#: Files that "arrive" while the app runs (written by the app itself on a timer).
DOWNLOADS: tuple[tuple[str, str], ...] = (
    ("invoice-0101.csv", "item,amount\nlicences,1200\nsupport,300\n"),
    ("invoice-0102.csv", "item,amount\nhosting,640\n"),
    ("minutes.md", "# Minutes\n- budget **approved**\n- next review in October\n"),
    ("logo-notes.txt", "Use the blue logo on dark backgrounds.\n"),
    ("forecast.csv", "month,revenue\noct,470\nnov,490\ndec,520\n"),
    ("handover.md", "## Handover\nAll scripts live in `build.py`.\n"),
)

DOWNLOAD_INTERVAL_MS = 110
CLOCK_MS = 100  # status-bar clock; also lets Python signal handlers run
PREVIEW_BYTES = 4096

_O_DSYNC = getattr(os, "O_DSYNC", 0)
_PAGE = 64 * 1024


# --------------------------------------------------------------------------- file helpers


def scan_directory(folder: Path) -> list[tuple[str, int]]:
    """List (name, size) of the regular files in ``folder``, sorted by name."""
    with os.scandir(folder) as entries:
        return sorted((e.name, e.stat().st_size) for e in entries if e.is_file())


def parse_csv_table(text: str) -> list[list[str]]:  # CULPRIT: cpu-parse
    """Parse CSV with quoting, character by character (the preview needs no dialect sniffing)."""
    rows: list[list[str]] = []
    row: list[str] = []
    field: list[str] = []
    quoted = False
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if quoted:
            if ch == '"':
                if i + 1 < n and text[i + 1] == '"':
                    field.append('"')
                    i += 1
                else:
                    quoted = False
            else:
                field.append(ch)
        elif ch == '"':
            quoted = True
        elif ch == ",":
            row.append("".join(field).strip())
            field = []
        elif ch == "\n":
            row.append("".join(field).strip())
            rows.append(row)
            row, field = [], []
        elif ch != "\r":
            field.append(ch)
        i += 1
    if field or row:
        row.append("".join(field).strip())
        rows.append(row)
    return rows


def load_preview(path: Path) -> str:
    """Read the head of a file and render a short text preview (runs in the executor)."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        text = fh.read(PREVIEW_BYTES)
    if path.suffix == ".csv":
        rows = parse_csv_table(text)
        widths = [max(len(r[c]) for r in rows if c < len(r)) for c in range(len(rows[0]))]
        return "\n".join(
            "  ".join(cell.ljust(widths[c]) for c, cell in enumerate(r)) for r in rows
        )
    return text


class IndexStore:
    """Keeps the browser's search index in the workspace's hidden cache folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "search.index"

    def save_sync(self, names: list[str], seconds: float) -> int:
        """Write the index durably, page by page (O_DSYNC), then verify the first page."""
        page = "\n".join(names).encode("utf-8").ljust(_PAGE, b"\0")[:_PAGE]
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | _O_DSYNC, 0o644)
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
            raise OSError("search index is corrupt")
        return written


# --------------------------------------------------------------------------- the window


class BrowserWindow(QMainWindow):
    def __init__(self, cfg: AppConfig, workspace: Path, cache: Path) -> None:
        super().__init__()
        self.cfg = cfg
        self.workspace = workspace
        self.index = IndexStore(cache)
        self.setWindowTitle(f"Files — {workspace.name}")
        self.resize(960, 620)

        self.tree = QTreeWidget()
        self.tree.setColumnCount(2)
        self.tree.setHeaderLabels(["Name", "Size"])
        self.tree.setRootIsDecorated(False)
        self.tree.setSortingEnabled(True)
        self.tree.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.preview_title = QLabel("No file selected")
        self.preview = QPlainTextEdit(readOnly=True)
        self.refresh_button = QPushButton("Refresh")
        self.properties_button = QPushButton("Properties")

        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.addWidget(self.preview_title)
        right_layout.addWidget(self.preview, 1)
        splitter = QSplitter()
        splitter.addWidget(self.tree)
        splitter.addWidget(right)
        splitter.setSizes([380, 580])
        buttons = QHBoxLayout()
        buttons.addWidget(self.refresh_button)
        buttons.addWidget(self.properties_button)
        buttons.addStretch(1)
        column = QVBoxLayout()
        column.addLayout(buttons)
        column.addWidget(splitter, 1)
        central = QWidget()
        central.setLayout(column)
        self.setCentralWidget(central)
        self.statusBar().showMessage("Opening workspace…")

        self.watcher = QFileSystemWatcher([str(workspace)], self)
        self.watcher.directoryChanged.connect(self.on_directory_changed)
        self.tree.currentItemChanged.connect(self.on_current_item_changed)
        self.refresh_button.clicked.connect(self.on_refresh_clicked)
        self.properties_button.clicked.connect(self.on_properties_clicked)

        self.download_timer = QTimer(self)
        self.download_timer.setInterval(DOWNLOAD_INTERVAL_MS)
        self.download_timer.timeout.connect(self.on_download_tick)
        self.clock_timer = QTimer(self)
        self.clock_timer.setInterval(CLOCK_MS)
        self.clock_timer.timeout.connect(self.on_clock_tick)

        self.items: dict[str, QTreeWidgetItem] = {}
        self.sizes: dict[str, int] = {}
        self.previews: dict[str, str] = {}
        self.loading: set[str] = set()
        self.downloads = 0
        self.rescans = 0
        self.rescan_task: asyncio.Future[Any] | None = None
        self.rescan_again = False
        self.background: set[asyncio.Future[Any]] = set()
        self.injections_left = len(cfg.injection_times()) * len(cfg.problems)
        self.quit_requested: asyncio.Event | None = None
        self.quit_pending = False
        self.work_done: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started = time.monotonic()
        self.mount_poller: Any = None

        # One chunk of the spreadsheets being indexed (~2 ms to parse).
        self.csv_chunk = "".join(t for name, t in SEED_FILES.items() if name.endswith(".csv")) * 40

    @property
    def expected_files(self) -> int:
        return len(SEED_FILES) + len(DOWNLOADS)

    # ------------------------------------------------------------------ lifecycle

    async def run_session(self) -> str:
        """The main coroutine: browse, wait for the deadline, shut down."""
        self.loop = asyncio.get_running_loop()
        self.loop.set_exception_handler(self.on_loop_exception)
        self.quit_requested = asyncio.Event()
        self.work_done = asyncio.Event()
        self.started = time.monotonic()

        self.clock_timer.start()
        self.download_timer.start()
        self._spawn(self.run_maintenance())
        if self.cfg.has("blocking-slot"):
            for when in self.cfg.injection_times():
                self._single_shot(when, self.properties_button.click)
        self.request_rescan()

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
        await wait_for_quit(self.cfg, self.quit_requested, self.work_done, "downloads and previews")

    async def shutdown(self) -> str:
        self.download_timer.stop()
        self.clock_timer.stop()
        self.watcher.removePaths(self.watcher.directories())
        for task in list(self.background):
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        self.statusBar().showMessage("Closed")
        total = sum(self.sizes.values())
        return (
            f"{APP}: {len(self.items)} files, {len(self.previews)} previews, "
            f"{self.downloads} downloads, {total} bytes"
        )

    def on_loop_exception(self, *args: Any) -> None:
        """Loop exception handler. QtAsyncio passes only the context; asyncio passes both."""
        context: dict[str, Any] = args[-1]
        exc = context.get("exception")
        if isinstance(exc, asyncio.CancelledError):
            return  # QtAsyncio reports every cancelled task here
        task = context.get("task")
        name = task.get_name() if task is not None else "?"
        log.error("%s (task %s): %r", context.get("message") or "loop error", name, exc,
                  exc_info=exc if isinstance(exc, BaseException) else None)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    def _single_shot(self, seconds: float, slot: Any) -> None:
        """A precise one-off QTimer owned by the window (its timeout is a plain Qt slot)."""
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setTimerType(Qt.TimerType.PreciseTimer)
        timer.timeout.connect(slot)
        timer.start(round(seconds * 1000))

    def _check_done(self) -> None:
        if (
            self.work_done is not None
            and self.downloads == len(DOWNLOADS)
            and len(self.items) == self.expected_files
            and len(self.previews) == self.expected_files
            and self.injections_left <= 0
        ):
            self.work_done.set()

    def _injection_finished(self) -> None:
        self.injections_left -= 1
        self._check_done()

    # ------------------------------------------------------------------ browsing

    @Slot()
    def on_download_tick(self) -> None:
        """A download finished: the app writes the file into the watched folder."""
        if self.downloads >= len(DOWNLOADS):
            self.download_timer.stop()
            return
        name, text = DOWNLOADS[self.downloads]
        (self.workspace / name).write_text(text, encoding="utf-8")
        self.downloads += 1
        self.statusBar().showMessage(f"Downloaded {name}")
        if self.downloads == len(DOWNLOADS):
            # Belt and braces: if the watcher coalesced away the last change, "press" Refresh.
            self._single_shot(0.3, self.on_downloads_settled)

    @Slot()
    def on_downloads_settled(self) -> None:
        if len(self.items) < self.expected_files:
            self.refresh_button.click()

    @Slot(str)
    def on_directory_changed(self, path: str) -> None:
        self.request_rescan()

    @Slot()
    def on_refresh_clicked(self) -> None:
        self.request_rescan()

    def request_rescan(self) -> None:
        """Start a rescan task, or ask the running one to go again (changes coalesce)."""
        if self.rescan_task is not None and not self.rescan_task.done():
            self.rescan_again = True
            return
        self.rescan_task = self._spawn(self.rescan())

    async def rescan(self) -> None:
        assert self.loop is not None
        while True:
            self.rescan_again = False
            self.rescans += 1
            entries = await self.loop.run_in_executor(None, scan_directory, self.workspace)
            for name, size in entries:
                if name not in self.items:
                    item = QTreeWidgetItem([name, f"{size:,} B"])
                    item.setData(1, Qt.ItemDataRole.TextAlignmentRole,
                                 int(Qt.AlignmentFlag.AlignRight))
                    self.tree.addTopLevelItem(item)
                    self.items[name] = item
                    self.tree.setCurrentItem(item)
                self.sizes[name] = size
            self.statusBar().showMessage(f"{len(self.items)} files")
            self._check_done()
            if not self.rescan_again:
                return

    @Slot(QTreeWidgetItem, QTreeWidgetItem)
    def on_current_item_changed(self, current: QTreeWidgetItem | None,
                                previous: QTreeWidgetItem | None) -> None:
        if current is None:
            return
        name = current.text(0)
        self.preview_title.setText(name)
        if name in self.previews:
            self.preview.setPlainText(self.previews[name])
        elif name not in self.loading:
            self.loading.add(name)
            self._spawn(self.show_preview(name))

    async def show_preview(self, name: str) -> None:
        assert self.loop is not None
        try:
            text = await self.loop.run_in_executor(None, load_preview, self.workspace / name)
        finally:
            self.loading.discard(name)
        self.previews[name] = text
        current = self.tree.currentItem()
        if current is not None and current.text(0) == name:
            self.preview.setPlainText(text)
        self._check_done()

    @Slot()
    def on_clock_tick(self) -> None:
        elapsed = time.monotonic() - self.started
        self.statusBar().showMessage(
            f"{len(self.items)} files · {len(self.previews)} previews · {elapsed:4.1f} s"
        )

    @Slot()
    def on_properties_clicked(self) -> None:
        self.statusBar().showMessage("Reading properties…")
        if self.cfg.has("blocking-slot"):
            # Waits for the network share to report quota, on the UI thread.
            time.sleep(self.cfg.stall)  # CULPRIT: blocking-slot
            self._injection_finished()
        total = sum(self.sizes.values())
        self.statusBar().showMessage(f"{len(self.items)} files, {total:,} bytes")

    # ------------------------------------------------------------------ housekeeping (problems)

    async def run_maintenance(self) -> None:
        """Periodic housekeeping; this is where the coroutine-side problems are injected."""
        for when in self.cfg.injection_times():
            await asyncio.sleep(max(0.0, self.started + when - time.monotonic()))
            for problem in sorted(self.cfg.problems - {"blocking-slot"}):
                await self.run_housekeeping_step(problem)

    async def run_housekeeping_step(self, problem: str) -> None:
        if problem == "blocking-coro":
            await self.refresh_mounts()
        elif problem == "cpu-parse":
            await self.rebuild_spreadsheet_index()
        elif problem == "sync-io":
            await self.save_search_index()
        elif problem == "gil-call":
            await self.refresh_volume_status()
        elif problem == "leaked-task":
            self.start_mount_poller()
        elif problem == "unretrieved-exception":
            self.prefetch_thumbnails()
            return  # the prefetch task reports back itself
        self._injection_finished()

    async def refresh_mounts(self) -> None:
        """Re-check the mounted network shares (with a "short" retry delay)."""
        time.sleep(self.cfg.stall)  # CULPRIT: blocking-coro
        await asyncio.sleep(0)

    async def rebuild_spreadsheet_index(self) -> None:
        """Index every CSV row for search, chunk by chunk — on the UI thread."""
        rows = 0
        deadline = time.perf_counter() + self.cfg.stall  # the spreadsheets are "that big"
        while time.perf_counter() < deadline:
            rows += len(parse_csv_table(self.csv_chunk))
        self.statusBar().showMessage(f"Indexed {rows} rows")

    async def save_search_index(self) -> None:
        written = self.index.save_sync(sorted(self.items), self.cfg.stall)
        self.statusBar().showMessage(f"Saved index ({written // 1024} KiB)")

    def probe_volume(self) -> bool:
        """The volume-probe binding spins in C until the drive answers, holding the GIL."""
        answered_at = time.perf_counter() + self.cfg.stall
        return any(map(answered_at.__le__, iter(time.perf_counter, None)))  # CULPRIT: gil-call

    async def refresh_volume_status(self) -> None:
        online = self.probe_volume()
        self.statusBar().showMessage("Volume online" if online else "Volume offline")

    def start_mount_poller(self) -> None:
        coro = self.poll_mounts()
        task = asyncio.create_task(coro, name="leaky-poller")  # CULPRIT: leaked-task
        self.mount_poller = task  # kept, but never awaited or cancelled

    async def poll_mounts(self) -> None:
        while True:
            await asyncio.sleep(0.05)

    def prefetch_thumbnails(self) -> None:
        asyncio.ensure_future(self.fetch_thumbnails())  # noqa: RUF006 -- fire and forget, on purpose

    async def fetch_thumbnails(self) -> None:
        try:
            await asyncio.sleep(0.01)
            raise ValueError("boom")  # CULPRIT: unretrieved-exception
        finally:
            self._injection_finished()


# --------------------------------------------------------------------------- entry point


def create_workspace(root: Path) -> tuple[Path, Path]:
    workspace = root / "Quarterly report"
    cache = root / ".cache"
    workspace.mkdir()
    cache.mkdir()
    for name, text in SEED_FILES.items():
        (workspace / name).write_text(text, encoding="utf-8")
    return workspace, cache


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(APP, "File browser on PySide6.QtAsyncio (sample app for looptools).",
                     SUPPORTED, argv)
    logging.basicConfig(stream=sys.stderr, format="%(name)s: %(levelname)s: %(message)s")
    app = QApplication.instance() or QApplication([sys.argv[0]])
    with tempfile.TemporaryDirectory(prefix="browser-qtasyncio-") as root:
        workspace, cache = create_workspace(Path(root))
        window = BrowserWindow(cfg, workspace, cache)
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
            summary = QtAsyncio.run(window.run_session(), keep_running=False, quit_qapp=True)
        finally:
            signal.signal(signal.SIGINT, previous)
        window.close()
        window.deleteLater()
    print(summary, flush=True)
    return end_as_asked(cfg)


if __name__ == "__main__":
    sys.exit(main())
