"""The Modbus TCP driver: owns per-device scheduling and yields one batch per device read.

It satisfies `core.interfaces.StreamingDriver` (and deliberately not `PolledDriver`: it has no
`poll()`, so the collector's isinstance checks are unambiguous)::

    async with create_driver(source, ctx) as drv:
        async for batch in drv.samples():      # one SampleBatch per device read, forever
            ...

Flow::

    scheduler (one task)  --due device-->  endpoint queue (host:port)  -->  endpoint workers
      heap of (due, device)                 FIFO of device jobs             <= N connections each,
      aligned + staggered                                                   one request in flight
                                                                                    |
    samples()  <--  output queue (bounded)  <--  SampleBatch (RawSample per point) -+

* `RawSample.key` is the point's `ResolvedPoint.name` (unique, e.g. "m00017.voltage_l1"),
  not `PointSpec.key`: many template devices share the template's point keys.
* Values are decoded registers (raw): the collector applies scale and offset. Counters
  (`PointSpec.kind == "counter"`) are unwrapped here when they roll over (Quality.ROLLOVER on
  the sample where the wrap was seen).
* A failed read gives the points of that device value NaN with Quality.COMM_FAIL; counters
  and events name the device and the register. Nothing here raises out of `samples()`
  because of a device: one dead device never stops or delays the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from core.clock import clock_speed
from core.config import ResolvedDevice, ResolvedPoint, ResolvedSource
from core.errors import ConnectError, DriverError
from core.interfaces import DriverContext, SampleBatch
from core.records import Event, Quality, RawSample
from protocols.modbus import codec
from protocols.modbus.client import Connection, Desync, ExceptionAnswer, RequestTimeout, quiet_library_logs
from protocols.modbus.config import DeviceOptions, PointOptions, SourceOptions
from protocols.modbus.planner import BadAddresses, Item, Request, plan, split
from protocols.modbus.schedule import catch_up, default_stagger, next_due, stagger_offset

log = logging.getLogger("gridwatch.modbus")

NAN = math.nan


@dataclass
class _Point:
    rp: ResolvedPoint
    opts: PointOptions
    address: int  # PDU address
    order: str
    counter: bool
    modulus: float | None
    last_raw: float | None = None
    wraps: int = 0


@dataclass
class _Device:
    index: int
    name: str
    host: str
    port: int
    unit: int
    interval_s: float
    timeout_s: float
    offset_s: float
    max_registers: int
    max_gap: int
    points: list[_Point]
    items: list[Item]
    plan_key: tuple[Any, ...]
    bad: BadAddresses
    busy: bool = False
    state: str = "unknown"
    strings: dict[str, str] = field(default_factory=dict)
    reported: set[tuple[str, int, int]] = field(default_factory=set)
    last_read_at: datetime | None = None
    failures: int = 0  # failed reads in a row
    next_probe: float = 0.0  # epoch s: a device that is down is read again from then on

    @property
    def endpoint(self) -> tuple[str, int]:
        return (self.host, self.port)


@dataclass
class _Job:
    device: _Device
    due: float
    future: asyncio.Future[list[RawSample]] | None = None


@dataclass
class _Endpoint:
    host: str
    port: int
    max_workers: int
    queue: deque[_Job] = field(default_factory=deque)
    slow: deque[_Job] = field(default_factory=deque)  # jobs of devices that are down: served last
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    workers: int = 0
    idle: int = 0
    failures: int = 0
    down_until: float = 0.0  # monotonic
    last_error: str = ""

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"




class ModbusDriver:
    """Reads every device of a Modbus source on its own aligned, staggered schedule.

    Build it with `create_driver()`. `samples()` yields a `SampleBatch` per device read;
    `read_all()` / `read_device(name)` read now (manual reading) through the same connections.
    `strings` maps device -> {point name -> text} for string points (serial numbers, models).
    """

    def __init__(self, source: ResolvedSource, ctx: DriverContext) -> None:
        opts = source.options if isinstance(source.options, SourceOptions) else SourceOptions.model_validate({})
        self.source = source
        self.name = source.name
        self.ctx = ctx
        self.opts = opts
        self.speed = clock_speed(ctx.clock)
        if opts.quiet_library_logs:
            quiet_library_logs()
        self.devices: list[_Device] = []
        self._by_name: dict[str, _Device] = {}
        self._plans: dict[tuple[Any, ...], list[Request]] = {}
        self._endpoints: dict[tuple[str, int], _Endpoint] = {}
        self._build()
        self._out: asyncio.Queue[SampleBatch] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._scheduler: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._host_sems: dict[str, asyncio.Semaphore] = {}
        self._global_sem: asyncio.Semaphore | None = None
        self._closed = False
        self._waiting: set[asyncio.Future[list[RawSample]]] = set()

    # ------------------------------------------------------------------ set-up
    def _build(self) -> None:
        o = self.opts
        for dev in self.source.devices:
            self._add_device(dev)
        loose = [p for p in self.source.points if not p.device or p.device not in self._by_name]
        if loose:
            if o.host is None:
                raise DriverError(self.name, "points outside devices need the source's host option")
            self._add_device(ResolvedDevice(name=self.name, subject="", zone="",
                                            options=DeviceOptions.model_validate({}), points=tuple(loose)))

    def _add_device(self, dev: ResolvedDevice) -> None:
        o = self.opts
        dopts = dev.options if isinstance(dev.options, DeviceOptions) else DeviceOptions.model_validate({})
        host = dopts.host or o.host
        if not host:
            raise DriverError(self.name, f"device {dev.name}: no host (set options.host on the device or source)")
        port = dopts.port or o.port
        interval = dopts.interval_s or o.interval_s
        max_regs = dopts.max_registers or o.max_registers
        max_gap = o.max_gap if dopts.max_gap is None else dopts.max_gap
        points: list[_Point] = []
        items: list[Item] = []
        for rp in dev.points:
            popts = rp.options
            if not isinstance(popts, PointOptions):
                raise DriverError(self.name, f"point {rp.name}: missing Modbus options (table, address, type)")
            address = popts.address - dopts.address_base
            if address < 0:
                raise DriverError(self.name, f"point {rp.name}: address {popts.address} below address_base "
                                             f"{dopts.address_base}")
            limit = o.max_bits if popts.is_bit else max_regs
            if popts.words > limit:
                raise DriverError(self.name, f"point {rp.name}: {popts.words} registers exceed the request "
                                             f"limit {limit}")
            counter = rp.spec.kind == "counter"
            mod = popts.rollover if popts.rollover is not None else codec.modulus(popts.type)
            points.append(_Point(rp=rp, opts=popts, address=address, order=popts.byte_order or dopts.byte_order,
                                 counter=counter, modulus=mod))
            items.append(Item(index=len(items), table=popts.table, address=address, words=popts.words))
        window = o.stagger_s if o.stagger_s is not None else default_stagger(interval)
        window = min(window, interval)
        plan_key = (tuple((i.table, i.address, i.words) for i in items), max_regs, max_gap)
        d = _Device(index=len(self.devices), name=dev.name, host=host, port=port, unit=dopts.unit_id,
                    interval_s=interval, timeout_s=dopts.timeout_s or o.timeout_s,
                    offset_s=stagger_offset(dev.name, window), max_registers=max_regs, max_gap=max_gap,
                    points=points, items=items, plan_key=plan_key, bad=BadAddresses(o.bad_address_ttl_s))
        self.devices.append(d)
        self._by_name[d.name] = d
        key = d.endpoint
        if key not in self._endpoints:
            self._endpoints[key] = _Endpoint(host, port, o.max_connections_per_endpoint)

    def plan_for(self, dev: _Device, now_s: float) -> list[Request]:
        """The requests for `dev` now (shared between devices of one template)."""
        skip = dev.bad.active(now_s)
        holes = dev.bad.holes(now_s)
        key = (dev.plan_key, skip, holes)
        reqs = self._plans.get(key)
        if reqs is None:
            reqs = plan(dev.items, max_registers=dev.max_registers, max_bits=self.opts.max_bits,
                        max_gap=dev.max_gap, skip=skip, holes=holes)
            if len(self._plans) > 10_000:
                self._plans.clear()
            self._plans[key] = reqs
        return reqs

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Self:
        self._out = asyncio.Queue(self.opts.queue_batches)
        self._global_sem = asyncio.Semaphore(self.opts.max_connections)
        for d in self.devices:
            self.ctx.health.links[d.name] = "connecting"
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop scheduling, cancel workers and close every connection."""
        self._closed = True
        events = [t for t in self._tasks if t.get_name().endswith(":event")]
        if events:  # let the journal get the last link/data events
            await asyncio.wait(events, timeout=2.0)
        tasks = list(self._tasks)
        if self._scheduler is not None:
            tasks.append(self._scheduler)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        self._tasks.clear()
        self._scheduler = None
        for fut in self._waiting:
            if not fut.done():
                fut.set_exception(DriverError(self.name, "driver closed before the read finished"))
        self._waiting.clear()

    def _spawn(self, coro: Any, name: str) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None and self._failure is None:
            self._failure = exc
            log.error("modbus %s: internal task %s failed: %r", self.name, task.get_name(), exc)

    # ------------------------------------------------------------------ time
    def _now_s(self) -> float:
        return self.ctx.clock().timestamp()

    # ------------------------------------------------------------------ public API
    def samples(self) -> AsyncIterator[SampleBatch]:
        """One `SampleBatch` per device read, forever (until the driver is closed).

        Starts the scheduler on first use. The iterator is an object, not a generator:
        cancelling one `__anext__()` (e.g. `asyncio.wait_for(it.__anext__(), t)`) does not
        end it. Raises `DriverError` only for an internal failure of the driver itself.
        """
        if self._out is None:
            raise DriverError(self.name, "use `async with` before samples()")
        if self._scheduler is None:
            self._scheduler = asyncio.create_task(self._schedule(), name=f"modbus:{self.name}:scheduler")
            self._scheduler.add_done_callback(self._task_done)
        return _SampleStream(self, self._out)

    async def read_device(self, name: str) -> list[RawSample]:
        """Read one device now (manual reading) and return its samples."""
        dev = self._by_name.get(name)
        if dev is None:
            raise DriverError(self.name, f"no device {name!r}")
        if self._closed or self._out is None:
            raise DriverError(self.name, "the driver is not running (use `async with`)")
        fut: asyncio.Future[list[RawSample]] = asyncio.get_running_loop().create_future()
        self._waiting.add(fut)
        fut.add_done_callback(self._waiting.discard)
        self._enqueue(_Job(dev, self._now_s(), fut), force=True)
        return await fut

    async def read_all(self) -> list[RawSample]:
        """Read every device now, concurrently within the connection limits."""
        results = await asyncio.gather(*(self.read_device(d.name) for d in self.devices))
        return [s for r in results for s in r]

    # ------------------------------------------------------------------ scheduling
    async def _schedule(self) -> None:
        now = self._now_s()
        heap: list[tuple[float, int]] = []
        for d in self.devices:
            if self.opts.read_on_start:
                due = now + d.offset_s
            else:
                due = next_due(now, d.interval_s, d.offset_s)
            heap.append((due, d.index))
        heapq.heapify(heap)
        health = self.ctx.health
        while heap:
            now = self._now_s()
            while heap and heap[0][0] <= now:
                due, idx = heapq.heappop(heap)
                dev = self.devices[idx]
                if dev.state == "down" and now < dev.next_probe and not dev.busy:
                    self._skip_dead(dev)  # backing off: report COMM_FAIL without touching the link
                else:
                    self._enqueue(_Job(dev, due))
                nxt, missed = catch_up(due, now, dev.interval_s)
                if missed:
                    health.count("missed_slots", missed)
                heapq.heappush(heap, (nxt, idx))
            delay = (heap[0][0] - self._now_s()) / self.speed
            await asyncio.sleep(min(max(delay, 0.0), 5.0))

    def _skip_dead(self, dev: _Device) -> None:
        self.ctx.health.count("skipped_down")
        if self._out is None:
            return
        now = self.ctx.clock()
        batch = SampleBatch([RawSample(self.name, p.rp.name, NAN, now, None, Quality.COMM_FAIL)
                             for p in dev.points if p.opts.type != "string"])
        try:
            self._out.put_nowait(batch)
        except asyncio.QueueFull:
            self.ctx.health.count("dropped_batches")

    def _enqueue(self, job: _Job, force: bool = False) -> None:
        dev = job.device
        if dev.busy and not force:
            self.ctx.health.count("overruns")
            return
        if job.future is None:
            dev.busy = True
        ep = self._endpoints[dev.endpoint]
        if dev.state == "down" and job.future is None:
            ep.slow.append(job)  # a dead unit must not hold up the live ones behind the same gateway
        else:
            ep.queue.append(job)
        ep.wakeup.set()
        if ep.idle == 0 and ep.workers < ep.max_workers:
            ep.workers += 1
            self._spawn(self._worker(ep), f"modbus:{self.name}:{ep.name}")

    # ------------------------------------------------------------------ workers
    async def _acquire_slot(self, host: str) -> None:
        assert self._global_sem is not None
        sem = self._host_sems.get(host)
        if sem is None:
            sem = self._host_sems[host] = asyncio.Semaphore(self.opts.max_connections_per_host)
        await self._global_sem.acquire()
        try:
            await sem.acquire()
        except BaseException:
            self._global_sem.release()
            raise

    def _release_slot(self, host: str) -> None:
        assert self._global_sem is not None
        self._host_sems[host].release()
        self._global_sem.release()

    async def _worker(self, ep: _Endpoint) -> None:
        conn: Connection | None = None
        holds_slot = False
        try:
            while True:
                if not ep.queue and not ep.slow:
                    ep.idle += 1
                    ep.wakeup.clear()
                    try:
                        idle_real = self.opts.idle_close_s
                        if conn is None or not conn.is_open:
                            idle_real = max(idle_real, 5.0)
                        async with asyncio.timeout(idle_real):
                            while not ep.queue and not ep.slow:
                                await ep.wakeup.wait()
                                ep.wakeup.clear()
                    except TimeoutError:
                        return
                    finally:
                        ep.idle -= 1
                    continue
                job = ep.queue.popleft() if ep.queue else ep.slow.popleft()
                try:
                    if conn is None or not conn.is_open:
                        if conn is not None:
                            conn.close()
                        if holds_slot:
                            self._release_slot(ep.host)
                            holds_slot = False
                        conn = None
                        if time.monotonic() < ep.down_until:
                            await self._finish(job, self._fail_all(job.device, f"endpoint {ep.name} down: "
                                                                   f"{ep.last_error}", "endpoint_down"))
                            continue
                        await self._acquire_slot(ep.host)
                        holds_slot = True
                        conn = Connection(self.name, ep.host, ep.port, connect_timeout_s=self.opts.connect_timeout_s)
                        try:
                            await conn.open()
                        except ConnectError as e:
                            conn = None
                            self._release_slot(ep.host)
                            holds_slot = False
                            self._endpoint_failed(ep, str(e))
                            await self._finish(job, self._fail_all(job.device, str(e), "connect_errors"))
                            continue
                        self.ctx.health.count("connects")
                        ep.failures = 0
                        ep.last_error = ""
                    samples = await self._read(conn, job.device)
                except Exception as e:  # a bug must not kill the endpoint: count it, fail the job
                    log.exception("modbus %s: reading %s failed", self.name, job.device.name)
                    self.ctx.health.count("internal_errors")
                    if conn is not None:
                        conn.close()
                    samples = self._fail_all(job.device, f"internal error: {e!r}", None)
                await self._finish(job, samples)
                if conn is not None and not conn.is_open:
                    self.ctx.health.count("reconnects")  # closed after an error: reopen for the next job
        finally:
            ep.workers -= 1
            if conn is not None:
                conn.close()
            if holds_slot:
                self._release_slot(ep.host)
            if (ep.queue or ep.slow) and not self._closed:  # a job arrived while this worker was leaving
                ep.workers += 1
                self._spawn(self._worker(ep), f"modbus:{self.name}:{ep.name}")

    def _endpoint_failed(self, ep: _Endpoint, error: str) -> None:
        ep.failures += 1
        ep.last_error = error
        delay = min(self.opts.backoff_max_s, self.opts.backoff_initial_s * 2 ** (ep.failures - 1))
        ep.down_until = time.monotonic() + delay * random.uniform(0.8, 1.2)
        self.ctx.health.last_error = error

    async def _finish(self, job: _Job, samples: list[RawSample]) -> None:
        if job.future is not None:
            if not job.future.done():
                job.future.set_result(samples)
            return
        job.device.busy = False
        if samples and self._out is not None:
            await self._out.put(SampleBatch(samples))

    # ------------------------------------------------------------------ one device read
    def _fail_all(self, dev: _Device, reason: str, counter: str | None) -> list[RawSample]:
        health = self.ctx.health
        if counter:
            health.count(counter)
        health.count("device_failures")
        now = self.ctx.clock()
        self._set_state(dev, "down", reason)
        return [RawSample(self.name, p.rp.name, NAN, now, None, Quality.COMM_FAIL)
                for p in dev.points if p.opts.type != "string"]

    def _set_state(self, dev: _Device, state: str, reason: str) -> None:
        prev = dev.state
        dev.state = state
        if state == "down":
            dev.failures += 1
            backoff = min(dev.interval_s * 2 ** min(dev.failures - 1, 20),
                          max(dev.interval_s, self.opts.dead_probe_max_s))
            dev.next_probe = self._now_s() + backoff - dev.interval_s * 0.5
        else:
            dev.failures = 0
            dev.next_probe = 0.0
        self.ctx.health.links[dev.name] = state
        if prev != state and not (prev in ("unknown", "connecting") and state == "up"):
            msg = (f"device {dev.name} (unit {dev.unit} at {dev.host}:{dev.port}) is {state}"
                   + (f": {reason}" if reason else ""))
            self._event("link", msg, {"device": dev.name, "state": state, "reason": reason})

    def _event(self, kind: str, message: str, details: dict[str, Any]) -> None:
        journal = self.ctx.journal
        if journal is None:
            log.info("modbus %s: %s", self.name, message)
            return
        ev = Event(kind=kind, source=self.name, message=message, ts=self.ctx.clock(), details=details)

        async def _record() -> None:
            try:
                await journal.record(ev)
            except Exception:  # the journal must never stop reading
                self.ctx.health.count("journal_errors")

        if not self._closed:
            self._spawn(_record(), f"modbus:{self.name}:event")

    async def _read(self, conn: Connection, dev: _Device) -> list[RawSample]:
        health = self.ctx.health
        now_s = self._now_s()
        queue: deque[Request] = deque(self.plan_for(dev, now_s))
        words: dict[int, tuple[list[int], datetime]] = {}
        failed: dict[int, str] = {}
        device_down = ""
        ok_requests = 0
        # requests split after an exception: child -> (left, right); both answering teaches
        # the device's limits (see _learn)
        family: dict[int, tuple[Request, Request]] = {}
        answered: set[int] = set()
        while queue:
            req = queue.popleft()
            health.count("requests")
            try:
                regs = await conn.read(req.table, req.address, req.count, dev.unit, dev.timeout_s)
            except RequestTimeout as e:
                health.count("timeouts")
                device_down = str(e)
                for r in (req, *queue):
                    for it in r.items:
                        failed[it.index] = "timeout"
                queue.clear()
                if conn.timeouts_in_a_row >= self.opts.reconnect_after_timeouts:
                    conn.close()  # transaction ids may be out of step (Telegraf #14317)
                break
            except ExceptionAnswer as e:
                health.count("exceptions")
                health.count(f"exception_code_{e.code}")
                if e.code in (2, 3):
                    parts = split(req)
                    if parts:
                        health.count("splits")
                        family[id(parts[0])] = family[id(parts[1])] = (parts[0], parts[1])
                        queue.extendleft(reversed(parts))
                        continue
                    it0 = req.items[0]
                    dev.bad.remember(req.table, it0.address, now_s)
                    health.count("illegal_addresses")
                    self._report(dev, req, e.code, str(e))
                    for it in req.items:
                        failed[it.index] = f"exception {e.code}"
                    continue
                if e.code in (10, 11):  # the gateway cannot reach this unit
                    device_down = str(e)
                    for r in (req, *queue):
                        for it in r.items:
                            failed[it.index] = f"exception {e.code}"
                    queue.clear()
                    break
                self._report(dev, req, e.code, str(e))
                for it in req.items:
                    failed[it.index] = f"exception {e.code}"
                continue
            except (Desync, ConnectError) as e:
                health.count("desyncs" if isinstance(e, Desync) else "connection_lost")
                device_down = str(e)
                for r in (req, *queue):
                    for it in r.items:
                        failed[it.index] = "connection"
                queue.clear()
                health.last_error = str(e)
                break
            ok_requests += 1
            health.count("responses")
            answered.add(id(req))
            fam = family.get(id(req))
            if fam is not None and id(fam[0]) in answered and id(fam[1]) in answered:
                self._learn(dev, fam[0], fam[1], now_s)
            at = self.ctx.clock()
            for it in req.items:
                lo = it.address - req.address
                words[it.index] = (regs[lo : lo + it.words], at)
        # points skipped because they answered "illegal data address" before
        for p_index in range(len(dev.items)):
            if p_index not in words and p_index not in failed:
                failed[p_index] = "illegal data address (remembered)"
        if ok_requests == 0 and device_down:
            health.last_error = device_down
            health.count("device_failures")
            self._set_state(dev, "down", device_down)
        elif ok_requests:
            self._set_state(dev, "up", "")
            health.count("device_reads")
        return self._samples(dev, words, failed)

    def _learn(self, dev: _Device, left: Request, right: Request, now_s: float) -> None:
        """Both halves of a refused request answered: learn why the whole was refused.

        Halves with a gap between them: the device refuses reads across that gap (reserved
        registers), so plans will not merge across it. Adjacent halves: the device limits
        the length of a read, so its `max_registers` drops to the longer half.
        """
        health = self.ctx.health
        if right.address > left.end:
            dev.bad.remember_hole(left.table, left.end, right.address, now_s)
            health.count("learned_holes")
            what = f"registers {left.table} {left.end}..{right.address - 1} cannot be read: not merging across them"
        else:
            limit = max(left.count, right.count)
            if limit >= dev.max_registers:
                return
            dev.max_registers = limit
            dev.plan_key = (dev.plan_key[0], limit, dev.plan_key[2])
            health.count("learned_limits")
            what = f"refuses reads longer than {limit} registers: max_registers lowered to {limit}"
        self._event("data", f"device {dev.name}: {what}", {"device": dev.name, "table": left.table})

    def _report(self, dev: _Device, req: Request, code: int, message: str) -> None:
        key = (req.table, req.address, code)
        if key in dev.reported:
            return
        dev.reported.add(key)
        names = ", ".join(dev.points[it.index].rp.name for it in req.items)
        self._event("data", f"device {dev.name}: {message}; points {names}",
                    {"device": dev.name, "table": req.table, "address": req.address, "count": req.count,
                     "code": code, "points": names})

    def _samples(self, dev: _Device, words: dict[int, tuple[list[int], datetime]],
                 failed: dict[int, str]) -> list[RawSample]:
        health = self.ctx.health
        out: list[RawSample] = []
        fail_at = self.ctx.clock()
        last_at: datetime | None = None
        for i, p in enumerate(dev.points):
            got = words.get(i)
            if got is None:
                if p.opts.type != "string":
                    out.append(RawSample(self.name, p.rp.name, NAN, fail_at, None, Quality.COMM_FAIL))
                continue
            regs, at = got
            last_at = at
            o = p.opts
            try:
                if o.type == "string":
                    self._string(dev, p, codec.decode_string(regs, o.length or 0, p.order))
                    continue
                value = codec.decode(regs, o.type, p.order, o.bit)
            except (ValueError, OverflowError) as e:
                health.count("decode_errors")
                if self.ctx.dead_letter is not None:
                    payload = b"".join(int(w).to_bytes(2, "big") for w in regs)
                    self.ctx.dead_letter(self.name, f"{p.rp.name}: {e}", payload)
                out.append(RawSample(self.name, p.rp.name, NAN, at, None, Quality.INVALID))
                continue
            q = Quality.GOOD
            if math.isnan(value) or math.isinf(value):
                q = Quality.INVALID
            elif p.counter:
                value, wrapped = self._unwrap(p, value)
                if wrapped:
                    q |= Quality.ROLLOVER
                    health.count("rollovers")
            out.append(RawSample(self.name, p.rp.name, value, at, None, q))
        if last_at is not None:
            dev.last_read_at = last_at
            health.last_message_at = last_at
        health.count("samples", len(out))
        return out

    def _unwrap(self, p: _Point, raw: float) -> tuple[float, bool]:
        wrapped = False
        if p.modulus is not None and p.last_raw is not None and raw < p.last_raw \
                and p.last_raw - raw > p.modulus / 2:
            p.wraps += 1
            wrapped = True
        p.last_raw = raw
        if p.modulus is None:
            return raw, False
        return raw + p.wraps * p.modulus, wrapped

    def _string(self, dev: _Device, p: _Point, text: str) -> None:
        prev = dev.strings.get(p.rp.name)
        dev.strings[p.rp.name] = text
        if prev is not None and prev != text:
            self._event("data", f"device {dev.name}: {p.rp.name} changed from {prev!r} to {text!r}",
                        {"device": dev.name, "point": p.rp.name, "old": prev, "new": text})

    @property
    def strings(self) -> dict[str, dict[str, str]]:
        """Latest string points per device (serial numbers, firmware versions...)."""
        return {d.name: dict(d.strings) for d in self.devices if d.strings}

    def device_state(self, name: str) -> str:
        """'up', 'down', 'connecting' or 'unknown' for a device."""
        return self._by_name[name].state


class _SampleStream:
    """The async iterator `ModbusDriver.samples()` returns."""

    def __init__(self, driver: ModbusDriver, out: asyncio.Queue[SampleBatch]) -> None:
        self._driver = driver
        self._out = out

    def __aiter__(self) -> _SampleStream:
        return self

    async def __anext__(self) -> SampleBatch:
        drv = self._driver
        while True:
            if drv._failure is not None:
                raise DriverError(drv.name, f"internal failure: {drv._failure!r}") from drv._failure
            if drv._closed and self._out.empty():
                raise StopAsyncIteration
            try:
                async with asyncio.timeout(1.0):
                    return await self._out.get()
            except TimeoutError:
                continue


def create_driver(source: ResolvedSource, ctx: DriverContext) -> ModbusDriver:
    """The driver for a validated `kind = "modbus"` source."""
    return ModbusDriver(source, ctx)
