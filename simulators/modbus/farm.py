"""A Modbus TCP meter farm: thousands of meters behind pymodbus servers in one process.

Each group of meters uses one register template (the same TOML templates the collector
reads), a load profile per meter (`simulators.profiles`), and a port layout: meter i of a
group answers on port `port + i // units_per_port` as unit `unit_start + i % units_per_port`
(`layout()` gives the same mapping to whoever writes the collector's config). Values are
computed at request time from the simulated clock, so energy registers integrate power.

Per meter: response latency and jitter (real seconds, as over cellular or PLC links),
silence (a share of meters, or named ones, never answer), addresses that answer exception 2
("illegal data address"), gaps inside a template answer zeros (or exception 2 with
`gaps = "exception"`), unknown unit ids answer exception 11 (gateway target failed), and an
optional `FaultPlan` (offline windows, value faults, corrupt payloads as random registers).
"""

from __future__ import annotations

import asyncio
import gc
import glob
import logging
import math
import random
import tomllib
import zlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import ModbusIOException, NoSuchIdException
from pymodbus.pdu import ExceptionResponse, ModbusPDU
from pymodbus.server import ModbusTcpServer
from pymodbus.server.requesthandler import ServerRequestHandler

from core.config import PointSpec, TemplateConfig, expand
from core.interfaces import Clock
from protocols.modbus import codec
from protocols.modbus.config import DeviceOptions, PointOptions
from simulators.faults import FaultPlan
from simulators.profiles import PROFILE_KINDS, Meter, Profile, tariff_at

log = logging.getLogger("gridwatch.sim.modbus")

_FC_TABLE = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GroupConfig(_Model):
    """A group of identical meters (one template) on consecutive ports and unit ids."""

    name: str = "m{n:05d}"
    template: str
    count: int = Field(1, ge=1, le=1_000_000)
    start: int = 1
    port: int = Field(ge=1, le=65535)
    units_per_port: int = Field(247, ge=1, le=247)
    unit_start: int = Field(1, ge=1, le=247)
    profile: str | dict[str, float] = "residential"
    peak_kw: float = Field(10.0, gt=0)
    peak_spread: float = Field(0.5, ge=0, lt=1)
    nominal_v: float = Field(230.0, gt=0)
    latency_ms: float = Field(0.0, ge=0)
    jitter_ms: float = Field(0.0, ge=0)
    silent: float = Field(0.0, ge=0, le=1)
    silent_devices: list[str] = Field(default_factory=list)
    bad_addresses: list[int] = Field(default_factory=list)
    gaps: Literal["zero", "exception"] = "zero"
    max_count: int = Field(125, ge=1, le=125)
    values: dict[str, float] = Field(default_factory=dict)

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, v: str | dict[str, float]) -> str | dict[str, float]:
        kinds = [v] if isinstance(v, str) else list(v)
        for k in kinds:
            if k not in PROFILE_KINDS:
                raise ValueError(f"unknown profile {k!r} (known: {', '.join(PROFILE_KINDS)})")
        if isinstance(v, dict) and (not v or any(w < 0 for w in v.values()) or sum(v.values()) <= 0):
            raise ValueError("a profile mix needs non-negative weights with a positive sum")
        return v

    def check_units(self) -> None:
        """Raise ValueError when the unit ids of a port would pass 247."""
        last = self.unit_start + min(self.count, self.units_per_port) - 1
        if last > 247:
            raise ValueError(f"group {self.name!r}: unit ids {self.unit_start}..{last} pass 247")


class FaultsConfig(_Model):
    """Random faults for the farm's meters (plus explicit ones), written to a labels file."""

    seed: int = 0
    rate_per_day: float = Field(1.0, ge=0)
    interval_s: float = Field(900.0, gt=0)
    days: float = Field(1.0, gt=0)
    kinds: list[str] | None = None
    points: list[str] = Field(default_factory=lambda: ["voltage_l1", "active_power_total", "energy_import_active"])
    items: list[dict[str, Any]] = Field(default_factory=list)


class FarmConfig(_Model):
    """The `[[simulators]]` table of kind "modbus"."""

    kind: Literal["modbus"] = "modbus"
    host: str = "127.0.0.1"
    templates: list[str] = Field(default_factory=lambda: ["templates/*.toml"])
    seed: int = 0
    config_dir: str = "."
    groups: list[GroupConfig] = Field(min_length=1)
    faults: FaultsConfig | None = None
    labels: str | None = None


