"""Log-ingest pipeline sample app: plain asyncio, no Qt.

Architecture
    ``asyncio.run(main())``. A LogSource async generator emits batches of syslog-style lines into
    a bounded ``asyncio.Queue``; three IngestWorker tasks parse records, count them per service
    and level, and hand full segments to ``asyncio.to_thread`` to be compressed and written. A
    Reporter task logs throughput every 250 ms (on stderr, at DEBUG only).

Run ``python sample_apps/pipeline_asyncio.py --help`` for the command line (shared by all sample
apps; ``blocking-slot`` is rejected because there is no Qt here). On exit it prints one line,
``pipeline_asyncio: 720 records, 6 segments, 72 errors, 5 services``.

Problems are injected by the ``run_maintenance`` housekeeping coroutine.
"""

from __future__ import annotations

import asyncio
import gzip
import logging
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Coroutine
from pathlib import Path
from typing import Any

try:
    from _common import AppConfig, end_as_asked, parse_args, wait_for_quit
except ImportError:  # started with -m or runpy: make the sibling module importable
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import AppConfig, end_as_asked, parse_args, wait_for_quit

APP = "pipeline_asyncio"
SUPPORTED = (
    "blocking-coro",
    "cpu-parse",
    "sync-io",
    "gil-call",
    "leaked-task",
    "unretrieved-exception",
)
UNSUPPORTED_REASONS = {"blocking-slot": "it has no Qt event loop, so there are no Qt slots"}

log = logging.getLogger(APP)

SERVICES = ("auth", "billing", "search", "gateway", "mailer")
LEVELS = ("INFO", "INFO", "INFO", "WARN", "INFO", "DEBUG", "INFO", "INFO", "INFO", "ERROR")
BATCHES = 24
BATCH_SIZE = 30
BATCH_INTERVAL = 0.03  # seconds between batches from the source
SEGMENT_RECORDS = 120
WORKERS = 3
REPORT_INTERVAL = 0.25

_O_DSYNC = getattr(os, "O_DSYNC", 0)
_PAGE = 64 * 1024


# --------------------------------------------------------------------------- parsing


def make_line(seq: int) -> str:
    service = SERVICES[seq % len(SERVICES)]
    level = LEVELS[(seq * 7) % len(LEVELS)]
    return (
        f"2024-09-{1 + seq % 28:02d}T12:{seq % 60:02d}:{(seq * 13) % 60:02d}Z host-{seq % 4} "
        f'{service}[{1000 + seq % 97}]: {level} request_id={seq:06d} latency_ms={seq % 250} '
        f'msg="handled {service} request {seq}"'
    )


def parse_record(line: str) -> tuple[str, str, int]:
    """Cheap parse of one line: (service, level, latency)."""
    _, _, proc, level, *rest = line.split(" ", 5)
    latency = 0
    for part in rest[0].split(" "):
        if part.startswith("latency_ms="):
            latency = int(part[11:])
    return proc.split("[", 1)[0], level, latency


def parse_syslog_batch(text: str) -> list[dict[str, str]]:  # CULPRIT: cpu-parse
    """Full key=value parse of many lines, character by character (used for re-indexing)."""
    records: list[dict[str, str]] = []
    for line in text.splitlines():
        fields: dict[str, str] = {}
        key: list[str] = []
        value: list[str] = []
        in_value = quoted = False
        for ch in line:
            if in_value:
                if ch == '"':
                    quoted = not quoted
                elif ch == " " and not quoted:
                    fields["".join(key)] = "".join(value)
                    key, value, in_value = [], [], False
                else:
                    value.append(ch)
            elif ch == "=":
                in_value = True
            elif ch == " ":
                key = []
            else:
                key.append(ch)
        if in_value:
            fields["".join(key)] = "".join(value)
        records.append(fields)
    return records


# --------------------------------------------------------------------------- pipeline parts


async def log_source(batches: int) -> AsyncIterator[list[str]]:
    """Simulated tail of a remote log stream."""
    seq = 0
    for _ in range(batches):
        await asyncio.sleep(BATCH_INTERVAL)
        yield [make_line(seq + i) for i in range(BATCH_SIZE)]
        seq += BATCH_SIZE


