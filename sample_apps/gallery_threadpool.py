"""Photo gallery sample app: a Qt main thread with no asyncio loop, asyncio inside pool workers.

Architecture
    GalleryWindow (QMainWindow) runs a plain ``app.exec()``; the main thread never has an asyncio
    loop. A QTimer queues ThumbnailJob QRunnables on a QThreadPool; each job runs its own
    ``asyncio.run(...)`` to "download" a photo's tiles concurrently and renders a QImage, then
    hands it to the UI with a queued signal. A 16 ms QTimer refreshes the progress bar.

Problems ``blocking-slot``, ``cpu-parse``, ``sync-io`` and ``gil-call`` run in Qt slots on the
main thread (buttons clicked by a QTimer). ``blocking-coro``, ``leaked-task`` and
``unretrieved-exception`` run inside a pool worker's private asyncio loop (a "refetch" job),
because that is the only place this app has asyncio.

Run ``python sample_apps/gallery_threadpool.py --help`` for the command line (shared by all
sample apps). On exit it prints one line, e.g. ``gallery_threadpool: 24 thumbnails, 4 albums``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

try:
    from _common import AppConfig, announce_ready, end_as_asked, parse_args, warn
except ImportError:  # started with -m or runpy: make the sibling module importable
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import AppConfig, announce_ready, end_as_asked, parse_args, warn

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import (
    QObject,
    QRunnable,
    QSize,
    Qt,
    QThreadPool,
    QTimer,
    Signal,
    Slot,
)
from PySide6.QtGui import QColor, QIcon, QImage, QLinearGradient, QPainter, QPixmap
from PySide6.QtWidgets import (
    QApplication,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

APP = "gallery_threadpool"
SUPPORTED = (
    "blocking-slot",
    "cpu-parse",
    "sync-io",
    "gil-call",
    "blocking-coro",
    "leaked-task",
    "unretrieved-exception",
)
#: Problems injected on the Qt main thread; the others run in a pool worker's asyncio loop.
MAIN_THREAD_PROBLEMS = frozenset({"blocking-slot", "cpu-parse", "sync-io", "gil-call"})

ALBUMS = ("Holidays", "Family", "Garden", "City")
PHOTOS_PER_ALBUM = 6
THUMB_SIZE = 96
BATCH_SIZE = 6  # thumbnails queued per "scroll" tick
BATCH_INTERVAL_MS = 90
REFRESH_MS = 16
POOL_THREADS = 4

_O_DSYNC = getattr(os, "O_DSYNC", 0)
_PAGE = 64 * 1024


@dataclass(frozen=True)
class Photo:
    index: int
    album: str
    name: str
    hue: int


def photo_catalogue() -> list[Photo]:
    photos = []
    for a, album in enumerate(ALBUMS):
        for k in range(PHOTOS_PER_ALBUM):
            index = a * PHOTOS_PER_ALBUM + k
            photos.append(Photo(index, album, f"IMG_{4100 + index}.jpg", (index * 47) % 360))
    return photos


# --------------------------------------------------------------------------- metadata


def make_exif_block(photo_count: int) -> bytes:
    """A tag/length/value blob like the metadata section of a photo library file."""
    out = bytearray()
    for i in range(photo_count):
        for tag, value in (
            (0x010F, b"Pocket Camera"),
            (0x0110, f"Model {i % 7}".encode()),
            (0x9003, f"2024:07:{1 + i % 28:02d} 10:{i % 60:02d}:00".encode()),
            (0x829A, f"1/{60 + i % 200}".encode()),
        ):
            out += struct.pack(">HH", tag, len(value)) + value
    return bytes(out)


def parse_exif_block(blob: bytes) -> list[dict[int, str]]:  # CULPRIT: cpu-parse
    """Decode the tag/length/value records byte by byte (what a naive reader does)."""
    records: list[dict[int, str]] = []
    current: dict[int, str] = {}
    i = 0
    n = len(blob)
    while i + 4 <= n:
        tag = (blob[i] << 8) | blob[i + 1]
        length = (blob[i + 2] << 8) | blob[i + 3]
        i += 4
        chars = []
        for j in range(i, min(i + length, n)):
            byte = blob[j]
            chars.append(chr(byte) if 32 <= byte < 127 else "?")
        i += length
        if tag == 0x010F and current:
            records.append(current)
            current = {}
        current[tag] = "".join(chars)
    if current:
        records.append(current)
    return records


class AlbumStore:
    def __init__(self, folder: Path) -> None:
        self.path = folder / "albums.db"

    def save_sync(self, names: list[str], seconds: float) -> int:
        """Write the album database durably, page by page (O_DSYNC), then verify it."""
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
            raise OSError("album database is corrupt")
        return written


# --------------------------------------------------------------------------- pool workers


class ThumbnailSignals(QObject):
    """Lives in the main thread; workers emit, the window receives through a queued connection."""

    thumbnail_ready = Signal(int, QImage, str)
    refetch_done = Signal(str)
    job_failed = Signal(int, str)


class ThumbnailJob(QRunnable):
    """Fetches one photo's tiles with asyncio (in the pool thread) and renders a thumbnail."""

    def __init__(self, photo: Photo, signals: ThumbnailSignals, stall: float,
                 problem: str | None = None) -> None:
        super().__init__()
        self.setAutoDelete(True)
        self.photo = photo
        self.signals = signals
        self.stall = stall
        self.problem = problem
        self.cdn_poller: asyncio.Task[None] | None = None

    def run(self) -> None:
        try:
            image, caption = asyncio.run(self.fetch())
        except Exception as exc:  # report, never let an exception escape into Qt
            self.signals.job_failed.emit(self.photo.index, repr(exc))
            if self.problem is not None:
                self.signals.refetch_done.emit(self.problem)
            return
        if self.problem is None:
            self.signals.thumbnail_ready.emit(self.photo.index, image, caption)
        else:
            self.signals.refetch_done.emit(self.problem)

    async def fetch(self) -> tuple[QImage, str]:
        if self.problem == "blocking-coro":
            await self.wait_for_cdn_slot()
        elif self.problem == "leaked-task":
            self.start_cdn_poller()
        elif self.problem == "unretrieved-exception":
            self.prefetch_exif()
        tiles = await asyncio.gather(*(self.fetch_tile(t) for t in range(4)))
        image = render_thumbnail(self.photo, tiles)
        return image, f"{self.photo.name}\n{self.photo.album}"

    async def fetch_tile(self, tile: int) -> int:
        await asyncio.sleep(0.01 + 0.005 * ((self.photo.index + tile) % 4))
        return (self.photo.hue + 40 * tile) % 360

    async def wait_for_cdn_slot(self) -> None:
        """The CDN rate-limits refetches; this waits for a slot the wrong way."""
        time.sleep(self.stall)  # CULPRIT: blocking-coro
        await asyncio.sleep(0)

    def start_cdn_poller(self) -> None:
        coro = self.poll_cdn()
        task = asyncio.create_task(coro, name="leaky-poller")  # CULPRIT: leaked-task
        self.cdn_poller = task  # kept, but never awaited or cancelled

    async def poll_cdn(self) -> None:
        while True:
            await asyncio.sleep(0.05)

    def prefetch_exif(self) -> None:
        asyncio.ensure_future(self.fetch_exif())  # noqa: RUF006 -- fire and forget, on purpose

    async def fetch_exif(self) -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")  # CULPRIT: unretrieved-exception


