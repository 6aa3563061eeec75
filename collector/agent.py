"""The daemon: supervises every source and moves readings from drivers to storage.

Data flow::

    ResolvedSource --create_driver--> driver (async with)                 one task per source,
        PolledDriver:    poll() every tick, aligned to tick boundaries     restarted with
                         + a per-source stagger                            jittered exponential
        StreamingDriver: async for batch in driver.samples()               backoff on failure
                 |  RawSample[] (+ ack for MQTT QoS 1)
                 v
        Normalizer (point map, scale/offset, UTC time, filters: range, spike, frozen,
                 |  duplicate, late -> Quality flags)   unknown keys -> dead letters / auto-register
                 v  Reading[]
        Buffer (bounded: buffer.max_rows; batches by storage.batch_max_rows / batch_max_age_ms)
                 v
        Forwarder (2 writers) --write (timeout)--> storage ReadingWriter (binary COPY, idempotent)
                 |  down / slow            rejected
                 v                         v
        Spool (disk, fsync)        quarantine.jsonl         acks run once written or spooled
                 |  replayed in order when the database is back
                 v
        observers' on_batch(readings) after every successful write (detectors, schedule)
        background: rollup refresh + partition maintenance, dead-letter flush, services

Polling contract: for a `PolledDriver` the agent calls `poll()` once per tick, the smallest
interval configured for the source (`interval_s` / `poll_interval_s` in the source options,
any device's options, or any point's `interval_s`; default 15 s). A driver whose devices have
different intervals keeps its own due times and returns only what was due; a driver without
per-device scheduling reads everything on every tick. Ticks are aligned to multiples of the
tick (epoch-based) plus a stagger derived from the source name, so many sources spread out.

Shutdown (`stop()`, SIGTERM, SIGINT): sources and services are cancelled, the buffer is closed
and flushed to the database or the spool, observers finish the batches already stored, then
`run()` returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import math
import random
import signal
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from collector import store
from collector.buffer import Ack, Buffer
from collector.config import driver_factory
from collector.forwarder import Forwarder
from collector.metrics import Metrics
from collector.normalize import Normalizer
from collector.spool import Spool
from core.clock import SystemClock
from core.config import GridWatchConfig, PointSpec, ResolvedPoint, ResolvedSource
from core.errors import ConnectError, GridWatchError, SinkError
from core.interfaces import AlertSink, BackgroundService, BatchObserver, DriverContext, Journal, Sink, SourceHealth
from core.records import Event, RawSample, Reading

log = logging.getLogger(__name__)

DEFAULT_TICK_S = 15.0


def source_tick(source: ResolvedSource) -> float:
    """The polling tick of a source (see module docstring)."""
    cands: list[float] = []

    def opt(o: Any) -> None:
        for name in ("interval_s", "poll_interval_s"):
            v = o.get(name) if isinstance(o, dict) else getattr(o, name, None)
            if isinstance(v, (int, float)) and v > 0:
                cands.append(float(v))

    opt(source.options)
    for d in source.devices:
        opt(d.options)
    for p in source.points:
        if p.spec.interval_s:
            cands.append(p.spec.interval_s)
    return min(cands) if cands else DEFAULT_TICK_S


def next_tick(now: float, tick: float, stagger: float) -> float:
    """The first time after `now` that is `stagger` past a multiple of `tick` (epoch seconds)."""
    return (math.floor((now - stagger) / tick) + 1) * tick + stagger


def _option(o: Any, name: str, default: Any = None) -> Any:
    if isinstance(o, dict):
        return o.get(name, default)
    return getattr(o, name, default)


class DeadLetterStore:
    """Bounded in-memory queue of dead letters, flushed to the database table periodically."""

    def __init__(self, cap: int, metrics: Metrics | None = None) -> None:
        self.cap = cap
        self.pending: deque[tuple[datetime, str, str, bytes]] = deque(maxlen=cap)
        self.metrics = metrics
        self.total = 0
        self.clock: Callable[[], datetime] = SystemClock()

    def add(self, source: str, reason: str, payload: bytes) -> None:
        """Keep one dead letter (drivers call this through `DriverContext.dead_letter`)."""
        self.pending.append((self.clock(), source, reason, bytes(payload)))
        self.total += 1
        if self.metrics is not None:
            self.metrics.dead_letters.labels(source).inc()

    async def flush(self, db: Any) -> None:
        """Write pending dead letters (keeps them if the database is down)."""
        if not self.pending:
            return
        from storage.dead_letters import insert_dead_letters

        rows = list(self.pending)
        await insert_dead_letters(db, rows, keep=self.cap)
        for _ in range(len(rows)):
            if self.pending:
                self.pending.popleft()


class LogJournal:
    """A journal that only logs (used when no database journal is available)."""

    async def record(self, event: Event) -> None:
        """Log the event."""
        log.info("[%s] %s: %s", event.kind, event.source, event.message)


class Agent:
    """The collector daemon (see module docstring for the data flow)."""

    def __init__(self, config: GridWatchConfig, db: Any, *, clock: Callable[[], datetime] | None = None,
                 observers: Sequence[BatchObserver] = (), services: Sequence[BackgroundService] = (),
                 alert_sink: AlertSink | None = None, journal: Journal | None = None,
                 registry: CollectorRegistry | None = None, sink: Sink | None = None,
                 maintenance_interval_s: float = 60.0, handle_signals: bool = False, writers: int = 2) -> None:
        self.config = config
        self.db = db
        self.clock: Callable[[], datetime] = clock or SystemClock()
        self.observers = list(observers)
        self.services = list(services)
        self.alert_sink = alert_sink
        self.journal: Journal = journal or LogJournal()
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = Metrics(self.registry)
        self.healths: dict[str, SourceHealth] = {s.name: SourceHealth(s.name) for s in config.sources}
        self.metrics.watch_health(self.healths, self.clock)
        self.maintenance_interval_s = maintenance_interval_s
        self.writers = writers
        self.handle_signals = handle_signals
        st = config.storage
        self.buffer = Buffer(max_rows=config.buffer.max_rows, batch_max_rows=st.batch_max_rows,
                             batch_max_age_s=st.batch_max_age_ms / 1000.0)
        self.spool = Spool(config.spool.dir, max_bytes=config.spool.max_bytes,
                           segment_bytes=config.spool.segment_bytes)
        self._sink = sink
        self.dead_letters = DeadLetterStore(config.collector.dead_letter_max, self.metrics)
        self.dead_letters.clock = self.clock
        self.normalizers: dict[str, Normalizer] = {}
        self.point_ids: dict[str, int] = {}
        self.forwarder: Forwarder | None = None
        self._stop = asyncio.Event()
        self._observer_q: asyncio.Queue[Sequence[Reading]] = asyncio.Queue(maxsize=64)
        self._reported_unknown: dict[str, set[str]] = {}
        self._auto_failed: dict[tuple[str, str], float] = {}
        self.running: dict[str, bool] = {s.name: False for s in config.sources}
        self.started = asyncio.Event()

    # -- control
    def stop(self) -> None:
        """Ask `run()` to stop collecting, flush and return."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """True once stop was requested."""
        return self._stop.is_set()

    def status(self) -> dict[str, Any]:
        """State of the database path and every source (for /readyz)."""
        fw = self.forwarder
        return {
            "database": {"writing": fw.db_ok if fw else False, "last_error": fw.last_error if fw else "",
                         "spool_depth": self.spool.depth if self.spool.opened else 0},
            "sources": {
                name: {"running": self.running.get(name, False), "links": dict(h.links),
                       "last_error": h.last_error,
                       "last_message_at": h.last_message_at.isoformat() if h.last_message_at else None}
                for name, h in self.healths.items()
            },
        }

    # -- main
    async def run(self) -> None:
        """Run until `stop()` (or SIGTERM/SIGINT with handle_signals): see module docstring."""
        loop = asyncio.get_running_loop()
        if self.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self.stop)
        try:
            await asyncio.to_thread(self.spool.open)
            if self.spool.torn_bytes_cut:
                log.warning("spool: cut %d bytes of a torn tail", self.spool.torn_bytes_cut)
            sink = self._sink or store.reading_writer(self.db, write_timeout_s=self.config.storage.write_timeout_s)
            self.forwarder = Forwarder(
                self.buffer, sink, self.spool, write_timeout_s=self.config.storage.write_timeout_s,
                metrics=self.metrics, on_stored=self._on_stored,
                backoff_initial_s=self.config.collector.backoff_initial_s,
                backoff_max_s=self.config.collector.backoff_max_s, writers=self.writers)
            self.metrics.spool_depth.set(self.spool.depth)
            self.metrics.spool_bytes.set(self.spool.bytes)
            if not await self._register_all():
                log.info("stopped before the points could be registered")
                return
            for src in self.config.sources:
                self.normalizers[src.name] = Normalizer(src, self.point_ids, self.config.filters)
            # The configuration and point maps (10,000 meters: a large, long-lived heap) leave
            # the collector's full passes, which otherwise stall the event loop for seconds.
            gc.freeze()
            await self._run_tasks()
        finally:
            if self.handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    loop.remove_signal_handler(sig)

    async def _run_tasks(self) -> None:
        assert self.forwarder is not None
        async with asyncio.TaskGroup() as tg:
            fw_task = tg.create_task(self.forwarder.run(), name="forwarder")
            obs_task = tg.create_task(self._observer_loop(), name="observers")
            side: list[asyncio.Task[None]] = []
            for src in self.config.sources:
                side.append(tg.create_task(self._supervise(src), name=f"source:{src.name}"))
            for i, svc in enumerate(self.services):
                side.append(tg.create_task(self._service(svc), name=f"service:{i}:{type(svc).__name__}"))
            side.append(tg.create_task(self._maintenance_loop(), name="maintenance"))
            side.append(tg.create_task(self._dead_letter_loop(), name="dead-letters"))
            self.started.set()
            await self._stop.wait()
            log.info("stopping: sources and services first, then flushing the buffer")
            for t in side:
                t.cancel()
            await asyncio.gather(*side, return_exceptions=True)
            await self.buffer.close()
            await fw_task
            # Observers finish what was stored, with a bound on how long that may take.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(10):
                    await self._observer_q.join()
            obs_task.cancel()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await self.dead_letters.flush(self.db)
        log.info("stopped: %d stored, %d spooled, %d replayed, %d quarantined", self.forwarder.stored,
                 self.forwarder.spooled, self.forwarder.replayed, self.forwarder.quarantined)

    # -- points
    def _cache_path(self) -> Path:
        return Path(self.config.spool.dir) / "points.json"

    async def _register_all(self) -> bool:
        """Register every point (retrying while the database is down); False if stopped first."""
        points = self.config.points
        delay = self.config.collector.backoff_initial_s
        while True:
            try:
                ids = await store.register_points(self.db, points) if points else {}
                self.point_ids = dict(ids)
                with contextlib.suppress(OSError):
                    path = self._cache_path()
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(json.dumps(self.point_ids))
                    tmp.replace(path)
                return True
            except SinkError as e:
                cached = self._load_cache()
                if cached is not None and all(p.name in cached for p in points):
                    log.warning("database unavailable (%s); using the cached point ids", e)
                    self.point_ids = cached
                    return True
                log.warning("cannot register points (%s); retrying in %.1fs", e, delay)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._stop.wait()
                if self._stop.is_set():
                    return False
                delay = min(delay * 2, self.config.collector.backoff_max_s)

    def _load_cache(self) -> dict[str, int] | None:
        try:
            data = json.loads(self._cache_path().read_text())
            return {str(k): int(v) for k, v in data.items()}
        except (OSError, ValueError, AttributeError):
            return None

    # -- sources
    async def _supervise(self, src: ResolvedSource) -> None:
        health = self.healths[src.name]
        cfg = self.config.collector
        delay = cfg.backoff_initial_s
        try:
            factory = driver_factory(src.kind)
        except KeyError:
            health.last_error = f"no driver for kind {src.kind!r}"
            log.error("source %s: %s", src.name, health.last_error)
            return
        ctx = DriverContext(clock=self.clock, health=health, journal=self.journal,
                            dead_letter=self.dead_letters.add)
        while True:
            progressed = False
            try:
                driver = factory(src, ctx)
                async with driver:
                    self.running[src.name] = True
                    self.metrics.source_up.labels(src.name).set(1)
                    if hasattr(driver, "samples"):
                        async for batch in driver.samples():
                            await self.ingest(src.name, batch.samples, batch.ack)
                            if not progressed:
                                progressed = True
                                delay = cfg.backoff_initial_s
                        raise ConnectError(src.name, "sample stream ended")
                    await self._poll_loop(src, driver, health)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                msg = str(e) or type(e).__name__
                health.last_error = msg
                health.count("restarts")
                self.metrics.source_restarts.labels(src.name).inc()
                if not isinstance(e, GridWatchError):
                    log.exception("source %s failed", src.name)
                else:
                    log.warning("source %s failed: %s", src.name, msg)
                with contextlib.suppress(Exception):
                    await self.journal.record(Event(kind="link", source=src.name,
                                                    message=f"source failed, retrying: {msg}", ts=self.clock()))
            finally:
                self.running[src.name] = False
                self.metrics.source_up.labels(src.name).set(0)
            if progressed:
                delay = cfg.backoff_initial_s
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, cfg.backoff_max_s)

    async def _poll_loop(self, src: ResolvedSource, driver: Any, health: SourceHealth) -> None:
        tick = source_tick(src)
        stagger = (zlib.crc32(src.name.encode()) % 1000) / 1000.0 * min(tick, 5.0)
        hist = self.metrics.poll_seconds.labels(src.name)
        while True:
            t0 = time.monotonic()
            samples = await driver.poll()
            hist.observe(time.monotonic() - t0)
            if samples:
                health.last_message_at = self.clock()
            await self.ingest(src.name, samples)
            now = time.time()
            await asyncio.sleep(max(0.0, next_tick(now, tick, stagger) - now))

    async def ingest(self, source: str, samples: Sequence[RawSample], ack: Ack | None = None) -> None:
        """Normalize `samples` of `source` and hand them to the buffer (public for tests/benches)."""
        norm = self.normalizers[source]
        readings = norm.normalize(samples)
        if norm.unknown:
            unknown = norm.unknown
            norm.unknown = []
            readings.extend(await self._unknown(source, norm, unknown))
        if readings:
            self.metrics.readings_in.labels(source).inc(len(readings))
        await self.buffer.put(readings, source, ack)

    async def _unknown(self, source: str, norm: Normalizer, samples: list[RawSample]) -> list[Reading]:
        src = next((s for s in self.config.sources if s.name == source), None)
        auto = bool(_option(src.options, "auto_register", False)) if src is not None else False
        health = self.healths.get(source)
        self.metrics.samples_unmapped.labels(source).inc(len(samples))
        if health is not None:
            health.count("unmapped", len(samples))
        reported = self._reported_unknown.setdefault(source, set())
        kept: list[RawSample] = []
        for s in samples:
            if auto and await self._auto_register(source, norm, s.key):
                kept.append(s)
                continue
            if s.key not in reported and len(reported) < 10_000:
                reported.add(s.key)
                with contextlib.suppress(Exception):
                    await self.journal.record(Event(kind="data", source=source, ts=self.clock(),
                                                    message=f"unknown point key {s.key!r} (not in the point map)",
                                                    details={"key": s.key}))
            self.dead_letters.add(source, f"unknown point key {s.key!r}", _sample_payload(s))
        return norm.normalize(kept) if kept else []

    async def _auto_register(self, source: str, norm: Normalizer, key: str) -> bool:
        if norm.knows(key):
            return True
        failed = self._auto_failed.get((source, key))
        if failed is not None and time.monotonic() - failed < 10.0:
            return False
        name = f"{source}.{key}"
        spec = PointSpec.model_validate({"name": name, "key": key})
        point = ResolvedPoint(spec=spec, name=name, key=key, source=source, device="", subject="", zone="",
                              options=None)
        try:
            ids = await store.register_points(self.db, [point])
        except (SinkError, ValueError) as e:
            self._auto_failed[(source, key)] = time.monotonic()
            log.warning("source %s: cannot auto-register %r: %s", source, key, e)
            return False
        norm.add_point(key, ids[name])
        self.point_ids[name] = ids[name]
        with contextlib.suppress(Exception):
            await self.journal.record(Event(kind="config", source=source, ts=self.clock(),
                                            message=f"auto-registered point {name!r}"))
        return True

    # -- after storage
    async def _on_stored(self, readings: Sequence[Reading]) -> None:
        if self.observers:
            await self._observer_q.put(readings)

    async def _observer_loop(self) -> None:
        while True:
            batch = await self._observer_q.get()
            try:
                for obs in self.observers:
                    try:
                        await obs.on_batch(batch)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        self.metrics.observer_errors.labels(type(obs).__name__).inc()
                        log.exception("observer %s failed", type(obs).__name__)
            finally:
                self._observer_q.task_done()

    async def _service(self, svc: BackgroundService) -> None:
        name = type(svc).__name__
        delay = self.config.collector.backoff_initial_s
        while True:
            try:
                await svc.run()
                log.warning("service %s returned; restarting", name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("service %s failed; restarting", name)
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.config.collector.backoff_max_s)

    async def _maintenance_loop(self) -> None:
        """Refresh rollups from the earliest time written since the last refresh (the writer's
        `pop_dirty_since()` when it has one), then create/drop partitions."""
        last = self.clock() - timedelta(hours=2)
        while True:
            await asyncio.sleep(self.maintenance_interval_s)
            await self.maintain_once(last)
            last = self.clock()

    async def maintain_once(self, fallback_since: datetime) -> None:
        """One rollup refresh + partition maintenance; errors are counted and logged."""
        now = self.clock()
        sink = self.forwarder.sink if self.forwarder is not None else None
        pop = getattr(sink, "pop_dirty_since", None)
        since = pop() if callable(pop) else fallback_since
        try:
            if since is not None:
                await store.refresh_rollups(self.db, since)
            await store.maintain(self.db, now, self.config.storage)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self.metrics.maintenance_errors.inc()
            log.warning("storage maintenance failed: %s", e)

    async def _dead_letter_loop(self) -> None:
        while True:
            await asyncio.sleep(2.0)
            try:
                await self.dead_letters.flush(self.db)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.debug("dead letters not flushed yet: %s", e)


def _sample_payload(s: RawSample) -> bytes:
    return json.dumps({"source": s.source, "key": s.key, "value": s.value,
                       "received_at": s.received_at.isoformat(),
                       "device_ts": s.device_ts.isoformat() if s.device_ts else None,
                       "quality": int(s.quality)}).encode()