def write_segment(path: Path, lines: list[str]) -> int:
    """Compress and write one segment (runs in a worker thread)."""
    data = gzip.compress("\n".join(lines).encode("utf-8"), compresslevel=6)
    path.write_bytes(data)
    return len(data)


class SegmentStore:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.checkpoint_path = folder / "checkpoint.dat"

    def checkpoint_sync(self, state: str, seconds: float) -> int:
        """Persist the ingest checkpoint durably, page by page (O_DSYNC), then verify it."""
        page = state.encode("utf-8").ljust(_PAGE, b"\0")[:_PAGE]
        fd = os.open(self.checkpoint_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | _O_DSYNC, 0o644)
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
            raise OSError("checkpoint is corrupt")
        return written


class Pipeline:
    def __init__(self, cfg: AppConfig, store: SegmentStore) -> None:
        self.cfg = cfg
        self.store = store
        self.queue: asyncio.Queue[str | None] | None = None
        self.by_service: Counter[str] = Counter()
        self.by_level: Counter[str] = Counter()
        self.records = 0
        self.segments = 0
        self.segment_bytes = 0
        self.pending_segment: list[str] = []
        self.segment_lock: asyncio.Lock | None = None
        self.background: set[asyncio.Future[Any]] = set()
        self.injections_left = len(cfg.injection_times()) * len(cfg.problems)
        self.quit_requested: asyncio.Event | None = None
        self.work_done: asyncio.Event | None = None
        self.source_done = False
        self.started = time.monotonic()
        self.geo_poller: asyncio.Task[None] | None = None

        # One block of the replay buffer (~2 ms to parse).
        self.replay_block = "\n".join(make_line(i) for i in range(250)) + "\n"

    # ------------------------------------------------------------------ lifecycle

    async def run(self) -> str:
        loop = asyncio.get_running_loop()
        self.queue = asyncio.Queue(maxsize=100)
        self.segment_lock = asyncio.Lock()
        self.quit_requested = asyncio.Event()
        self.work_done = asyncio.Event()
        self.started = time.monotonic()
        loop.add_signal_handler(signal.SIGINT, self.quit_requested.set)
        try:
            producer = self._spawn(self.produce())
            workers = [self._spawn(self.ingest_worker(i)) for i in range(WORKERS)]
            self._spawn(self.report_progress())
            self._spawn(self.run_maintenance())
            self._spawn(self.wait_for_drain(producer, workers))
            await self._wait_for_quit()
            return await self.shutdown()
        finally:
            loop.remove_signal_handler(signal.SIGINT)

    async def _wait_for_quit(self) -> None:
        assert self.quit_requested is not None and self.work_done is not None
        await wait_for_quit(self.cfg, self.quit_requested, self.work_done, "the pipeline to drain")

    async def shutdown(self) -> str:
        for task in list(self.background):
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        errors = self.by_level["ERROR"]
        return (
            f"{APP}: {self.records} records, {self.segments} segments, {errors} errors, "
            f"{len(self.by_service)} services"
        )

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Future[Any]:
        task = asyncio.ensure_future(coro)
        self.background.add(task)
        task.add_done_callback(self.background.discard)
        return task

    def _check_done(self) -> None:
        if self.work_done is not None and self.source_done and self.injections_left <= 0:
            self.work_done.set()

    def _injection_finished(self) -> None:
        self.injections_left -= 1
        self._check_done()

    # ------------------------------------------------------------------ the pipeline

    async def produce(self) -> None:
        assert self.queue is not None
        async for batch in log_source(BATCHES):
            for line in batch:
                await self.queue.put(line)
        for _ in range(WORKERS):
            await self.queue.put(None)

    async def ingest_worker(self, number: int) -> None:
        assert self.queue is not None
        while (line := await self.queue.get()) is not None:
            service, level, _latency = parse_record(line)
            self.by_service[service] += 1
            self.by_level[level] += 1
            self.records += 1
            self.pending_segment.append(line)
            if len(self.pending_segment) >= SEGMENT_RECORDS:
                await self.flush_segment()

    async def flush_segment(self, final: bool = False) -> None:
        """Write full segments (and, at the end, the partial one) off the loop thread."""
        assert self.segment_lock is not None
        async with self.segment_lock:
            while len(self.pending_segment) >= SEGMENT_RECORDS or (final and self.pending_segment):
                lines = self.pending_segment[:SEGMENT_RECORDS]
                del self.pending_segment[:SEGMENT_RECORDS]
                self.segments += 1
                path = self.store.folder / f"segment-{self.segments:04d}.log.gz"
                self.segment_bytes += await asyncio.to_thread(write_segment, path, lines)

    async def wait_for_drain(self, producer: asyncio.Future[Any],
                             workers: list[asyncio.Future[Any]]) -> None:
        await producer
        await asyncio.gather(*workers)
        await self.flush_segment(final=True)
        self.source_done = True
        self._check_done()

    async def report_progress(self) -> None:
        last = 0
        while True:
            await asyncio.sleep(REPORT_INTERVAL)
            log.debug("%d records (+%d), %d segments, %d bytes",
                      self.records, self.records - last, self.segments, self.segment_bytes)
            last = self.records

    # ------------------------------------------------------------------ housekeeping (problems)

    async def run_maintenance(self) -> None:
        """Periodic housekeeping; this is where the problems are injected."""
        for when in self.cfg.injection_times():
            await asyncio.sleep(max(0.0, self.started + when - time.monotonic()))
            for problem in sorted(self.cfg.problems):
                await self.run_housekeeping_step(problem)

    async def run_housekeeping_step(self, problem: str) -> None:
        if problem == "blocking-coro":
            await self.refresh_geoip_database()
        elif problem == "cpu-parse":
            await self.reindex_replay_buffer()
        elif problem == "sync-io":
            await self.write_checkpoint()
        elif problem == "gil-call":
            await self.sign_segments()
        elif problem == "leaked-task":
            self.start_geoip_poller()
        elif problem == "unretrieved-exception":
            self.warm_dns_cache()
            return  # the warm-up task reports back itself
        self._injection_finished()

    async def refresh_geoip_database(self) -> None:
        """Reload the GeoIP table; waits for the mirror with a blocking back-off."""
        time.sleep(self.cfg.stall)  # CULPRIT: blocking-coro
        await asyncio.sleep(0)

    async def reindex_replay_buffer(self) -> None:
        """Re-index the replay buffer block by block — on the loop thread."""
        records = 0
        deadline = time.perf_counter() + self.cfg.stall  # the buffer is "that big"
        while time.perf_counter() < deadline:
            records += len(parse_syslog_batch(self.replay_block))
        log.debug("re-indexed %d replayed records", records)

    async def write_checkpoint(self) -> None:
        state = f"records={self.records} segments={self.segments}"
        self.store.checkpoint_sync(state, self.cfg.stall)

    def wait_for_hsm(self) -> bool:
        """The HSM binding spins in C until the signature is ready, holding the GIL."""
        signed_at = time.perf_counter() + self.cfg.stall
        return any(map(signed_at.__le__, iter(time.perf_counter, None)))  # CULPRIT: gil-call

    async def sign_segments(self) -> None:
        log.debug("segments signed: %s", self.wait_for_hsm())

    def start_geoip_poller(self) -> None:
        coro = self.poll_geoip_mirror()
        task = asyncio.create_task(coro, name="leaky-poller")  # CULPRIT: leaked-task
        self.geo_poller = task  # kept, but never awaited or cancelled

    async def poll_geoip_mirror(self) -> None:
        while True:
            await asyncio.sleep(0.05)

    def warm_dns_cache(self) -> None:
        asyncio.ensure_future(self.resolve_upstreams())  # noqa: RUF006 -- fire and forget, on purpose

    async def resolve_upstreams(self) -> None:
        try:
            await asyncio.sleep(0.01)
            raise ValueError("boom")  # CULPRIT: unretrieved-exception
        finally:
            self._injection_finished()


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(APP, "Log-ingest pipeline on plain asyncio (sample app for looptools).",
                     SUPPORTED, argv, unsupported_reasons=UNSUPPORTED_REASONS)
    logging.basicConfig(stream=sys.stderr, format="%(name)s: %(levelname)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="pipeline-asyncio-") as folder:
        pipeline = Pipeline(cfg, SegmentStore(Path(folder)))
        summary = asyncio.run(pipeline.run())
    print(summary, flush=True)
    return end_as_asked(cfg)


if __name__ == "__main__":
    sys.exit(main())
