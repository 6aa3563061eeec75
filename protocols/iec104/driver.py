"""The IEC 60870-5-104 streaming driver (master / controlling station) on c104.

Data path: c104's client thread calls `on_receive_raw` for every APDU; the driver decodes the
whole ASDU there (protocols/iec104/decode.py: values, QDS and counter flags, CP56Time2a as UTC
straight from the wire), appends the samples to a bounded buffer and wakes the event loop with
`loop.call_soon_threadsafe` at most once per drain. `samples()` drains the buffer in batches
(at most one hand-over every `batch_ms`). When the consumer is slow the buffer fills up and
the c104 thread waits: the driver stops acknowledging, the RTU's k-window closes and it
throttles, so memory stays bounded and nothing that was acknowledged is dropped.

Links: per RTU every endpoint is connected with `Init.MUTED` (STOPDT). The supervisor (an
asyncio task) picks the first connected endpoint in priority order, sends STARTDT (`unmute`),
syncs the clock and runs a general interrogation per common address (never the broadcast
address). When the active link fails the next connected endpoint takes over at once; with
`switch_back` the main endpoint takes over again once it has been up for
`switch_back_delay_s`. Time-tagged samples that repeat what was already delivered (same key,
same device time) are dropped, so a switch-over produces no duplicates.

c104 2.2.1 defects handled (see shared notes): a link stuck in OPEN_MUTED is unmuted by a
watchdog after `muted_watchdog_s`; command results are never trusted (commands are sent
without waiting, and ActCon/ActTerm are read from the wire); one IOA arriving with two type
ids is decoded from the wire like any other and counted (`mismatched_type`); counter CY/CA and
CP56Time2a are decoded from the wire, not from c104's swapped flags and naive local times.
"""

# No `from __future__ import annotations`: c104 checks callback annotations as real objects.

import asyncio
import contextlib
import functools
import logging
import threading
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Self

import c104

from core.aio import wait_event
from core.config import ResolvedSource
from core.errors import ConfigError, ConfigIssue, ConnectError
from core.interfaces import DriverContext, SampleBatch
from core.records import Event, RawSample
from protocols.iec104 import decode as d
from protocols.iec104.config import Endpoint, RtuOptions, SourceOptions, TlsOptions

log = logging.getLogger(__name__)

_CONNECTED = ("OPEN", "OPEN_MUTED")
_COUNTER_TYPES = (d.M_IT_NA_1, d.M_IT_TA_1, d.M_IT_TB_1)
GI_RETRY_S = 5.0
STARTUP_PREFER_MAIN_S = 2.0
COUNTERS = ("messages", "updates", "errors", "decode_errors", "switchovers", "reconnects", "gi_incomplete",
            "gi_timeouts", "mismatched_type", "unmapped", "duplicates", "clock_syncs", "clock_sync_rejected",
            "muted_watchdog", "command_unknown", "backpressure_waits", "end_of_init")
"""Every counter the driver keeps; created up front, so c104's threads never add dict keys
while the collector iterates the counters."""


@dataclass
class GiRun:
    """One general (or counter) interrogation of a common address in progress."""

    ca: int
    counter: bool
    started: float
    ioas: set[int] = field(default_factory=set)
    confirmed: bool = False
    negative: bool = False
    done: asyncio.Future[bool] | None = None


class Link:
    """One endpoint of an RTU and its c104 connection."""

    def __init__(self, rtu: "Rtu", endpoint: Endpoint, index: int) -> None:
        self.rtu = rtu
        self.endpoint = endpoint
        self.index = index
        self.label = f"{rtu.name}/{endpoint.label}"
        self.conn: Any = None
        self.state = "CLOSED"  # c104 ConnectionState name, updated from callbacks
        self.connected_since: float | None = None
        self.muted_since: float | None = None

    @property
    def connected(self) -> bool:
        return self.state in _CONNECTED


class Rtu:
    """An RTU: its links in priority order, its common addresses and housekeeping state."""

    def __init__(self, name: str, opts: RtuOptions) -> None:
        self.name = name
        self.cas = list(opts.common_addresses)
        self.links = [Link(self, ep, i) for i, ep in enumerate(opts.endpoints)]
        self.active: Link | None = None
        self.ever_active: Link | None = None
        self.switched_at = 0.0
        self.startup: asyncio.Task[None] | None = None
        self.last_clock_sync = 0.0
        self.last_gi = 0.0
        self.counter_slot: int | None = None
        self.gi_retry_at = 0.0  # monotonic time of a GI retry after a failed one (0 = none)
        self.gi: dict[tuple[int, bool], GiRun] = {}  # (ca, counter) -> run in progress


