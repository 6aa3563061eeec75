"""An IEC 60870-5-104 outstation (RTU) built on c104's server.

- Stations (common addresses) with points of every monitoring type the collector decodes.
- Spontaneous transmission on change with a per-point deadband, in multi-object ASDUs
  (`c104.Batch`, grouped per station and type), periodic / background scan.
- GI and counter interrogation are answered by c104; clock sync commands are recorded.
- Quality flags (OV BL SB NT IV, counter CY CA IV) and time tags (CP56Time2a).
- Mixed-type IOAs: a share of points is answered untagged in GI (e.g. M_ME_NC_1) and sent
  tagged spontaneously (M_ME_TF_1), as real RTUs do. c104 binds one type per point, so the
  simulator swaps the point's type around the spontaneous transmission.
- Main and reserve endpoints: one c104 server per port, sharing the point values; `kill()`
  and `restart()` an endpoint to test switch-over.
- Pacing: c104's server queue holds 100 messages and overwrites silently; every transmission
  is paced against what `on_send_raw` shows actually left the server, so nothing is lost.

Notes on c104 2.2.1 found here: `recorded_at` must be a naive datetime in the process's local
time (an aware one is read as local wall time); the server does not queue for muted (STOPDT)
connections.
"""

# No `from __future__ import annotations`: c104 checks callback annotations as real objects.

import asyncio
import functools
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import c104
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from core.aio import wait_event

log = logging.getLogger(__name__)

# untagged type -> its CP56Time2a twin (for mixed-type IOAs)
TAGGED_TWIN = {
    "M_SP_NA_1": "M_SP_TB_1", "M_DP_NA_1": "M_DP_TB_1", "M_ST_NA_1": "M_ST_TB_1",
    "M_BO_NA_1": "M_BO_TB_1", "M_ME_NA_1": "M_ME_TD_1", "M_ME_NB_1": "M_ME_TE_1",
    "M_ME_NC_1": "M_ME_TF_1", "M_IT_NA_1": "M_IT_TB_1",
}
SUPPORTED_TYPES = (*TAGGED_TWIN, *TAGGED_TWIN.values())
COUNTER_TYPES = ("M_IT_NA_1", "M_IT_TB_1")

_QDS_BITS = ((0x01, "Overflow"), (0x10, "Blocked"), (0x20, "Substituted"), (0x40, "NonTopical"),
             (0x80, "Invalid"))
_BCR_BITS = ((0x20, "Carry"), (0x40, "Adjusted"), (0x80, "Invalid"))  # c104 server: Carry -> CY on the wire
_DOUBLE = (c104.Double.INTERMEDIATE, c104.Double.OFF, c104.Double.ON, c104.Double.INDETERMINATE)


_QCACHE: dict[int, c104.Quality] = {}
_BCACHE: dict[int, c104.BinaryCounterQuality] = {}
_TSCACHE: dict[tuple[datetime, int], datetime] = {}


def _quality(bits: int) -> c104.Quality:
    cached = _QCACHE.get(bits)
    if cached is not None:
        return cached
    q = c104.Quality()
    for mask, name in _QDS_BITS:
        if bits & mask:
            q = q | getattr(c104.Quality, name)
    _QCACHE[bits] = q
    return q


def _counter_quality(bits: int) -> c104.BinaryCounterQuality:
    cached = _BCACHE.get(bits)
    if cached is not None:
        return cached
    q = c104.BinaryCounterQuality()
    for mask, name in _BCR_BITS:
        if bits & mask:
            q = q | getattr(c104.BinaryCounterQuality, name)
    _BCACHE[bits] = q
    return q


def _local_naive(ts: datetime) -> datetime:
    """c104 reads datetimes as local wall time: give it exactly that (cached: batches share a time)."""
    key = (ts, time.timezone)  # keyed by the zone too: tests switch TZ at run time
    v = _TSCACHE.get(key)
    if v is None:
        if len(_TSCACHE) > 4096:
            _TSCACHE.clear()
        v = _TSCACHE[key] = ts.astimezone().replace(tzinfo=None)
    return v


