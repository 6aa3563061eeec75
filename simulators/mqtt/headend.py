"""An AMR head-end publishing meter readings over MQTT, as JSON and/or Sparkplug B.

Every `interval_s` (simulated seconds) it reads every meter (values from
`simulators.profiles.Meter`) and publishes:

* JSON, `mode = "per_meter"`: one message per meter on `<prefix>/<meter>/readings`:
  `{"meter": "m00001", "ts": "2026-01-01T00:15:00Z", "voltage_l1": 229.8, ...}`;
* JSON, `mode = "batch"`: `batch_size` meters per message on `<prefix>/headend/<n>/batch`:
  `{"ts": ..., "readings": [{"meter": "m00001", "voltage_l1": ...}, ...]}`;
* Sparkplug B: group `<sparkplug_group>`, edge node `<sparkplug_node>`, one device per meter:
  NBIRTH and DBIRTHs (names + aliases) first, then a DDATA per meter per interval (aliases
  only) with seq 0..255 per node; `stop()` publishes the NDEATH.

The keys GridWatch derives: JSON `<meter>/<field>` (pattern `<prefix>/+meter/readings` or a
batch mapping with `ids = {meter = "meter"}`), Sparkplug `<group>/<node>/<meter>/<field>`.

Message faults (`faults`: probabilities per meter and interval, deterministic for a seed):
`late` (held back and published `late_s` real seconds later), `duplicate` (published twice),
`out_of_order` (held and published after the next interval's reading), `corrupt` (the payload
is garbled; its readings are lost). Late and out-of-order are not injected into Sparkplug B
(they would break the node's seq order). Value faults (`value_faults`: items of
`simulators.faults.FaultPlan.from_config`: spike, dropout, frozen, drift, sag, swell,
overconsumption, clock_skew, offline, corrupt) go through the shared fault plan; clock skew
shifts a per-meter message's `ts` (batches keep one `ts`).

Labels (JSON lines `{"point", "start", "end", "kind"}`, window [start, end)): the plan's
faults are written when the head-end starts; each message fault adds one line per affected
point, named `<meter>.<field>` as the daemon's template devices name them, over
[reading time, reading time + interval).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiomqtt

from core.aio import wait_event
from core.clock import clock_speed
from protocols.mqtt.sparkplug import DOUBLE, Metric, Payload, encode_payload
from simulators.faults import FaultPlan
from simulators.profiles import PROFILE_KINDS, Meter, Profile

log = logging.getLogger(__name__)
_QUIET = logging.getLogger("gridwatch.simulators.mqtt.client")
_QUIET.setLevel(logging.ERROR)

DEFAULT_FIELDS = ("voltage_l1", "voltage_l2", "voltage_l3", "active_power_total", "reactive_power_total",
                  "power_factor", "frequency", "energy_import_active", "energy_export_active")
FAULT_KINDS = ("late", "duplicate", "out_of_order", "corrupt")


@dataclass
class HeadEndConfig:
    """Settings of the head-end (`[mqtt]` of a simulate file; every key optional)."""

    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "gridwatch-sim-headend"
    meters: int = 100
    first: int = 1
    name: str = "m{n:05d}"
    prefix: str = "amr"
    formats: tuple[str, ...] = ("json",)  # "json", "sparkplug"
    mode: str = "per_meter"  # or "batch"
    batch_size: int = 100
    interval_s: float = 900.0
    fields: tuple[str, ...] = DEFAULT_FIELDS
    qos: int = 1
    retain: bool = False
    seed: int = 1
    sparkplug_group: str = "amr"
    sparkplug_node: str = "headend1"
    faults: dict[str, float] = field(default_factory=dict)  # kind -> probability per meter and interval
    late_s: float = 5.0
    labels: str | None = None  # path of the labels file (JSON lines)
    value_faults: list[dict[str, Any]] = field(default_factory=list)  # simulators.faults.FaultPlan items
    concurrency: int = 200

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HeadEndConfig:
        """Build from a dict (unknown keys are errors that name the key)."""
        known = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in d.items() if k not in ("kind", "config_dir")}  # added by `gridwatch simulate`
        bad = sorted(set(kw) - known)
        if bad:
            raise ValueError(f"mqtt simulator: unknown key(s) {', '.join(bad)} (known: {', '.join(sorted(known))})")
        if kw.get("labels") and d.get("config_dir") and not Path(kw["labels"]).is_absolute():
            kw["labels"] = str(Path(d["config_dir"]) / kw["labels"])
        for k in ("formats", "fields"):
            if k in kw:
                kw[k] = (kw[k],) if isinstance(kw[k], str) else tuple(kw[k])
        cfg = cls(**kw)
        for k in cfg.faults:
            if k not in FAULT_KINDS:
                raise ValueError(f"mqtt simulator: faults.{k}: unknown fault (known: {', '.join(FAULT_KINDS)})")
        for f in cfg.formats:
            if f not in ("json", "sparkplug"):
                raise ValueError(f"mqtt simulator: formats: unknown format {f!r}")
        if cfg.mode not in ("per_meter", "batch"):
            raise ValueError(f"mqtt simulator: mode: {cfg.mode!r} is not per_meter or batch")
        if cfg.value_faults:
            FaultPlan.from_config(cfg.value_faults)  # raises ValueError naming the fault
        return cfg


@dataclass(frozen=True)
class Published:
    """What one cycle sent: readings by derived key (value, ts) and the faults injected."""

    readings: dict[str, tuple[float, datetime]]
    lost: set[str]  # keys of corrupted messages (never decodable)
    messages: int


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


class HeadEnd:
    """The head-end; `async with HeadEnd(cfg) as h: await h.cycle(ts)` publishes one interval."""

    def __init__(self, cfg: HeadEndConfig, clock: Callable[[], datetime] | None = None) -> None:
        self.cfg = cfg
        self.clock = clock or (lambda: datetime.now(UTC))
        self.meter_names = [cfg.name.format(n=n) for n in range(cfg.first, cfg.first + cfg.meters)]
        self.meters: list[Meter] = []
        for i, _ in enumerate(self.meter_names):
            seed = cfg.seed * 1_000_003 + i
            kind = PROFILE_KINDS[i % len(PROFILE_KINDS)]
            peak = 5.0 + 45.0 * ((seed * 2654435761) % 1000) / 1000.0
            self.meters.append(Meter(Profile.create(kind, seed=seed, peak_kw=peak), seed=seed))
        self.rnd = random.Random(cfg.seed)
        self.client: aiomqtt.Client | None = None
        self._held: list[tuple[str, bytes]] = []  # out-of-order: published after the next cycle
        self._late: set[asyncio.Task[None]] = set()
        self._labels: Any = None
        self._seq = 0
        self._born = False
        self.aliases = {f: i + 1 for i, f in enumerate(cfg.fields)}
        self._sem = asyncio.Semaphore(max(1, cfg.concurrency))
        self._batch_no = 0
        self.plan = FaultPlan.from_config(cfg.value_faults) if cfg.value_faults else FaultPlan(())

    async def __aenter__(self) -> Self:
        will = None
        if "sparkplug" in self.cfg.formats:
            will = aiomqtt.Will(self._sp_topic("NDEATH"), encode_payload(Payload(
                timestamp=None, metrics=[Metric(name="bdSeq", value=0, datatype=8)])), qos=0)
        self.client = aiomqtt.Client(self.cfg.host, self.cfg.port, identifier=self.cfg.client_id, logger=_QUIET,
                                     will=will, max_inflight_messages=1000)
        self.client.pending_calls_threshold = 1_000_000
        await self.client.__aenter__()
        if self.cfg.labels:
            Path(self.cfg.labels).parent.mkdir(parents=True, exist_ok=True)
            self._labels = open(self.cfg.labels, "a", encoding="utf-8")  # noqa: ASYNC230 (tiny, once)
            self.plan.write_labels(self._labels)
            self._labels.flush()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        try:
            for t in list(self._late):
                t.cancel()
            if self.client is not None:
                if "sparkplug" in self.cfg.formats and self._born:
                    try:
                        await self._publish(self._sp_topic("NDEATH"), encode_payload(Payload(
                            timestamp=int(self.clock().timestamp() * 1000),
                            metrics=[Metric(name="bdSeq", value=0, datatype=8)])))
                    except aiomqtt.MqttError:
                        pass
                await self.client.__aexit__(exc_type, exc, tb)
        finally:
            self.client = None
            if self._labels is not None:
                self._labels.close()
                self._labels = None

    # -- publishing ---------------------------------------------------------------------------
    async def _publish(self, topic: str, payload: bytes) -> None:
        assert self.client is not None
        async with self._sem:
            await self.client.publish(topic, payload, qos=self.cfg.qos, retain=self.cfg.retain)

    async def _publish_all(self, msgs: Sequence[tuple[str, bytes]]) -> None:
        if msgs:
            await asyncio.gather(*(self._publish(t, p) for t, p in msgs))

    def _label(self, names: Sequence[str], ts: datetime, kind: str) -> None:
        if self._labels is None:
            return
        end = _iso(ts + timedelta(seconds=self.cfg.interval_s))
        for n in names:
            self._labels.write(json.dumps({"point": n, "start": _iso(ts), "end": end, "kind": kind}) + "\n")
        self._labels.flush()

    def _sp_topic(self, mtype: str, device: str | None = None) -> str:
        base = f"spBv1.0/{self.cfg.sparkplug_group}/{mtype}/{self.cfg.sparkplug_node}"
        return f"{base}/{device}" if device else base

    def _alias(self, meter_index: int, fld: str) -> int:
        """Aliases are unique within the edge node (Sparkplug B), across its devices."""
        return meter_index * len(self.aliases) + self.aliases[fld]

    def _next_seq(self) -> int:
        s = self._seq
        self._seq = (self._seq + 1) % 256
        return s

    async def birth(self) -> None:
        """Publish NBIRTH and a DBIRTH per meter (Sparkplug B)."""
        ts_ms = int(self.clock().timestamp() * 1000)
        self._seq = 0
        nb = Payload(timestamp=ts_ms, seq=self._next_seq(), metrics=[
            Metric(name="bdSeq", value=0, datatype=8),
            Metric(name="Node Control/Rebirth", value=False, datatype=11)])
        msgs = [(self._sp_topic("NBIRTH"), encode_payload(nb))]
        for i, name in enumerate(self.meter_names):
            metrics = [Metric(name=f, alias=self._alias(i, f), datatype=DOUBLE, is_null=True, timestamp=ts_ms)
                       for f in self.aliases]
            msgs.append((self._sp_topic("DBIRTH", name), encode_payload(Payload(timestamp=ts_ms, seq=self._next_seq(),
                                                                                metrics=metrics))))
        # births must arrive in order: publish sequentially
        for t, p in msgs:
            await self._publish(t, p)
        self._born = True

    def _faults_for(self) -> str | None:
        for kind in FAULT_KINDS:
            p = self.cfg.faults.get(kind, 0.0)
            if p > 0 and self.rnd.random() < p:
                return kind
        return None

    async def cycle(self, ts: datetime) -> Published:
        """Read every meter at `ts` and publish one interval (with faults); return what was sent."""
        cfg = self.cfg
        readings: dict[str, tuple[float, datetime]] = {}
        lost: set[str] = set()
        now_msgs: list[tuple[str, bytes]] = []
        held_next: list[tuple[str, bytes]] = []
        late: list[tuple[str, bytes]] = []
        batch: list[dict[str, Any]] = []
        batch_keys: list[str] = []
        batch_names: list[str] = []
        batch_fault: str | None = None
        if "sparkplug" in cfg.formats and not self._born:
            await self.birth()
        ts_iso = _iso(ts)
        ts_ms = int(ts.timestamp() * 1000)

        def route(kind: str | None, topic: str, payload: bytes, keys: list[str], names: list[str],
                  label: bool = True) -> None:
            if kind == "corrupt":
                cut = max(1, len(payload) // 2)
                now_msgs.append((topic, payload[:cut] + b"\x00\xff{garbled"))
                lost.update(keys)
            elif kind == "late":
                late.append((topic, payload))
            elif kind == "out_of_order":
                held_next.append((topic, payload))
            else:
                now_msgs.append((topic, payload))
                if kind == "duplicate":
                    now_msgs.append((topic, payload))
            if kind is not None and label:
                self._label(names, ts, kind)

        use_plan = len(self.plan) > 0
        for mi, (name, meter) in enumerate(zip(self.meter_names, self.meters, strict=True)):
            values = meter.sample(ts)
            mts = ts
            plan_corrupt = False
            if use_plan:  # value faults of simulators.faults (labelled when the file was opened)
                vals: dict[str, float] = {}
                for f in cfg.fields:
                    a = self.plan.apply(f"{name}.{f}", ts, values[f])
                    if a.value is not None:
                        vals[f] = round(a.value, 4)
                        mts = a.ts
                    plan_corrupt = plan_corrupt or a.corrupt
                if not vals:
                    continue  # dropout / offline: nothing is sent
            else:
                vals = {f: round(values[f], 4) for f in cfg.fields}
            names = [f"{name}.{f}" for f in vals]
            if "json" in cfg.formats:
                keys = [f"{name}/{f}" for f in vals]
                for k, v in zip(keys, vals.values(), strict=True):
                    readings[k] = (v, mts)
                if cfg.mode == "per_meter":
                    body = json.dumps({"meter": name, "ts": _iso(mts), **vals}, separators=(",", ":")).encode()
                    kind = "corrupt" if plan_corrupt else self._faults_for()
                    route(kind, f"{cfg.prefix}/{name}/readings", body, keys, names, label=not plan_corrupt)
                else:
                    batch.append({"meter": name, **vals})
                    batch_keys.extend(keys)
                    batch_names.extend(names)
                    if batch_fault is None:
                        batch_fault = "corrupt" if plan_corrupt else self._faults_for()
                    if len(batch) >= cfg.batch_size:
                        self._flush_batch(batch, batch_keys, batch_names, batch_fault, ts_iso, route)
                        batch, batch_keys, batch_names, batch_fault = [], [], [], None
            if "sparkplug" in cfg.formats:
                skeys = [f"{cfg.sparkplug_group}/{cfg.sparkplug_node}/{name}/{f}" for f in vals]
                mts_ms = int(mts.timestamp() * 1000)
                for k, v in zip(skeys, vals.values(), strict=True):
                    readings[k] = (v, mts)
                metrics = [Metric(alias=self._alias(mi, f), datatype=DOUBLE, value=v, timestamp=mts_ms)
                           for f, v in vals.items()]
                kind = "corrupt" if plan_corrupt else self._faults_for()
                if kind in ("late", "out_of_order"):
                    kind = None  # would break the node's seq order: not injected for Sparkplug
                body = encode_payload(Payload(timestamp=ts_ms, seq=self._next_seq(), metrics=metrics))
                route(kind, self._sp_topic("DDATA", name), body, skeys, names, label=not plan_corrupt)
        if batch:
            self._flush_batch(batch, batch_keys, batch_names, batch_fault, ts_iso, route)
        previous_held, self._held = self._held, held_next
        await self._publish_all(now_msgs)
        await self._publish_all(previous_held)
        if late:
            t = asyncio.get_running_loop().create_task(self._publish_later(late))
            self._late.add(t)
            t.add_done_callback(self._late.discard)
        return Published(readings, lost, len(now_msgs) + len(previous_held) + len(late))

    def _flush_batch(self, batch: list[dict[str, Any]], keys: list[str], names: list[str], fault: str | None,
                     ts_iso: str, route: Callable[..., None]) -> None:
        self._batch_no += 1
        n = self._batch_no
        body = json.dumps({"ts": ts_iso, "readings": batch}, separators=(",", ":")).encode()
        route(fault, f"{self.cfg.prefix}/headend/{n}/batch", body, keys, names)

    async def _publish_later(self, msgs: list[tuple[str, bytes]]) -> None:
        await asyncio.sleep(self.cfg.late_s)
        try:
            await self._publish_all(msgs)
        except aiomqtt.MqttError as e:
            log.warning("late publish failed: %s", e)

    async def flush(self) -> None:
        """Publish what is held back for out-of-order delivery now and wait for late messages."""
        held, self._held = self._held, []
        await self._publish_all(held)
        if self._late:
            await asyncio.gather(*list(self._late))

    async def run(self, stop: asyncio.Event) -> None:
        """Publish at every interval boundary of the (possibly accelerated) clock until `stop`."""
        speed = clock_speed(self.clock)
        interval = timedelta(seconds=self.cfg.interval_s)
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        while not stop.is_set():
            now = self.clock()
            n = (now - epoch) // interval
            boundary = epoch + n * interval
            await self.cycle(boundary)
            wait = ((boundary + interval) - self.clock()).total_seconds() / speed
            await wait_event(stop, wait)


async def run_simulator(cfg: dict[str, Any], clock: Callable[[], datetime], stop: asyncio.Event) -> None:
    """Run the head-end until `stop` is set (for `gridwatch simulate`); keys: see HeadEndConfig."""
    hc = HeadEndConfig.from_dict(cfg)
    delay = 1.0
    while not stop.is_set():
        try:
            async with HeadEnd(hc, clock) as h:
                delay = 1.0
                await h.run(stop)
        except aiomqtt.MqttError as e:
            log.warning("mqtt head-end: broker %s:%s: %s; retrying in %.0fs", hc.host, hc.port, e, delay)
            await wait_event(stop, delay)
            delay = min(delay * 2, 30.0)


def read_labels(path: str | Path) -> list[dict[str, Any]]:
    """The labels written so far."""
    p = Path(path)
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