async def _cancel(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait for it, cancelling again if a cancellation got lost."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
    if not task.cancelled():
        with contextlib.suppress(Exception):
            task.result()


def _tls(opts: TlsOptions) -> Any:
    ts = c104.TransportSecurity(validate=opts.validate_chain, only_known=opts.only_known_peers)
    ts.set_certificate(cert=str(opts.certificate), key=str(opts.key), passphrase=opts.passphrase)
    if opts.ca is not None:
        ts.set_ca_certificate(cert=str(opts.ca))
    for peer in opts.allowed_peers:
        ts.add_allowed_remote_certificate(cert=str(peer))
    v = c104.TlsVersion.TLS_1_3 if opts.min_version == "1.3" else c104.TlsVersion.TLS_1_2
    ts.set_version(min=v, max=c104.TlsVersion.TLS_1_3)
    return ts


def parse_key(key: str) -> tuple[int, int] | None:
    """`"<ca>/<ioa>"` -> (ca, ioa), or None when the key has another form."""
    parts = key.split("/")
    if len(parts) == 2 and parts[0].isdigit() and parts[1].isdigit():
        return int(parts[0]), int(parts[1])
    return None


class Iec104Driver:
    """A `StreamingDriver` for one `iec104` source (one or more RTUs)."""

    def __init__(self, source: ResolvedSource, ctx: DriverContext) -> None:
        self.source = source
        self.name = source.name
        self.ctx = ctx
        self.opts: SourceOptions = source.options
        self.rtus = self._build_rtus()
        self.keys: dict[tuple[int, int], str] = {}
        self.expected: dict[int, set[int]] = {}
        self._map_points()
        self._type_of: dict[tuple[int, int], int] = {}
        self._mismatched: set[tuple[int, int]] = set()
        self._counter_ioas: dict[int, set[int]] = {}
        self._unmapped: set[str] = set()
        self._last: dict[str, tuple[datetime, float]] = {}
        self._switch_until = 0.0  # monotonic time until which older device times are duplicates
        self._skew: dict[int, float] = {}
        # hand-over buffer
        self._cv = threading.Condition()
        self._pending: list[RawSample] = []
        self._wake_scheduled = False
        self._closing = False
        self.pending_high = 0  # the most samples ever waiting in the buffer (bounded by max_pending + 1 ASDU)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None
        self._clients: list[Any] = []
        self._exec: ThreadPoolExecutor | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None
        self._started_at = 0.0
        self.gi_results: list[tuple[int, int, float]] = []  # (ca, objects, seconds), for tests/bench
        for name in COUNTERS:
            ctx.health.counters[name] += 0

    # ------------------------------------------------------------------ set-up
    def _build_rtus(self) -> list[Rtu]:
        rtus: list[Rtu] = []
        if self.opts.endpoints:
            rtus.append(Rtu(self.name, RtuOptions(endpoints=self.opts.endpoints,
                                                  common_addresses=self.opts.common_addresses)))
        for dev in self.source.devices:
            if not isinstance(dev.options, RtuOptions):
                raise ConfigError([ConfigIssue(self.name, f"devices.{dev.name}.options",
                                               "an iec104 device needs endpoints and common_addresses")])
            rtus.append(Rtu(dev.name, dev.options))
        if not rtus:
            raise ConfigError([ConfigIssue(self.name, "options.endpoints",
                                           "no RTU: give endpoints + common_addresses or devices")])
        seen: dict[int, str] = {}
        for r in rtus:
            for ca in r.cas:
                if ca in seen:
                    raise ConfigError([ConfigIssue(self.name, f"devices.{r.name}.common_addresses",
                                                   f"common address {ca} also used by {seen[ca]}")])
                seen[ca] = r.name
        return rtus

    def _map_points(self) -> None:
        dev_ca = {r.name: r.cas[0] for r in self.rtus}
        for rp in self.source.points:
            po = rp.options
            ca = getattr(po, "ca", None)
            ioa = getattr(po, "ioa", None)
            parsed = parse_key(rp.key)
            if ca is None:
                ca = parsed[0] if parsed else dev_ca.get(rp.device)
            if ioa is None and parsed:
                ioa = parsed[1]
            if ca is None or ioa is None:
                raise ConfigError([ConfigIssue(self.name, f"points.{rp.name}",
                                               "give options.ca and options.ioa or a key \"<ca>/<ioa>\"")])
            if (ca, ioa) in self.keys:
                raise ConfigError([ConfigIssue(self.name, f"points.{rp.name}",
                                               f"CA {ca} IOA {ioa} is mapped twice")])
            self.keys[(ca, ioa)] = rp.key
            ptype = getattr(po, "type", None) or ""
            if rp.spec.kind == "counter" or ptype.startswith("M_IT"):
                continue  # integrated totals answer counter interrogation, not GI
            self.expected.setdefault(ca, set()).add(ioa)

    def _rtu_of_ca(self, ca: int) -> Rtu | None:
        for r in self.rtus:
            if ca in r.cas:
                return r
        return None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._started_at = time.monotonic()
        self._event = asyncio.Event()
        self._closing = False
        self._failure = None
        self._exec = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"iec104-{self.name}")
        o = self.opts
        # One c104 client per endpoint: c104 aborts the process when a thread waits more than
        # 100 ms for a callback's mutex, so no callback object may be shared between the
        # receive threads of two connections (and our receive callback may block for
        # backpressure).
        clients = []
        for rtu in self.rtus:
            rtu.active = None
            for link in rtu.links:
                client = c104.Client(tick_rate_ms=o.tick_rate_ms, command_timeout_ms=o.command_timeout_ms,
                                     transport_security=_tls(o.tls) if o.tls else None)
                conn = client.add_connection(ip=link.endpoint.host, port=link.endpoint.port, init=c104.Init.MUTED)
                if conn is None:
                    raise ConfigError([ConfigIssue(self.name, "endpoints", f"c104 refused endpoint {link.label}")])
                pp = conn.protocol_parameters
                pp.send_window_size = o.k
                pp.receive_window_size = o.w
                pp.message_timeout = o.t1_s
                pp.confirm_interval = o.t2_s
                pp.keep_alive_interval = o.t3_s
                conn.on_receive_raw(callable=functools.partial(self._on_raw, link))
                conn.on_state_change(callable=functools.partial(self._on_state, link))
                # No c104 stations: values are decoded from the raw APDUs. Without this no-op
                # callback c104 would create a station and a point object for every IOA it sees
                # (50,000 points held twice; its point mutex stalls the client loop under load).
                client.on_new_station(callable=self._on_new_station)
                link.conn = conn
                link.state = "CLOSED"
                self.ctx.health.links[link.label] = "connecting"
                clients.append(client)
        self._clients = clients
        for client in clients:
            client.start()
        self._supervisor = asyncio.create_task(self._supervise(), name=f"iec104-supervisor-{self.name}")

    async def close(self) -> None:
        """Stop the supervisor and the c104 client (idempotent)."""
        with self._cv:
            self._closing = True
            self._cv.notify_all()
        if self._supervisor is not None:
            await _cancel(self._supervisor)
            self._supervisor = None
        for rtu in self.rtus:
            if rtu.startup is not None:
                await _cancel(rtu.startup)
                rtu.startup = None
        clients, self._clients = self._clients, []
        for client in clients:
            await asyncio.to_thread(client.stop)
        if self._exec is not None:
            self._exec.shutdown(wait=False, cancel_futures=True)
            self._exec = None
        with self._cv:
            self._pending = []
            self._wake_scheduled = False

    # ------------------------------------------------------------------ c104 thread
    def _on_new_station(self, client: c104.Client, connection: c104.Connection, common_address: int) -> None:
        return None

    def _on_state(self, link: Link, connection: c104.Connection, state: c104.ConnectionState) -> None:
        name = state.name
        prev = link.state
        link.state = name
        log.debug("%s: %s %s -> %s", self.name, link.label, prev, name)
        now = time.monotonic()
        if name in _CONNECTED and prev not in _CONNECTED:
            link.connected_since = now
        if name not in _CONNECTED:
            link.connected_since = None
        link.muted_since = now if name == "OPEN_MUTED" else None

    def _on_raw(self, link: Link, connection: c104.Connection, data: bytes) -> None:
        try:
            self._handle_apdu(link, data)
        except Exception as e:  # never let an exception escape into c104's thread
            self.ctx.health.count("errors")
            self.ctx.health.count("decode_errors")
            self.ctx.health.last_error = f"{link.label}: {e}"
            if self.ctx.dead_letter is not None:
                with contextlib.suppress(Exception):
                    self.ctx.dead_letter(self.name, f"apdu from {link.label}: {e}", bytes(data))

    def _handle_apdu(self, link: Link, data: bytes) -> None:
        received = self.ctx.clock()
        asdu = d.decode_apdu(data, received)
        if asdu is None:
            return
        h = self.ctx.health
        h.count("messages")
        h.last_message_at = received
        if not asdu.objects:
            self._on_command(link, asdu)
            return
        ca = asdu.ca
        cot = asdu.cot
        tid = asdu.type_id
        keys = self.keys
        out: list[RawSample] = []
        gi = None
        if d.cot_is_interrogation(cot):
            gi = link.rtu.gi.get((ca, False))
        elif d.cot_is_counter(cot):
            gi = link.rtu.gi.get((ca, True))
        types = self._type_of
        last = self._last
        dedup_old = time.monotonic() < self._switch_until
        dup = 0
        src = self.name
        for ob in asdu.objects:
            k2 = (ca, ob.ioa)
            t0 = types.get(k2)
            if t0 is None:
                types[k2] = tid
                if tid in _COUNTER_TYPES:
                    self._counter_ioas.setdefault(ca, set()).add(ob.ioa)
            elif t0 != tid and k2 not in self._mismatched:
                self._mismatched.add(k2)
                h.count("mismatched_type")
                log.info("%s: CA %d IOA %d arrives as %s and %s (handled)", src, ca, ob.ioa,
                         d.TYPE_NAMES.get(t0, t0), d.TYPE_NAMES.get(tid, tid))
            key = keys.get(k2)
            if key is None:
                key = f"{ca}/{ob.ioa}"
                if key not in self._unmapped:
                    self._unmapped.add(key)
                    h.count("unmapped")
                    # with auto_register the collector registers it: worth a note, not a warning
                    log.log(logging.INFO if self.opts.auto_register else logging.WARNING,
                            "%s: unmapped point CA %d IOA %d (%s)", src, ca, ob.ioa, d.TYPE_NAMES.get(tid))
            if gi is not None:
                gi.ioas.add(ob.ioa)
            ts = ob.device_ts
            if ts is not None:
                prev = last.get(key)
                if prev is not None and ((ts == prev[0] and ob.value == prev[1]) or (dedup_old and ts < prev[0])):
                    dup += 1
                    continue
                last[key] = (ts, ob.value)
            out.append(RawSample(src, key, ob.value, received, ts, ob.quality))
        if dup:
            h.count("duplicates", dup)
        if cot == d.COT_SPONTANEOUS and asdu.objects[0].device_ts is not None:
            skew = (asdu.objects[0].device_ts - received).total_seconds()
            old = self._skew.get(ca)
            self._skew[ca] = skew if old is None else 0.9 * old + 0.1 * skew  # published by samples()
        h.count("updates", len(out))
        if out:
            self._push(out)

    def _push(self, out: list[RawSample]) -> None:
        with self._cv:
            while len(self._pending) >= self.opts.max_pending and not self._closing:
                # Backpressure: hold c104's receive thread, so no more acknowledgements go out
                # and the RTU's k-window throttles it.
                self.ctx.health.count("backpressure_waits")
                self._cv.wait(0.1)
            if self._closing:
                return
            self._pending.extend(out)
            if len(self._pending) > self.pending_high:
                self.pending_high = len(self._pending)
            if not self._wake_scheduled and self._loop is not None:
                self._wake_scheduled = True
                try:
                    self._loop.call_soon_threadsafe(self._wake)
                except RuntimeError:  # loop closed
                    self._wake_scheduled = False

    def _wake(self) -> None:
        if self._event is not None:
            self._event.set()

    def _on_command(self, link: Link, asdu: d.Asdu) -> None:
        h = self.ctx.health
        tid, cot, ca = asdu.type_id, asdu.cot, asdu.ca
        if tid in (d.C_IC_NA_1, d.C_CI_NA_1):
            run = link.rtu.gi.get((ca, tid == d.C_CI_NA_1))
            if run is None:
                return
            if cot == d.COT_ACTCON:
                run.confirmed = True
                if asdu.negative:
                    run.negative = True
                    h.count("errors")
                    h.last_error = f"{link.label}: {d.TYPE_NAMES[tid]} for CA {ca} confirmed negatively"
                    self._finish(run, False)
            elif cot == d.COT_ACTTERM:
                self._finish(run, not asdu.negative)
        elif tid == d.C_CS_NA_1 and cot == d.COT_ACTCON:
            if asdu.negative:
                h.count("clock_sync_rejected")
            else:
                h.count("clock_syncs")
        elif tid == d.M_EI_NA_1:
            h.count("end_of_init")
            # The RTU (re)initialised: interrogate again, unless this is the greeting right after
            # our own activation, which is followed by the start-up GI anyway.
            if link is link.rtu.active and time.monotonic() - link.rtu.switched_at > 5.0:
                link.rtu.last_gi = 0.0

    def _finish(self, run: GiRun, ok: bool) -> None:
        fut = run.done
        if fut is not None and self._loop is not None:
            def setres() -> None:
                if not fut.done():
                    fut.set_result(ok)
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(setres)

    # ------------------------------------------------------------------ commands
    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a c104 call on the command thread (never on the event loop: c104 may block)."""
        loop = asyncio.get_running_loop()
        if self._exec is None:
            raise ConnectError(self.name, "driver is not running")
        return await loop.run_in_executor(self._exec, functools.partial(fn, *args, **kwargs))

    async def interrogate(self, ca: int, *, counter: bool = False, freeze: str = "read") -> bool:
        """General (or counter) interrogation of one CA on its active link; True when ActTerm
        arrived. Completeness is checked against the points mapped for that CA."""
        rtu = self._rtu_of_ca(ca)
        if rtu is None:
            raise ValueError(f"CA {ca} belongs to no RTU of source {self.name}")
        link = rtu.active
        if link is None or link.state != "OPEN":
            return False
        loop = asyncio.get_running_loop()
        run = GiRun(ca, counter, time.monotonic(), done=loop.create_future())
        rtu.gi[(ca, counter)] = run
        try:
            if counter:
                frz = {"read": c104.Frz.READ, "freeze": c104.Frz.FREEZE_WITHOUT_RESET,
                       "freeze_reset": c104.Frz.FREEZE_WITH_RESET}[freeze]
                res = await self._call(link.conn.counter_interrogation, common_address=ca,
                                       cause=c104.Cot.ACTIVATION, qualifier=c104.Rqt.GENERAL, freeze=frz,
                                       wait_for_response=False)
            else:
                res = await self._call(link.conn.interrogation, common_address=ca, cause=c104.Cot.ACTIVATION,
                                       qualifier=c104.Qoi.STATION, wait_for_response=False)
            if not res:
                # c104 may say False although the command went out: treat as unknown and let
                # ActCon/ActTerm on the wire decide.
                self.ctx.health.count("command_unknown")
            assert run.done is not None
            try:
                ok = await asyncio.wait_for(asyncio.shield(run.done), self.opts.gi_timeout_s)
            except TimeoutError:
                self.ctx.health.count("gi_timeouts")
                ok = False
            elapsed = time.monotonic() - run.started
            if not counter:
                self.gi_results.append((ca, len(run.ioas), elapsed))
                self._check_complete(rtu, run, ok)
            return ok
        finally:
            rtu.gi.pop((ca, counter), None)

    def _check_complete(self, rtu: Rtu, run: GiRun, ok: bool) -> None:
        if not self.opts.check_gi_complete:
            return
        expected = self.expected.get(run.ca, set())
        counters = self._counter_ioas.get(run.ca, set()).copy()  # copy(): the c104 thread adds to it
        missing = expected - run.ioas.copy() - counters
        if ok and not missing:
            return
        h = self.ctx.health
        h.count("gi_incomplete")
        why = "no ActTerm" if not ok else f"{len(missing)} of {len(expected)} expected points missing"
        sample = ", ".join(str(i) for i in sorted(missing)[:10])
        h.last_error = f"{rtu.name}: GI of CA {run.ca} incomplete: {why}" + (f" (IOA {sample} ...)" if missing else "")
        log.warning("%s", h.last_error)
        self._journal("data", h.last_error, {"ca": run.ca, "missing": len(missing)})

    async def clock_sync(self, ca: int) -> bool:
        """Send C_CS_NA_1 to one CA (confirmation is counted when ActCon arrives)."""
        rtu = self._rtu_of_ca(ca)
        if rtu is None or rtu.active is None or rtu.active.state != "OPEN":
            return False
        res = await self._call(rtu.active.conn.clock_sync, common_address=ca, wait_for_response=False)
        if not res:
            self.ctx.health.count("command_unknown")
        return True

    async def counter_interrogation(self, ca: int, mode: str | None = None) -> bool:
        """Counter interrogation of one CA per `mode` (read / freeze_read / freeze_reset_read)."""
        mode = mode or self.opts.counter_mode
        if mode == "off":
            return False
        if mode != "read":
            await self.interrogate(ca, counter=True, freeze="freeze" if mode == "freeze_read" else "freeze_reset")
        return await self.interrogate(ca, counter=True, freeze="read")

    # ------------------------------------------------------------------ supervisor
    def _journal(self, kind: str, message: str, details: dict[str, Any] | None = None) -> None:
        j = self.ctx.journal
        if j is None:
            return
        ev = Event(kind=kind, source=self.name, message=message, ts=self.ctx.clock(), details=details or {})

        async def rec() -> None:
            with contextlib.suppress(Exception):
                await j.record(ev)

        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(rec())

    async def _supervise(self) -> None:
        try:
            while True:
                for rtu in self.rtus:
                    await self._tick(rtu)
                await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # surface in samples()
            self._failure = e
            if self._event is not None:
                self._event.set()

    async def _tick(self, rtu: Rtu) -> None:
        now = time.monotonic()
        h = self.ctx.health
        active = rtu.active
        if active is not None and not active.connected:
            log.warning("%s: link %s down", self.name, active.label)
            self._journal("link", f"link {active.label} down", {"rtu": rtu.name})
            rtu.active = None
            if rtu.startup is not None:
                rtu.startup.cancel()
                rtu.startup = None
            active = None
        if active is None:
            cand = next((lk for lk in rtu.links if lk.connected), None)
            if cand is not None and cand.index > 0 and rtu.ever_active is None \
                    and now - self._started_at < STARTUP_PREFER_MAIN_S:
                cand = None  # at start-up give the main endpoint a moment to connect first
            if cand is not None:
                await self._activate(rtu, cand)
        elif self.opts.switch_back and active.index > 0:
            better = next((lk for lk in rtu.links[: active.index] if lk.connected and lk.connected_since is not None
                           and now - lk.connected_since >= self.opts.switch_back_delay_s), None)
            if better is not None:
                await self._call(active.conn.mute)
                await self._activate(rtu, better)
        active = rtu.active
        # watchdog: the active link must be OPEN (c104 sometimes never sends STARTDT)
        if active is not None and active.state == "OPEN_MUTED" and active.muted_since is not None \
                and now - active.muted_since >= self.opts.muted_watchdog_s:
            h.count("muted_watchdog")
            active.muted_since = now
            await self._call(active.conn.unmute)
        # standby links stay muted
        for lk in rtu.links:
            if lk is not rtu.active and lk.state == "OPEN":
                await self._call(lk.conn.mute)
            h.links[lk.label] = ("up" if lk.state == "OPEN" else "muted") if lk is rtu.active else (
                "standby" if lk.connected else "down")
        # housekeeping on the active link, when the start-up sequence is over
        if rtu.active is not None and rtu.active.state == "OPEN" and (rtu.startup is None or rtu.startup.done()):
            o = self.opts
            due: list[str] = []
            if o.clock_sync and (rtu.last_clock_sync == 0.0
                                 or (o.clock_sync_min and now - rtu.last_clock_sync >= o.clock_sync_min * 60)):
                due.append("clock")
            if ((o.gi_interval_min and now - rtu.last_gi >= o.gi_interval_min * 60) or rtu.last_gi == 0.0
                    or (rtu.gi_retry_at and now >= rtu.gi_retry_at)):
                rtu.gi_retry_at = 0.0
                due.append("gi")
            if o.counter_mode != "off":
                slot = int(self.ctx.clock().timestamp() // (o.counter_interval_min * 60))
                if rtu.counter_slot is None:
                    rtu.counter_slot = slot
                elif slot != rtu.counter_slot:
                    rtu.counter_slot = slot
                    due.append("counter")
            if due:
                rtu.startup = asyncio.create_task(self._housekeeping(rtu, due), name=f"iec104-hk-{rtu.name}")

    async def _activate(self, rtu: Rtu, link: Link) -> None:
        h = self.ctx.health
        prev = rtu.ever_active
        if prev is not None and prev is not link:
            h.count("switchovers")
            self._switch_until = time.monotonic() + self.opts.dedup_window_s
            self._journal("link", f"switch-over to {link.label} (from {prev.label})", {"rtu": rtu.name})
            log.warning("%s: switch-over to %s", self.name, link.label)
        elif prev is not None:
            h.count("reconnects")
            self._journal("link", f"link {link.label} up again", {"rtu": rtu.name})
        else:
            self._journal("link", f"link {link.label} up", {"rtu": rtu.name})
        rtu.active = link
        rtu.ever_active = link
        rtu.switched_at = time.monotonic()
        link.muted_since = time.monotonic()
        await self._call(link.conn.unmute)
        rtu.last_gi = 0.0
        rtu.last_clock_sync = 0.0
        if rtu.startup is not None:
            rtu.startup.cancel()
            rtu.startup = None

    async def _housekeeping(self, rtu: Rtu, due: list[str]) -> None:
        now = time.monotonic()
        try:
            if "clock" in due:
                rtu.last_clock_sync = now
                for ca in rtu.cas:
                    await self.clock_sync(ca)
            if "gi" in due:
                rtu.last_gi = now
                ok = True
                for ca in rtu.cas:
                    ok = await self.interrogate(ca) and ok
                if not ok:  # link not open, negative or unterminated GI: try again soon
                    rtu.gi_retry_at = time.monotonic() + GI_RETRY_S
            if "counter" in due:
                for ca in rtu.cas:
                    await self.counter_interrogation(ca)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # never lose a housekeeping failure silently
            h = self.ctx.health
            h.count("errors")
            h.last_error = f"{rtu.name}: housekeeping ({', '.join(due)}) failed: {e!r}"
            log.exception("%s", h.last_error)
            rtu.gi_retry_at = time.monotonic() + GI_RETRY_S

    # ------------------------------------------------------------------ stream
    def links_up(self) -> bool:
        return any(lk.connected for r in self.rtus for lk in r.links)

    async def samples(self) -> AsyncIterator[SampleBatch]:
        """Yield batches of samples; raise `ConnectError` when every link is down."""
        if not self._clients:
            await self._start()
        assert self._event is not None
        event = self._event
        started = time.monotonic()
        down_since: float | None = None
        batch_s = self.opts.batch_ms / 1000.0
        try:
            while True:
                await wait_event(event, 0.25)
                if self._failure is not None:
                    raise ConnectError(self.name, f"supervisor failed: {self._failure!r}") from self._failure
                event.clear()
                with self._cv:
                    batch = self._pending
                    self._pending = []
                    self._wake_scheduled = False
                    self._cv.notify_all()
                for ca, skew in list(self._skew.items()):
                    self.ctx.health.gauges[f"clock_skew_s:{ca}"] = round(skew, 3)
                if batch:
                    yield SampleBatch(batch)
                    if len(batch) < 1000:
                        await asyncio.sleep(batch_s)  # let the next batch collect
                now = time.monotonic()
                if self.links_up():
                    down_since = None
                    continue
                limit = self.opts.connect_timeout_s if now - started < self.opts.connect_timeout_s + 1 else \
                    self.opts.down_grace_s
                if down_since is None:
                    down_since = started if now - started < limit else now
                if now - down_since >= limit:
                    for r in self.rtus:
                        for lk in r.links:
                            self.ctx.health.links[lk.label] = "down"
                    eps = ", ".join(lk.label for r in self.rtus for lk in r.links)
                    raise ConnectError(self.name, f"all links down ({eps})")
        finally:
            if self._closing or down_since is not None:
                await self.close()