# ---------------------------------------------------------------------------- templates
def load_templates(patterns: Sequence[str], base_dir: str | Path = ".") -> dict[str, TemplateConfig]:
    """Modbus templates from TOML files (globs relative to `base_dir`), validated."""
    out: dict[str, TemplateConfig] = {}
    base = Path(base_dir)
    for pattern in patterns:
        p = Path(pattern)
        matches = sorted(glob.glob(str(p if p.is_absolute() else base / p)))
        if not matches:
            raise ValueError(f"templates: pattern {pattern!r} matches no file (relative to {base})")
        for m in matches:
            with open(m, "rb") as f:
                doc = tomllib.load(f)
            for i, raw in enumerate(doc.get("templates", [])):
                try:
                    t = TemplateConfig.model_validate(raw)
                    DeviceOptions.model_validate(t.options)
                    for p_ in t.points:
                        PointOptions.model_validate(p_.options)
                except ValidationError as e:
                    raise ValueError(f"{m}: templates[{i}]: {e}") from e
                if t.kind and t.kind != "modbus":
                    continue
                out[t.name] = t
    return out


@dataclass(frozen=True)
class _Slot:
    spec: PointSpec
    opts: PointOptions
    address: int  # PDU
    order: str


@dataclass
class _Layout:
    """A template compiled for serving: points per table and the addresses that exist."""

    name: str
    model: str
    slots: list[_Slot]
    ranges: dict[str, tuple[int, int]]  # table -> [lo, hi) covering every point
    exact: dict[str, frozenset[int]]  # table -> addresses occupied by points

    @classmethod
    def compile(cls, t: TemplateConfig) -> _Layout:
        dopts = DeviceOptions.model_validate(t.options)
        slots: list[_Slot] = []
        occupied: dict[str, set[int]] = {}
        for spec in t.points:
            o = PointOptions.model_validate(spec.options)
            addr = o.address - dopts.address_base
            slots.append(_Slot(spec, o, addr, o.byte_order or dopts.byte_order))
            occupied.setdefault(o.table, set()).update(range(addr, addr + o.words))
        ranges = {tb: (min(a), max(a) + 1) for tb, a in occupied.items()}
        return cls(t.name, dopts.model or t.name, slots, ranges, {k: frozenset(v) for k, v in occupied.items()})


# ---------------------------------------------------------------------------- devices
@dataclass
class FarmDevice:
    """One simulated meter."""

    name: str
    number: int
    port: int
    unit: int
    layout: _Layout
    profile: Profile
    nominal_v: float
    latency_s: float
    jitter_s: float
    silent: bool
    bad: frozenset[int]
    gaps: str
    seed: int
    max_count: int = 125
    fixed: dict[str, float] = field(default_factory=dict)
    meter: Meter | None = None
    cache_key: float | None = None
    cache: dict[str, dict[int, int]] = field(default_factory=dict)
    requests: int = 0

    @property
    def serial(self) -> int:
        """A stable 8-digit serial number."""
        return 10_000_000 + zlib.crc32(self.name.encode()) % 90_000_000

    def values(self, ts: datetime) -> dict[str, float]:
        """Every value the meter holds at `ts` (Meter keys plus serial, tariff, status)."""
        if self.meter is None:
            self.meter = Meter(self.profile, seed=self.seed, nominal_v=self.nominal_v)
        vals = self.meter.sample(ts)
        vals["serial_number"] = float(self.serial)
        vals["active_tariff"] = float(tariff_at(ts))
        vals.update(self.fixed)
        return vals

    def image(self, ts: datetime, plan: FaultPlan | None) -> dict[str, dict[int, int]]:
        """Registers and bits per table at `ts` (cached per simulated second)."""
        key = math.floor(ts.timestamp())
        if self.cache_key == key:
            return self.cache
        vals = self.values(ts)
        img: dict[str, dict[int, int]] = {}
        rng: random.Random | None = None
        for s in self.layout.slots:
            table = img.setdefault(s.opts.table, {})
            o = s.opts
            if o.type == "string":
                text = self.layout.model if "model" in s.spec.name else self.name
                words = codec.encode_string(text, o.length or 0, s.order)
                for k, w in enumerate(words):
                    table[s.address + k] = w
                continue
            value = vals.get(s.spec.name, 0.0)
            if plan is not None:
                applied = plan.apply(f"{self.name}.{s.spec.name}", ts, value)
                if applied.corrupt:
                    rng = rng or random.Random(key ^ self.seed)
                    for k in range(o.words):
                        table[s.address + k] = rng.randrange(0x10000)
                    continue
                if applied.value is not None:
                    value = applied.value
            raw = (value - s.spec.offset) / s.spec.scale
            if o.table in ("coil", "discrete"):
                table[s.address] = 1 if raw else 0
            elif o.type == "bitfield":
                word = table.get(s.address, 0)
                bitval = (1 << (o.bit or 0)) if raw else 0
                if s.order in ("BADC", "DCBA"):
                    bitval = ((bitval & 0xFF) << 8) | (bitval >> 8)
                table[s.address] = word | bitval
            else:
                words = codec.encode(raw, o.type, s.order, wrap=s.spec.kind == "counter")
                for k, w in enumerate(words):
                    table[s.address + k] = w
        self.cache_key = key
        self.cache = img
        return img

    def check(self, table: str, address: int, count: int) -> ExcCodes | None:
        """Exception code for a read of [address, address + count), None when fine."""
        limit = 2000 if table in ("coil", "discrete") else self.max_count
        if count < 1 or count > limit:
            return ExcCodes.ILLEGAL_VALUE
        if self.bad and any(a in self.bad for a in range(address, address + count)):
            return ExcCodes.ILLEGAL_ADDRESS
        rng = self.layout.ranges.get(table)
        if rng is None:
            return ExcCodes.ILLEGAL_ADDRESS
        if self.gaps == "exception":
            exact = self.layout.exact[table]
            if any(a not in exact for a in range(address, address + count)):
                return ExcCodes.ILLEGAL_ADDRESS
        elif address < rng[0] or address + count > rng[1]:
            return ExcCodes.ILLEGAL_ADDRESS
        return None


