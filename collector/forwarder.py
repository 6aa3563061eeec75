"""The forwarder: writes buffered batches to the database, spools them when it cannot.

    Buffer.get() --batch--> write (timeout) --ok--> acks, observers
                               | SinkUnavailable / timeout
                               v
                         Spool.append (fsync) --> acks      replay loop: Spool.peek -> write
                               | SinkRejected                 -> commit (oldest first)
                               v
                         bisect -> quarantine only the rejected rows

While the database is known to be down, new batches go straight to the spool (no write attempt
per batch); the replay loop probes with the oldest spooled record under jittered exponential
backoff and, once a write succeeds, drains the spool in order and lets live batches write
directly again. Live batches may therefore reach the database before older spooled ones; writes
are idempotent per (point, ts), so order does not change what is stored.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence

from collector.buffer import Batch, Buffer
from collector.metrics import Metrics
from collector.spool import Spool, SpoolFull
from core.errors import SinkRejected, SinkUnavailable
from core.interfaces import Sink
from core.records import Reading

log = logging.getLogger(__name__)

OnStored = Callable[[Sequence[Reading]], Awaitable[None]]


class Forwarder:
    """Moves batches from the buffer to the sink, or to the spool (see module docstring).

    `writers` batches are written concurrently (each on its own pooled connection); batches
    therefore reach the database in no guaranteed order, which idempotent writes make harmless.
    """

    def __init__(self, buffer: Buffer, sink: Sink, spool: Spool, *, write_timeout_s: float = 30.0,
                 metrics: Metrics | None = None, on_stored: OnStored | None = None,
                 backoff_initial_s: float = 1.0, backoff_max_s: float = 60.0, writers: int = 2) -> None:
        self.buffer = buffer
        self.sink = sink
        self.spool = spool
        self.write_timeout_s = write_timeout_s
        self.metrics = metrics
        self.on_stored = on_stored
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.writers = max(1, writers)
        self.db_ok = True
        self.last_error = ""
        self.stored = 0
        self.spooled = 0
        self.replayed = 0
        self.quarantined = 0
        self._wake = asyncio.Event()
        self._stopping = False

    # -- public
    async def run(self) -> None:
        """Write until the buffer is closed and drained; the replay loop runs alongside."""
        replay = asyncio.create_task(self._replay_loop(), name="spool-replay")
        try:
            # Several writers keep the database busy while the next batch is encoded and sent.
            async with asyncio.TaskGroup() as tg:
                for i in range(self.writers):
                    tg.create_task(self._write_loop(), name=f"writer-{i}")
        finally:
            replay.cancel()
            try:
                await replay
            except asyncio.CancelledError:
                pass
            await asyncio.to_thread(self.spool.close)
            self._update_spool_metrics()

    async def replay_all(self) -> None:
        """Replay the whole spool now (used at start-up and by tests); raises if the DB fails."""
        while not self.spool.empty():
            if not await self._replay_one():
                raise SinkUnavailable(self.last_error or "database unavailable")

    # -- writing
    async def _write(self, readings: Sequence[Reading], timeout: float | None = None) -> None:
        t0 = time.perf_counter()
        async with asyncio.timeout(timeout or self.write_timeout_s):
            await self.sink.write(readings)
        if self.metrics is not None:
            self.metrics.observe_write(time.perf_counter() - t0, len(readings))

    async def _write_loop(self) -> None:
        while True:
            batch = await self.buffer.get()
            if batch is None:
                return
            try:
                await self._handle(batch)
            finally:
                await self.buffer.done(batch)
            if self.metrics is not None:
                self.metrics.buffer_rows.set(self.buffer.rows)

    async def _handle(self, batch: Batch) -> None:
        readings = batch.readings
        if readings and self.db_ok:
            # While shutting down, one quick attempt and then the spool.
            timeout = min(self.write_timeout_s, 5.0) if self.buffer.closed else self.write_timeout_s
            try:
                await self._write(readings, timeout)
            except (SinkUnavailable, TimeoutError) as e:
                self._down(e)
            except SinkRejected as e:
                await self._bisect(readings, str(e), _label(batch))
                self._acked(batch)
                return
            else:
                self.stored += len(readings)
                if self.metrics is not None:
                    for src, n in batch.sources.items():
                        self.metrics.readings_stored.labels(src).inc(n)
                self._acked(batch)
                await self._stored(readings)
                return
        if readings:
            await self._spool(readings)
            self.spooled += len(readings)
            if self.metrics is not None:
                for src, n in batch.sources.items():
                    self.metrics.readings_spooled.labels(src).inc(n)
        self._acked(batch)

    def _down(self, e: BaseException) -> None:
        if self.db_ok:
            log.warning("database unavailable, spooling batches: %s", e or type(e).__name__)
        self.db_ok = False
        self.last_error = str(e) or type(e).__name__

    async def _spool(self, readings: Sequence[Reading]) -> None:
        delay = 0.05
        while True:
            try:
                await asyncio.to_thread(self.spool.append, readings)
                break
            except SpoolFull as e:
                if self._stopping:
                    raise
                log.warning("%s; waiting for the replay to free space", e)
                self._wake.set()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        self._wake.set()
        self._update_spool_metrics()

    def _acked(self, batch: Batch) -> None:
        for ack in batch.acks:
            try:
                ack()
            except Exception:
                log.exception("acknowledging a batch failed")

    async def _stored(self, readings: Sequence[Reading]) -> None:
        if self.on_stored is not None:
            await self.on_stored(readings)

    async def _bisect(self, readings: Sequence[Reading], reason: str, source: str = "spool") -> None:
        """Write what the database accepts; quarantine the smallest rejected parts."""
        if len(readings) <= 1:
            await asyncio.to_thread(self.spool.quarantine, readings, reason)
            self.quarantined += len(readings)
            if self.metrics is not None:
                self.metrics.readings_rejected.labels(source).inc(len(readings))
            log.error("quarantined %d reading(s): %s", len(readings), reason)
            return
        mid = len(readings) // 2
        for part in (readings[:mid], readings[mid:]):
            try:
                await self._write(part)
            except SinkRejected as e:
                await self._bisect(part, str(e), source)
            except (SinkUnavailable, TimeoutError) as e:
                self._down(e)
                await self._spool(part)
            else:
                self.stored += len(part)
                await self._stored(part)

    # -- replay
    async def _replay_one(self) -> bool:
        item = await asyncio.to_thread(self.spool.peek)
        if item is None:
            return True
        rec, readings = item
        try:
            await self._write(readings)
        except (SinkUnavailable, TimeoutError) as e:
            self.db_ok = False
            self.last_error = str(e) or type(e).__name__
            return False
        except SinkRejected as e:
            await self._bisect(readings, str(e))
        else:
            self.replayed += len(readings)
            if self.metrics is not None:
                self.metrics.readings_replayed.inc(len(readings))
            await self._stored(readings)
        await asyncio.to_thread(self.spool.commit, rec)
        self._update_spool_metrics()
        if self.spool.empty():
            self.db_ok = True  # drained: live batches write directly again
        return True

    async def _replay_loop(self) -> None:
        delay = self.backoff_initial_s
        while True:
            if self.spool.empty():
                if not self.db_ok:
                    log.info("spool drained; writing directly again")
                self.db_ok = True
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self.db_ok:
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            ok = await self._replay_one()
            if ok:
                delay = self.backoff_initial_s
            else:
                delay = min(delay * 2, self.backoff_max_s)

    def _update_spool_metrics(self) -> None:
        if self.metrics is not None:
            self.metrics.spool_depth.set(self.spool.depth)
            self.metrics.spool_bytes.set(self.spool.bytes)


def _label(batch: Batch) -> str:
    """The source label of a batch's metrics: its only source, or "mixed"."""
    if len(batch.sources) == 1:
        return next(iter(batch.sources))
    return "mixed" if batch.sources else "unknown"