_ELEMENT_BYTES = {"SP": 1, "DP": 1, "ST": 2, "BO": 5, "IT": 5}


def _objects_per_asdu(type_name: str) -> int:
    """A lower bound of the objects c104 puts in one ASDU of `type_name` (IOA each, no SQ),
    capped at 16 so the queue estimate stays an upper bound whatever c104 packs."""
    kind = type_name[2:4]
    size = _ELEMENT_BYTES.get(kind) or (5 if type_name[5:7] in ("NC", "TC", "TF") else 3)
    tag = 7 if type_name[5] == "T" and type_name[6] in "BDEF" else (3 if type_name[5] == "T" else 0)
    return max(1, min(16, 240 // (3 + size + tag)))


def make_info(type_name: str, value: float, quality: int, ts: datetime | None) -> Any:
    """The c104 Information object for a value of `type_name` (quality = wire bits)."""
    rec = _local_naive(ts) if ts is not None else None
    kind = type_name[2:4]
    sub = type_name[5:7]
    if kind == "SP":
        return c104.SingleInfo(on=bool(value), quality=_quality(quality), recorded_at=rec)
    if kind == "DP":
        return c104.DoubleInfo(state=_DOUBLE[int(value) & 3], quality=_quality(quality), recorded_at=rec)
    if kind == "ST":
        return c104.StepInfo(c104.Int7(max(-64, min(63, int(value)))), False, _quality(quality), rec)
    if kind == "BO":
        # c104.Byte32(int) silently yields 0 in 2.2.1: pass the bytes (wire order, little endian)
        blob = c104.Byte32((int(value) & 0xFFFFFFFF).to_bytes(4, "little"))
        return c104.BinaryInfo(blob=blob, quality=_quality(quality), recorded_at=rec)
    if kind == "IT":
        seq = int(quality >> 8) & 0x1F  # optional sequence number in bits 8..12
        return c104.BinaryCounterInfo(counter=int(value), sequence=c104.UInt5(seq),
                                      quality=_counter_quality(quality), recorded_at=rec)
    if kind == "ME":
        if sub in ("NA", "TA", "TD", "ND"):  # normalized
            return c104.NormalizedInfo(actual=c104.NormalizedFloat(max(-1.0, min(value, 32767 / 32768))),
                                       quality=_quality(quality), recorded_at=rec)
        if sub in ("NB", "TB", "TE"):  # scaled
            return c104.ScaledInfo(actual=c104.Int16(max(-32768, min(32767, int(value)))),
                                   quality=_quality(quality), recorded_at=rec)
        return c104.ShortInfo(actual=float(value), quality=_quality(quality), recorded_at=rec)
    raise ValueError(f"unsupported type {type_name}")


@dataclass
class PointDef:
    """One simulated point. `mixed`: GI untagged (`type`), spontaneous tagged (its twin)."""

    ca: int
    ioa: int
    type: str = "M_ME_NC_1"
    deadband: float = 0.0
    value: float = 0.0
    quality: int = 0
    mixed: bool = False
    last_sent: float | None = None
    ts: datetime | None = None


@dataclass(frozen=True, slots=True)
class Update:
    """A new value for (ca, ioa). `quality` holds the wire bits (QDS, or BCR flags for counters)."""

    ca: int
    ioa: int
    value: float
    quality: int = 0
    ts: datetime | None = None


class _Endpoint:
    """One c104 server (one port) carrying every station; counts what really left it."""

    def __init__(self, owner: "Outstation", port: int) -> None:
        self.owner = owner
        self.port = port
        self.server: c104.Server | None = None
        self.points: dict[tuple[int, int], Any] = {}
        self.stations: dict[int, Any] = {}
        self.sent_objects = 0  # spontaneous/periodic objects written to the socket
        self.enqueued_objects = 0
        self.sent_msgs = 0  # ... and the ASDUs that carried them
        self.enqueued_msgs = 0  # an upper bound of the ASDUs enqueued (resynchronised when drained)
        self.cond = threading.Condition()

    def build(self) -> None:
        o = self.owner
        srv = c104.Server(ip=o.host, port=self.port, tick_rate_ms=o.tick_rate_ms,
                          transport_security=o.tls() if o.tls else None)
        srv.protocol_parameters.send_window_size = o.k
        srv.protocol_parameters.receive_window_size = o.w
        srv.on_send_raw(callable=self._on_send_raw)
        srv.on_clock_sync(callable=self._on_clock_sync)
        for ca in sorted({p.ca for p in o.points.values()}):
            self.stations[ca] = srv.add_station(common_address=ca)
        for key, p in o.points.items():
            pt = self.stations[p.ca].add_point(io_address=p.ioa, type=getattr(c104.Type, p.type))
            pt.info = make_info(p.type, p.value, p.quality, p.ts or datetime.now(UTC))
            self.points[key] = pt
        self.server = srv
        self.sent_objects = self.enqueued_objects = self.sent_msgs = self.enqueued_msgs = 0

    def _on_send_raw(self, server: c104.Server, data: bytes) -> None:
        # Count monitoring objects sent with a periodic/background/spontaneous cause.
        if len(data) > 9 and not data[2] & 0x01 and data[6] < 45 and (data[8] & 0x3F) in (1, 2, 3):
            with self.cond:
                self.sent_objects += data[7] & 0x7F
                self.sent_msgs += 1
                self.cond.notify_all()

    def _on_clock_sync(self, server: c104.Server, ip: str, date_time: datetime) -> c104.ResponseState:
        self.owner.clock_syncs.append((ip, date_time))
        return c104.ResponseState.SUCCESS

    @property
    def active(self) -> bool:
        return self.server is not None and self.server.is_running and self.server.active_connection_count > 0

    def wait_room(self, objects: int, msgs: int, timeout: float) -> bool:
        """Pace: wait until c104's queue (100 ASDUs) has room for `msgs` more ASDUs, then
        account for them. `msgs` is an upper bound; the estimate is resynchronised with what
        was really sent whenever the queue has drained."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                if self.sent_objects >= self.enqueued_objects:
                    self.enqueued_msgs = self.sent_msgs
                if self.enqueued_msgs + msgs - self.sent_msgs <= self.owner.max_queued:
                    self.enqueued_objects += objects
                    self.enqueued_msgs += msgs
                    return True
                left = deadline - time.monotonic()
                if left <= 0 or not self.active:
                    return False
                self.cond.wait(min(left, 0.05))


class Outstation:
    """A simulated RTU: `Outstation(points, ports=[main, reserve])`, then `start()` / `stop()`.

    `update()` / `update_many()` set values and transmit spontaneously (deadband applies);
    `scan()` sends every point with COT periodic or background; `kill(i)` / `restart(i)` stop
    and start one endpoint. `sent` counts the objects that left each endpoint (not GI answers).
    """

    def __init__(self, points: Iterable[PointDef], *, ports: Sequence[int], host: str = "127.0.0.1",
                 k: int = 600, w: int = 400, tick_rate_ms: int = 50, max_queued: int = 90,
                 tls: Callable[[], c104.TransportSecurity] | None = None) -> None:
        self.host = host
        self.k, self.w = k, w
        self.tick_rate_ms = tick_rate_ms
        self.max_queued = max_queued
        self.tls = tls
        self.points: dict[tuple[int, int], PointDef] = {}
        for p in points:
            if p.type not in SUPPORTED_TYPES:
                raise ValueError(f"point {p.ca}/{p.ioa}: unsupported type {p.type}")
            if (p.ca, p.ioa) in self.points:
                raise ValueError(f"point {p.ca}/{p.ioa} defined twice")
            if p.last_sent is None:
                p.last_sent = p.value  # the initial value is what GI reports
            self.points[(p.ca, p.ioa)] = p
        self.endpoints = [_Endpoint(self, port) for port in ports]
        self.clock_syncs: list[tuple[str, datetime]] = []
        self.lock = threading.RLock()
        self.lost = 0  # objects not transmitted because pacing timed out on an active endpoint

    @property
    def ports(self) -> list[int]:
        return [e.port for e in self.endpoints]

    def start(self) -> None:
        for i in range(len(self.endpoints)):
            self.restart(i)

    def stop(self) -> None:
        for i in range(len(self.endpoints)):
            self.kill(i)

    def kill(self, endpoint: int = 0) -> None:
        """Stop one endpoint's server (its clients see the link drop)."""
        ep = self.endpoints[endpoint]
        with self.lock:
            if ep.server is not None:
                ep.server.stop()
                ep.server = None
                ep.points.clear()
                ep.stations.clear()
        with ep.cond:
            ep.cond.notify_all()

    def restart(self, endpoint: int = 0) -> None:
        """(Re)start one endpoint with the current point values."""
        self.kill(endpoint)
        ep = self.endpoints[endpoint]
        with self.lock:
            ep.build()
            assert ep.server is not None
            ep.server.start()

    def active_connections(self) -> list[int]:
        return [e.server.active_connection_count if e.server else 0 for e in self.endpoints]

    @property
    def sent(self) -> int:
        return sum(e.sent_objects for e in self.endpoints)

    # ------------------------------------------------------------------ values
    def update(self, ca: int, ioa: int, value: float, quality: int = 0, *, ts: datetime | None = None,
               force: bool = False) -> int:
        """Set one value; transmit it spontaneously if it moved beyond the deadband."""
        return self.update_many([Update(ca, ioa, value, quality, ts)], force=force)

    def update_many(self, updates: Iterable[Update], *, force: bool = False,
                    cause: c104.Cot = c104.Cot.SPONTANEOUS, pace_timeout: float = 10.0) -> int:
        """Set values and transmit the changed ones in multi-object ASDUs; returns objects sent."""
        now = datetime.now(UTC)
        groups: dict[tuple[int, str], list[PointDef]] = {}
        mixed: list[PointDef] = []
        for u in updates:
            p = self.points.get((u.ca, u.ioa))
            if p is None:
                raise KeyError(f"no simulated point {u.ca}/{u.ioa}")
            changed = (force or p.last_sent is None or abs(u.value - p.last_sent) > p.deadband
                       or (p.deadband == 0 and u.value != p.last_sent)
                       or u.quality != p.quality)
            p.value, p.quality, p.ts = u.value, u.quality, u.ts or now
            if changed:
                p.last_sent = u.value
                (mixed.append(p) if p.mixed else groups.setdefault((p.ca, p.type), []).append(p))
        with self.lock:
            return self._transmit(groups, mixed, cause, pace_timeout)

    def _transmit(self, groups: dict[tuple[int, str], list[PointDef]], mixed: list[PointDef],
                  cause: c104.Cot, pace_timeout: float) -> int:
        total = 0
        mixed_groups: dict[tuple[int, str], list[PointDef]] = {}
        for p in mixed:
            mixed_groups.setdefault((p.ca, p.type), []).append(p)
        for ep in self.endpoints:
            if ep.server is None:
                continue
            for (_, type_name), plist in groups.items():
                pts = []
                for p in plist:
                    cp = ep.points[(p.ca, p.ioa)]
                    cp.info = make_info(p.type, p.value, p.quality, p.ts)
                    pts.append(cp)
                total += self._send(ep, type_name, pts, cause, pace_timeout)
            for (ca, type_name), plist in mixed_groups.items():
                total += self._transmit_mixed(ep, ca, type_name, plist, cause, pace_timeout)
        return total

    def _send(self, ep: _Endpoint, type_name: str, pts: list[Any], cause: c104.Cot, pace_timeout: float) -> int:
        """Transmit points of one station and type in multi-object ASDUs, paced."""
        sent = 0
        per_asdu = _objects_per_asdu(type_name)
        for i in range(0, len(pts), 120):
            chunk = pts[i:i + 120]
            if ep.server is None or not ep.active:
                continue
            if not ep.wait_room(len(chunk), -(-len(chunk) // per_asdu), pace_timeout):
                self.lost += len(chunk)
                continue
            ep.server.transmit_batch(c104.Batch(cause=cause, points=chunk))
            sent += len(chunk)
        return sent

    def _transmit_mixed(self, ep: _Endpoint, ca: int, type_name: str, plist: list[PointDef], cause: c104.Cot,
                        pace_timeout: float) -> int:
        """Send mixed-type points as their CP56 twin: swap the c104 points' type, batch-transmit,
        swap back (GI keeps answering the untagged type)."""
        st = ep.stations[ca]
        twin = TAGGED_TWIN.get(type_name, type_name)
        tpts = []
        for p in plist:
            st.remove_point(p.ioa)
            tp = st.add_point(io_address=p.ioa, type=getattr(c104.Type, twin))
            tp.info = make_info(twin, p.value, p.quality, p.ts)
            tpts.append(tp)
        try:
            return self._send(ep, twin, tpts, cause, pace_timeout)
        finally:
            for p in plist:
                st.remove_point(p.ioa)
                cp = st.add_point(io_address=p.ioa, type=getattr(c104.Type, p.type))
                cp.info = make_info(p.type, p.value, p.quality, p.ts)
                ep.points[(p.ca, p.ioa)] = cp

    def scan(self, *, background: bool = True) -> int:
        """Send every point (COT background scan, or periodic) in multi-object ASDUs."""
        cause = c104.Cot.BACKGROUND_SCAN if background else c104.Cot.PERIODIC
        groups: dict[tuple[int, str], list[PointDef]] = {}
        for p in self.points.values():
            groups.setdefault((p.ca, p.type), []).append(p)
        with self.lock:
            return self._transmit(groups, [], cause, 10.0)

    def value(self, ca: int, ioa: int) -> float:
        return self.points[(ca, ioa)].value


# ---------------------------------------------------------------------- generation / CLI
def build_points(stations: Sequence[int], per_station: int, *, types: Sequence[str] = SUPPORTED_TYPES,
                 mixed_share: float = 0.0, deadband: float = 0.0, seed: int = 1,
                 first_ioa: int = 1) -> list[PointDef]:
    """`per_station` points per common address, cycling through `types`; a share of the
    untagged ones is marked mixed (GI untagged, spontaneous tagged)."""
    rnd = random.Random(seed)
    out = []
    for ca in stations:
        for i in range(per_station):
            t = types[i % len(types)]
            mixed = t in TAGGED_TWIN and rnd.random() < mixed_share
            out.append(PointDef(ca=ca, ioa=first_ioa + i, type=t, deadband=deadband, mixed=mixed))
    return out


def _profile_value(p: PointDef, ts: datetime, seed: int) -> float:
    """A plausible value for `p` at `ts` (load profiles when available)."""
    try:
        from simulators.profiles import Profile
    except ImportError:  # pragma: no cover - profiles are part of the package
        Profile = None  # type: ignore[assignment,misc]
    kind = p.type[2:4]
    if kind in ("SP", "DP"):
        return float(1 + (p.ioa + int(ts.timestamp() // 600)) % 2) if kind == "DP" else float(p.ioa % 2)
    if kind == "ST":
        return float((p.ioa + int(ts.timestamp() // 900)) % 17 - 8)
    if kind == "BO":
        return float(p.ioa * 2654435761 % 2**32)
    if kind == "IT":
        return float(int(ts.timestamp() / 10 + p.ioa) % 2**31)
    if Profile is not None:
        prof = _profile_cache.get((seed, p.ca, p.ioa))
        if prof is None:
            prof = Profile.create(("industrial", "commercial", "residential", "solar")[p.ioa % 4],
                                  seed=seed * 100_003 + p.ca * 65_536 + p.ioa, peak_kw=1000.0)
            _profile_cache[(seed, p.ca, p.ioa)] = prof
        v = prof.power_kw(ts)
    else:
        v = 500.0 + 100.0 * random.random()
    if p.type[5:7] in ("NA", "TA", "TD", "ND"):
        return max(-1.0, min(0.99, v / 1500.0))
    return round(v, 1)


_profile_cache: dict[tuple[int, int, int], Any] = {}


class SimulatorConfig(BaseModel):
    """A `[[simulators]]` table of kind "iec104" (validated before anything starts)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = "iec104"
    config_dir: str | None = None
    host: str = "127.0.0.1"
    port: int | None = Field(None, ge=1, le=65535)
    ports: list[int] = Field(default_factory=list)
    stations: list[int] = Field(default_factory=lambda: [1])
    points_per_station: int = Field(1000, ge=1, le=65_000)
    types: list[str] = Field(default_factory=lambda: list(SUPPORTED_TYPES))
    mixed_share: float = Field(0.1, ge=0, le=1)
    deadband: float = Field(0.0, ge=0)
    rate: float = Field(1000.0, gt=0)
    scan_s: float = Field(0.0, ge=0)
    seed: int = 1
    k: int = Field(600, ge=1)
    w: int = Field(400, ge=1)

    @field_validator("types")
    @classmethod
    def _types(cls, v: list[str]) -> list[str]:
        bad = [t for t in v if t not in SUPPORTED_TYPES]
        if bad or not v:
            raise ValueError(f"unsupported types {bad} (supported: {', '.join(SUPPORTED_TYPES)})")
        return v


async def run_simulator(cfg: dict[str, Any], clock: Callable[[], datetime], stop: asyncio.Event) -> None:
    """Run an outstation until `stop` is set (for `gridwatch simulate`).

    cfg keys (see `SimulatorConfig`): host ("127.0.0.1"), ports ([2404]) or port, stations
    ([1]), points_per_station (1000), types (all), mixed_share (0.1), deadband (0.0), rate
    (updates/s, 1000), scan_s (background scan period, 0 = off), seed (1), k (600), w (400).
    Raises ValueError naming the key on bad input.
    """
    try:
        c = SimulatorConfig.model_validate(cfg)
    except ValidationError as e:
        err = e.errors()[0]
        raise ValueError(f"iec104 simulator: {'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from None
    ports = c.ports or [c.port or 2404]
    seed = c.seed

    def build() -> Outstation:
        pts = build_points(c.stations, c.points_per_station, types=c.types, mixed_share=c.mixed_share,
                           deadband=c.deadband, seed=c.seed)
        now = clock()
        for p in pts:
            p.value = _profile_value(p, now, seed)
        o = Outstation(pts, ports=ports, host=c.host, k=c.k, w=c.w)
        o.start()
        return o

    sim = await asyncio.to_thread(build)
    rate = c.rate
    scan_s = c.scan_s
    rnd = random.Random(seed)
    plist = list(sim.points.values())
    last_scan = time.monotonic()
    try:
        while not stop.is_set():
            t0 = time.monotonic()
            ts = clock()
            chosen = rnd.sample(plist, min(len(plist), max(1, int(rate / 10))))
            ups = [Update(p.ca, p.ioa, _profile_value(p, ts, seed), 0, ts) for p in chosen]
            await asyncio.to_thread(functools.partial(sim.update_many, ups))
            if scan_s and time.monotonic() - last_scan >= scan_s:
                last_scan = time.monotonic()
                await asyncio.to_thread(sim.scan)
            await wait_event(stop, 0.1 - (time.monotonic() - t0))
    finally:
        await asyncio.to_thread(sim.stop)