def layout(group: GroupConfig) -> list[tuple[str, int, int, int]]:
    """(device name, number n, port, unit id) for every meter of `group`."""
    out = []
    for i in range(group.count):
        n = group.start + i
        name = str(expand(group.name, n, i))
        out.append((name, n, group.port + i // group.units_per_port, group.unit_start + i % group.units_per_port))
    return out


def _pick_profile(group: GroupConfig, seed: int) -> str:
    if isinstance(group.profile, str):
        return group.profile
    total = sum(group.profile.values())
    x = (zlib.crc32(f"profile|{seed}".encode()) / 2**32) * total
    for k, w in group.profile.items():
        x -= w
        if x < 0:
            return k
    return next(iter(group.profile))


class _PortContext(ModbusServerContext):
    """Routes every request on one port to the farm (no per-register datastore).

    pymodbus calls `async_getValues(device_id, func_code, address, count)` with the PDU
    address; returning an `ExcCodes` makes it answer with that exception and raising
    `NoSuchIdException` (with `ignore_missing_devices`) makes it stay silent.
    """

    def __init__(self, farm: MeterFarm, port: int) -> None:  # no super(): it only warns and stores blocks
        self.farm = farm
        self.port = port
        self.old_simulator = True
        self.simdevices = []
        self._devices = {}

    async def async_getValues(self, device_id: int, func_code: int, address: int,
                              count: int = 1) -> list[int] | list[bool] | ExcCodes:
        return await self.farm.handle(self.port, device_id, func_code, address, count)

    async def async_setValues(self, device_id: int, func_code: int, address: int, values: Any) -> ExcCodes | None:
        return ExcCodes.ILLEGAL_FUNCTION

    def device_ids(self) -> list[int]:
        return [u for (p, u) in self.farm.by_port_unit if p == self.port]


class _Handler(ServerRequestHandler):
    """pymodbus' per-connection handler, answering each request from its own PDU.

    pymodbus 3.16 keeps the request in `self.last_pdu` and reads it again after the
    datastore call: when a client sends its next request while a slow answer is pending
    (after a timeout), the late answer goes out with the NEW request's transaction and unit
    id, and the client takes another request's registers for its own. Here each request is
    captured when it arrives and answered with its own ids.
    """

    def callback_data(self, data: bytes, addr: tuple[str, int] | None = None) -> int:
        try:
            used_len: int = super(ServerRequestHandler, self).callback_data(data, addr)
        except ModbusIOException as exc:
            response = ExceptionResponse(0 if exc.fcode is None else exc.fcode,
                                         exception_code=ExcCodes.ILLEGAL_FUNCTION,
                                         device_id=exc.dev_id, transaction=exc.transaction_id)
            self.server_send(response, addr)  # type: ignore[no-untyped-call]
            return len(data)
        pdu = self.last_pdu
        if pdu:
            task = self.loop.create_task(self._answer(pdu, self.last_addr))
            _PENDING.add(task)
            task.add_done_callback(_PENDING.discard)
        return used_len

    async def _answer(self, pdu: ModbusPDU, addr: Any) -> None:
        try:
            response = await pdu.datastore_update(self.server.context, pdu.dev_id)
        except NoSuchIdException:
            return  # a silent meter: the client times out
        except Exception:  # the datastore failed: answer like a device failure
            log.exception("farm: answering %r failed", pdu)
            response = ExceptionResponse(pdu.function_code, ExcCodes.DEVICE_FAILURE)
        response.transaction_id = pdu.transaction_id
        response.dev_id = pdu.dev_id
        if self.transport is not None:
            self.server_send(response, addr)  # type: ignore[no-untyped-call]


_PENDING: set[asyncio.Task[None]] = set()


class _FarmServer(ModbusTcpServer):
    """A TCP listener whose connections use `_Handler`."""

    def callback_new_connection(self) -> _Handler:
        return _Handler(self, self.trace_packet, self.trace_pdu, self.trace_connect)  # type: ignore[no-untyped-call]


@dataclass
class FarmStats:
    """Counters of what the farm served."""

    requests: int = 0
    answered: int = 0
    exceptions: int = 0
    silent: int = 0


class MeterFarm:
    """Serves every meter of a `FarmConfig` on 127.0.0.1 (or `host`) ports.

    Use as `async with MeterFarm(cfg, clock, templates) as farm:`; `farm.devices` lists the
    meters, `farm.stats` counts requests.
    """

    def __init__(self, cfg: FarmConfig, clock: Clock, templates: dict[str, TemplateConfig],
                 plan: FaultPlan | None = None) -> None:
        """Build every meter (not started: use `async with` or `start()`)."""
        self.cfg = cfg
        self.clock = clock
        self.plan = plan
        self.stats = FarmStats()
        self.devices: list[FarmDevice] = []
        self.by_port_unit: dict[tuple[int, int], FarmDevice] = {}
        self.by_name: dict[str, FarmDevice] = {}
        self._servers: list[ModbusTcpServer] = []
        layouts: dict[str, _Layout] = {}
        for gi, g in enumerate(cfg.groups):
            g.check_units()
            t = templates.get(g.template)
            if t is None:
                raise ValueError(f"groups[{gi}].template: unknown template {g.template!r} "
                                 f"(known: {', '.join(sorted(templates))})")
            lay = layouts.get(g.template) or layouts.setdefault(g.template, _Layout.compile(t))
            silent_named = set(g.silent_devices)
            for name, n, port, unit in layout(g):
                if (port, unit) in self.by_port_unit:
                    raise ValueError(f"groups[{gi}]: {name} would share port {port} unit {unit} "
                                     f"with {self.by_port_unit[(port, unit)].name}")
                if name in self.by_name:
                    raise ValueError(f"groups[{gi}]: duplicate device name {name!r}")
                seed = zlib.crc32(f"{cfg.seed}|{name}".encode())
                kind = _pick_profile(g, seed)
                spread = 1.0 + g.peak_spread * (2 * ((seed >> 8) % 10_000) / 10_000 - 1)
                silent = name in silent_named or ((seed >> 3) % 1_000_000) / 1_000_000 < g.silent
                dev = FarmDevice(
                    name=name, number=n, port=port, unit=unit, layout=lay,
                    profile=Profile.create(kind, seed=seed, peak_kw=g.peak_kw * spread),
                    nominal_v=g.nominal_v, latency_s=g.latency_ms / 1000, jitter_s=g.jitter_ms / 1000,
                    silent=silent, bad=frozenset(g.bad_addresses), gaps=g.gaps, seed=seed, fixed=dict(g.values),
                    max_count=g.max_count,
                )
                self.devices.append(dev)
                self.by_port_unit[(port, unit)] = dev
                self.by_name[name] = dev
        self.ports = sorted({d.port for d in self.devices})
        self._rng = random.Random(cfg.seed)
        # 10,000 meters are a large, long-lived heap: keep it out of the collector's full
        # passes, which otherwise stall the event loop for seconds on a busy machine
        gc.freeze()

    def readings_at(self, ts: datetime, points: Collection[str] | None = None) -> list[tuple[str, float]]:
        """What a collector reading every meter at `ts` would get, without a network in between.

        `(device.point, value)` for every numeric point (only those named in `points` when
        given), decoded from the same register image the server would answer with, faults and
        corrupt payloads included; silent and offline meters give nothing. For offline detector
        evaluation: a week of a farm is sampled in seconds (`gridwatch simulate --sample-readings`).
        """
        out: list[tuple[str, float]] = []
        for dev in self.devices:
            if dev.silent or (self.plan is not None and self.plan.offline(dev.name, ts)):
                continue
            img = dev.image(ts, self.plan)
            for sl in dev.layout.slots:
                o = sl.opts
                if o.type == "string" or (points is not None and sl.spec.name not in points):
                    continue
                table = img.get(o.table, {})
                words = [table.get(sl.address + k, 0) for k in range(o.words)]
                raw = codec.decode(words, o.type, sl.order, o.bit)
                out.append((f"{dev.name}.{sl.spec.name}", raw * sl.spec.scale + sl.spec.offset))
        return out

    async def handle(self, port: int, unit: int, fc: int, address: int,
                     count: int) -> list[int] | list[bool] | ExcCodes:
        """Answer one read request (called by pymodbus for each PDU)."""
        self.stats.requests += 1
        dev = self.by_port_unit.get((port, unit))
        if dev is None:
            self.stats.exceptions += 1
            return ExcCodes.GATEWAY_NO_RESPONSE
        dev.requests += 1
        ts = self.clock()
        if dev.silent or (self.plan is not None and self.plan.offline(dev.name, ts)):
            self.stats.silent += 1
            raise NoSuchIdException(f"{dev.name} is silent")
        delay = dev.latency_s
        if dev.jitter_s:
            delay += self._rng.uniform(-dev.jitter_s, dev.jitter_s)
        if delay > 0:
            await asyncio.sleep(delay)
            ts = self.clock()
        table = _FC_TABLE.get(fc)
        if table is None:
            self.stats.exceptions += 1
            return ExcCodes.ILLEGAL_FUNCTION
        exc = dev.check(table, address, count)
        if exc is not None:
            self.stats.exceptions += 1
            return exc
        img = dev.image(ts, self.plan).get(table, {})
        self.stats.answered += 1
        if table in ("coil", "discrete"):
            return [bool(img.get(a, 0)) for a in range(address, address + count)]
        return [img.get(a, 0) for a in range(address, address + count)]

    async def start(self) -> None:
        """Listen on every port of the farm."""
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        try:
            for port in self.ports:
                server = _FarmServer(_PortContext(self, port), address=(self.cfg.host, port),
                                     ignore_missing_devices=True)
                await server.serve_forever(background=True)
                self._servers.append(server)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Close every listener and connection."""
        servers, self._servers = self._servers, []
        for s in servers:
            try:
                await s.shutdown()  # type: ignore[no-untyped-call]
            except Exception:
                log.debug("closing a farm server failed", exc_info=True)

    async def __aenter__(self) -> MeterFarm:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def farm_from_dict(raw: dict[str, Any], clock: Clock) -> tuple[MeterFarm, FaultPlan | None]:
    """Validate a `[[simulators]]` table and build the farm (not started) and its fault plan."""
    try:
        cfg = FarmConfig.model_validate(raw)
    except ValidationError as e:
        issues = "; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())
        raise ValueError(f"modbus simulator: {issues}") from e
    templates = load_templates(cfg.templates, cfg.config_dir)
    plan: FaultPlan | None = None
    if cfg.faults is not None:
        f = cfg.faults
        plan = FaultPlan.from_config(f.items)
        if f.rate_per_day > 0:
            names = []
            for g in cfg.groups:
                names += [name for name, *_ in layout(g)]
            now = clock()
            start = datetime.fromtimestamp(now.timestamp() // f.interval_s * f.interval_s, now.tzinfo)
            points = [f"{d}.{p}" for d in names for p in f.points]
            kinds = f.kinds if f.kinds is not None else [k for k in ("spike", "dropout", "frozen", "drift", "sag",
                                                                      "swell", "overconsumption", "offline", "corrupt")]
            plan = plan.merged(FaultPlan.random(points, start=start, end=start + timedelta(days=f.days), seed=f.seed,
                                                interval_s=f.interval_s, rate_per_day=f.rate_per_day, kinds=kinds,
                                                devices=names))
    return MeterFarm(cfg, clock, templates, plan), plan