def render_thumbnail(photo: Photo, tile_hues: list[int]) -> QImage:
    """Paint a thumbnail from the tile colours (QImage painting is fine off the GUI thread)."""
    image = QImage(THUMB_SIZE, THUMB_SIZE, QImage.Format.Format_ARGB32_Premultiplied)
    image.fill(QColor.fromHsv(photo.hue, 60, 240))
    painter = QPainter(image)
    half = THUMB_SIZE // 2
    for t, hue in enumerate(tile_hues):
        gradient = QLinearGradient(0, 0, half, half)
        gradient.setColorAt(0.0, QColor.fromHsv(hue, 200, 250))
        gradient.setColorAt(1.0, QColor.fromHsv(hue, 255, 120))
        painter.fillRect((t % 2) * half, (t // 2) * half, half, half, gradient)
    painter.end()
    return image


# --------------------------------------------------------------------------- the window


class GalleryWindow(QMainWindow):
    def __init__(self, cfg: AppConfig, app: QApplication, store: AlbumStore) -> None:
        super().__init__()
        self.cfg = cfg
        self.app = app
        self.store = store
        self.photos = photo_catalogue()
        self.setWindowTitle("Gallery")
        self.resize(900, 640)

        self.grid = QListWidget()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setIconSize(QSize(THUMB_SIZE, THUMB_SIZE))
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setUniformItemSizes(True)
        self.progress = QProgressBar()
        self.progress.setRange(0, len(self.photos))
        self.info_label = QLabel("")
        self.sync_button = QPushButton("Sync")
        self.info_button = QPushButton("Show info")
        self.save_button = QPushButton("Save albums")
        self.camera_button = QPushButton("Import from camera")

        buttons = QHBoxLayout()
        for button in (self.sync_button, self.info_button, self.save_button, self.camera_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        buttons.addWidget(self.progress)
        column = QVBoxLayout()
        column.addLayout(buttons)
        column.addWidget(self.grid, 1)
        column.addWidget(self.info_label)
        central = QWidget()
        central.setLayout(column)
        self.setCentralWidget(central)
        self.statusBar().showMessage("Loading library…")

        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(POOL_THREADS)
        self.signals = ThumbnailSignals()
        conn = Qt.ConnectionType.QueuedConnection
        self.signals.thumbnail_ready.connect(self.on_thumbnail_ready, conn)
        self.signals.refetch_done.connect(self.on_refetch_done, conn)
        self.signals.job_failed.connect(self.on_job_failed, conn)

        self.sync_button.clicked.connect(self.on_sync_clicked)
        self.info_button.clicked.connect(self.on_info_clicked)
        self.save_button.clicked.connect(self.on_save_albums_clicked)
        self.camera_button.clicked.connect(self.on_import_clicked)

        self.refresh_timer = QTimer(self)
        self.refresh_timer.setInterval(REFRESH_MS)
        self.refresh_timer.timeout.connect(self.on_refresh_tick)
        self.batch_timer = QTimer(self)
        self.batch_timer.setInterval(BATCH_INTERVAL_MS)
        self.batch_timer.timeout.connect(self.on_batch_tick)

        self.queued = 0
        self.thumbnails: dict[int, QListWidgetItem] = {}
        self.failures = 0
        self.injections_left = len(cfg.injection_times()) * len(cfg.problems)
        self.deadline_passed = False
        self.interrupted = False
        self.announced_ready = False
        self.started = time.monotonic()

        # One page of the library's metadata (~2 ms to parse).
        self.exif_page = make_exif_block(48)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.started = time.monotonic()
        self.refresh_timer.start()
        self.batch_timer.start()
        self.on_batch_tick()
        for when in self.cfg.injection_times():
            self._single_shot(when, self.on_housekeeping_timer)
        if self.cfg.duration > 0:
            self._single_shot(self.cfg.duration, self.on_duration_elapsed)

    def _single_shot(self, seconds: float, slot: object) -> None:
        """A precise one-off QTimer owned by the window (its timeout is a plain Qt slot)."""
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setTimerType(Qt.TimerType.PreciseTimer)
        timer.timeout.connect(slot)
        timer.start(round(seconds * 1000))

    @Slot()
    def on_duration_elapsed(self) -> None:
        self.deadline_passed = True
        self._single_shot(30.0, self.on_drain_timeout)
        self.maybe_quit()

    @Slot()
    def on_drain_timeout(self) -> None:
        warn(self.cfg, "gave up waiting for thumbnails")
        self.app.quit()

    def request_quit(self) -> None:
        """SIGINT. Quit through the event queue: a quit() made before ``app.exec()`` runs
        (the signal landed between installing the handler and entering the loop) is lost."""
        self.interrupted = True
        QTimer.singleShot(0, self.app.quit)

    def work_finished(self) -> bool:
        return (
            len(self.thumbnails) + self.failures == len(self.photos)
            and self.injections_left <= 0
        )

    def maybe_quit(self) -> None:
        if not self.work_finished():
            return
        if not self.announced_ready:  # --end-with sigint|sigterm: the summary is final now
            self.announced_ready = True
            announce_ready(self.cfg)
        if self.deadline_passed:
            self.app.quit()

    def shutdown(self) -> str:
        self.refresh_timer.stop()
        self.batch_timer.stop()
        self.pool.waitForDone(10_000)  # the loop has stopped: waiting here stalls nothing
        albums = len({self.photos[i].album for i in self.thumbnails})
        failed = f", {self.failures} failed" if self.failures else ""
        return f"{APP}: {len(self.thumbnails)} thumbnails, {albums} albums{failed}"

    # ------------------------------------------------------------------ thumbnails

    @Slot()
    def on_batch_tick(self) -> None:
        """The user "scrolls": queue the next batch of thumbnails."""
        for photo in self.photos[self.queued:self.queued + BATCH_SIZE]:
            self.pool.start(ThumbnailJob(photo, self.signals, self.cfg.stall))
        self.queued = min(len(self.photos), self.queued + BATCH_SIZE)
        if self.queued >= len(self.photos):
            self.batch_timer.stop()

    @Slot(int, QImage, str)
    def on_thumbnail_ready(self, index: int, image: QImage, caption: str) -> None:
        item = QListWidgetItem(QIcon(QPixmap.fromImage(image)), caption)
        self.grid.addItem(item)
        self.thumbnails[index] = item
        self.maybe_quit()

    @Slot(int, str)
    def on_job_failed(self, index: int, error: str) -> None:
        warn(self.cfg, f"thumbnail {index} failed: {error}")
        if index >= 0:
            self.failures += 1
        self.maybe_quit()

    @Slot(str)
    def on_refetch_done(self, problem: str) -> None:
        self.injections_left -= 1
        self.maybe_quit()

    @Slot()
    def on_refresh_tick(self) -> None:
        done = len(self.thumbnails)
        if self.progress.value() != done:
            self.progress.setValue(done)
            self.statusBar().showMessage(f"{done} of {len(self.photos)} thumbnails")

    # ------------------------------------------------------------------ housekeeping (problems)

    @Slot()
    def on_housekeeping_timer(self) -> None:
        """Scheduled housekeeping; this is where the problems are injected."""
        buttons = {
            "blocking-slot": self.sync_button,
            "cpu-parse": self.info_button,
            "sync-io": self.save_button,
            "gil-call": self.camera_button,
        }
        for problem in sorted(self.cfg.problems):
            if problem in MAIN_THREAD_PROBLEMS:
                buttons[problem].click()
                self.injections_left -= 1
            else:
                photo = Photo(-1, self.photos[0].album, self.photos[0].name, self.photos[0].hue)
                self.pool.start(ThumbnailJob(photo, self.signals, self.cfg.stall, problem))
        self.maybe_quit()

    @Slot()
    def on_sync_clicked(self) -> None:
        self.statusBar().showMessage("Syncing with the phone…")
        if self.cfg.has("blocking-slot"):
            # Waits for the phone to acknowledge, on the UI thread.
            time.sleep(self.cfg.stall)  # CULPRIT: blocking-slot
        self.statusBar().showMessage("Synced")

    @Slot()
    def on_info_clicked(self) -> None:
        """Show library statistics, decoding the metadata page by page on the UI thread."""
        records = 0
        seconds = self.cfg.stall if self.cfg.has("cpu-parse") else 0.0
        deadline = time.perf_counter() + seconds  # the library is "that big"
        while True:
            records += len(parse_exif_block(self.exif_page))
            if time.perf_counter() >= deadline:
                break
        self.info_label.setText(f"{records} photos with metadata")

    @Slot()
    def on_save_albums_clicked(self) -> None:
        seconds = self.cfg.stall if self.cfg.has("sync-io") else 0.0
        written = self.store.save_sync([p.name for p in self.photos], seconds)
        self.statusBar().showMessage(f"Saved albums ({written // 1024} KiB)")

    def wait_for_camera(self) -> bool:
        """The camera SDK's ready poll: spins in C until the camera answers, holding the GIL."""
        seconds = self.cfg.stall if self.cfg.has("gil-call") else 0.0
        answered_at = time.perf_counter() + seconds
        return any(map(answered_at.__le__, iter(time.perf_counter, None)))  # CULPRIT: gil-call

    @Slot()
    def on_import_clicked(self) -> None:
        connected = self.wait_for_camera()
        self.statusBar().showMessage("Camera connected" if connected else "No camera")


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(APP, "Photo gallery: Qt main thread, asyncio in QThreadPool workers "
                     "(sample app for looptools).", SUPPORTED, argv)
    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication([sys.argv[0]])
    with tempfile.TemporaryDirectory(prefix="gallery-threadpool-") as folder:
        window = GalleryWindow(cfg, app, AlbumStore(Path(folder)))
        window.show()
        window.grab()  # first layout, font loading and paint happen before the loop runs
        app.processEvents()

        def on_sigint(signum: int, frame: FrameType | None) -> None:
            window.request_quit()

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            window.start()
            app.exec()
        finally:
            signal.signal(signal.SIGINT, previous)
        summary = window.shutdown()
        window.close()
        window.deleteLater()
    print(summary, flush=True)
    return end_as_asked(cfg)


if __name__ == "__main__":
    sys.exit(main())
