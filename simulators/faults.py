"""Fault injection with ground truth, shared by every simulator.

A `FaultPlan` is a list of `Fault`s (point or device, kind, [start, end), magnitude), from a
config or drawn at random for a seed. Simulators pass every value they are about to publish
through `plan.apply(point, ts, value)` and publish what comes back; the plan's labels file
(JSON lines ``{"point", "start", "end", "kind"}``) then states exactly what was injected, so
detectors can be scored against it::

    plan = FaultPlan.random(points, start=t0, end=t1, seed=7, interval_s=900, rate_per_day=0.5)
    plan.write_labels("var/labels.jsonl")
    out = plan.apply("m00001.voltage_l1", ts, value)   # -> Applied(value | None, ts, corrupt, kinds)

Kinds and what `apply` does inside the window:

==================  ===========================================================================
spike               value * magnitude (default 8) - one sample when the window is one interval
dropout             value None: nothing is sent (a gap)
frozen              the last value sent before the window, repeated
drift               value * (1 + magnitude * progress) with progress from 0.05 to 1 (default 0.1)
sag / swell         value * magnitude (defaults 0.85 / 1.12) - meant for voltage points
overconsumption     value * magnitude (default 1.6) - meant for power points (not counters)
clock_skew          value unchanged, reported timestamp shifted by magnitude seconds (default 300)
offline             device-wide (`point` is the device name): nothing is sent for any of its points
corrupt             `corrupt=True` and a garbage value: the simulator corrupts its payload
==================  ===========================================================================

A fault's `point` may name a device: it then covers every point called "<device>.<...>".
Windows are half-open, [start, end); labels carry the same instants (ISO 8601, UTC).
"""

from __future__ import annotations

import json
import math
import random
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

__all__ = [
    "DEVICE_KINDS",
    "FAULT_KINDS",
    "Applied",
    "Fault",
    "FaultPlan",
    "read_labels",
]

FAULT_KINDS = (
    "spike", "dropout", "frozen", "drift", "sag", "swell", "overconsumption", "clock_skew", "offline", "corrupt",
)
DEVICE_KINDS = frozenset({"offline", "clock_skew"})
"""Kinds that act on a whole device (their `point` is a device name in random plans)."""

DEFAULT_MAGNITUDE = {
    "spike": 8.0, "drift": 0.1, "sag": 0.85, "swell": 1.12, "overconsumption": 1.6, "clock_skew": 300.0,
    "dropout": 0.0, "frozen": 0.0, "offline": 0.0, "corrupt": 0.0,
}

# window lengths in sampling intervals, (min, max), for random plans
_DURATION = {
    "spike": (1, 1), "dropout": (2, 8), "frozen": (3, 12), "drift": (8, 48), "sag": (1, 4), "swell": (1, 4),
    "overconsumption": (4, 16), "clock_skew": (4, 24), "offline": (2, 12), "corrupt": (1, 1),
}


def _parse_ts(v: Any, where: str) -> datetime:
    if isinstance(v, datetime):
        ts = v
    elif isinstance(v, str):
        try:
            ts = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError as e:
            raise ValueError(f"{where}: not an ISO 8601 time: {v!r}") from e
    else:
        raise ValueError(f"{where}: expected a time, got {type(v).__name__}")
    if ts.tzinfo is None:
        raise ValueError(f"{where}: time {v!r} has no timezone (write Z or +00:00)")
    return ts.astimezone(UTC)


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault: `kind` on `point` (or a whole device) during [start, end)."""

    point: str
    kind: str
    start: datetime
    end: datetime
    magnitude: float = math.nan

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"fault on {self.point!r}: unknown kind {self.kind!r} (known: {', '.join(FAULT_KINDS)})")
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError(f"fault on {self.point!r}: start and end must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"fault on {self.point!r}: end must be after start")
        if math.isnan(self.magnitude):
            object.__setattr__(self, "magnitude", DEFAULT_MAGNITUDE[self.kind])

    def targets(self, point: str) -> bool:
        """True when the fault covers `point` (same name, or `point` belongs to this device)."""
        return point == self.point or point.startswith(self.point + ".")

    def active(self, ts: datetime) -> bool:
        """True when `ts` is inside [start, end)."""
        return self.start <= ts < self.end

    def label(self) -> dict[str, str]:
        """The ground-truth record written to the labels file."""
        return {"point": self.point, "start": _iso(self.start), "end": _iso(self.end), "kind": self.kind}


@dataclass(frozen=True, slots=True)
class Applied:
    """What a simulator publishes after fault injection.

    `value` None means publish nothing; `ts` is the device timestamp to report; `corrupt`
    asks the simulator to corrupt the payload; `kinds` lists the active fault kinds.
    """

    value: float | None
    ts: datetime
    corrupt: bool = False
    kinds: tuple[str, ...] = ()


@dataclass
class FaultPlan:
    """A set of faults with ground-truth labels; `apply` injects them into a value stream.

    `apply` keeps a little state per point (the last value sent, for `frozen`), so call it
    in time order per point. Overlapping faults on one point all apply (in list order).
    """

    faults: tuple[Fault, ...] = ()
    _by_target: dict[str, list[Fault]] = field(default_factory=dict, repr=False)
    _last_sent: dict[str, float] = field(default_factory=dict, repr=False)
    _frozen_at: dict[tuple[str, int], float] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.faults = tuple(sorted(self.faults, key=lambda f: (f.start, f.point, f.kind)))
        self._by_target = {}
        for f in self.faults:
            self._by_target.setdefault(f.point, []).append(f)

    def __len__(self) -> int:
        return len(self.faults)

    # ------------------------------------------------------------------ building
    @classmethod
    def from_config(cls, items: Sequence[Mapping[str, Any]]) -> FaultPlan:
        """Faults from config tables: point, kind, start, end (or duration_s), magnitude."""
        faults = []
        for i, item in enumerate(items):
            where = f"faults[{i}]"
            extra = set(item) - {"point", "kind", "start", "end", "duration_s", "magnitude"}
            if extra:
                raise ValueError(f"{where}: unknown key {sorted(extra)[0]!r}")
            for key in ("point", "kind", "start"):
                if key not in item:
                    raise ValueError(f"{where}: required key {key!r} is missing")
            start = _parse_ts(item["start"], f"{where}.start")
            if "end" in item:
                end = _parse_ts(item["end"], f"{where}.end")
            elif "duration_s" in item:
                end = start + timedelta(seconds=float(item["duration_s"]))
            else:
                raise ValueError(f"{where}: give end or duration_s")
            mag = float(item.get("magnitude", math.nan))
            try:
                faults.append(Fault(str(item["point"]), str(item["kind"]), start, end, mag))
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from e
        return cls(tuple(faults))

    @classmethod
    def random(
        cls,
        points: Sequence[str],
        *,
        start: datetime,
        end: datetime,
        seed: int,
        interval_s: float,
        rate_per_day: float = 1.0,
        kinds: Iterable[str] = FAULT_KINDS,
        devices: Sequence[str] = (),
    ) -> FaultPlan:
        """Random non-overlapping faults per point (and per device for device kinds).

        Windows are whole multiples of `interval_s` starting on `start + k * interval_s`, so
        a point sampled every `interval_s` sees every fault in at least one sample whatever
        its phase. Voltage points get sag/swell, power points overconsumption; counters
        (names with "energy") never get drift, sag, swell or overconsumption.
        """
        if end <= start or interval_s <= 0 or rate_per_day < 0:
            raise ValueError("need end > start, interval_s > 0 and rate_per_day >= 0")
        allowed = [k for k in kinds if k in FAULT_KINDS]
        rng = random.Random(seed)
        faults: list[Fault] = []
        span_s = (end - start).total_seconds()
        slots = int(span_s // interval_s)
        mean_gap = 86400.0 / rate_per_day / interval_s if rate_per_day > 0 else math.inf

        def kinds_for(name: str, device: bool) -> list[str]:
            if device:
                return [k for k in allowed if k in DEVICE_KINDS]
            out = [k for k in allowed if k not in DEVICE_KINDS]
            if "voltage" not in name:
                out = [k for k in out if k not in ("sag", "swell")]
            if "power" not in name or "factor" in name:
                out = [k for k in out if k != "overconsumption"]
            if "energy" in name:
                out = [k for k in out if k not in ("drift", "sag", "swell", "overconsumption")]
            return out

        targets = [(p, False) for p in points] + [(d, True) for d in devices]
        for name, is_device in targets:
            ks = kinds_for(name, is_device)
            if not ks or mean_gap == math.inf:
                continue
            slot = int(rng.expovariate(1.0 / mean_gap))
            while slot < slots:
                kind = rng.choice(ks)
                lo, hi = _DURATION[kind]
                n = rng.randint(lo, hi)
                if slot + n > slots:
                    break
                mag = DEFAULT_MAGNITUDE[kind]
                if kind == "clock_skew":
                    mag = rng.choice((-1, 1)) * rng.uniform(60.0, 900.0)
                elif kind == "spike":
                    mag = rng.choice((rng.uniform(3.0, 10.0), rng.uniform(-3.0, -0.5)))
                f_start = start + timedelta(seconds=slot * interval_s)
                faults.append(Fault(name, kind, f_start, f_start + timedelta(seconds=n * interval_s), mag))
                slot += n + 1 + int(rng.expovariate(1.0 / mean_gap))
        return cls(tuple(faults))

    # ------------------------------------------------------------------ applying
    def active(self, point: str, ts: datetime) -> list[Fault]:
        """The faults covering `point` at `ts`."""
        out: list[Fault] = []
        for target in (point, point.split(".", 1)[0]) if "." in point else (point,):
            for f in self._by_target.get(target, ()):
                if f.active(ts) and f.targets(point):
                    out.append(f)
        return out

    def offline(self, device: str, ts: datetime) -> bool:
        """True while an `offline` fault holds `device` (the simulator stays silent)."""
        return any(f.kind == "offline" and f.active(ts) for f in self._by_target.get(device, ()))

    def clock_offset(self, device: str, ts: datetime) -> float:
        """Seconds the device clock is off at `ts` (the sum of active clock_skew faults)."""
        return sum(f.magnitude for f in self._by_target.get(device, ()) if f.kind == "clock_skew" and f.active(ts))

    def apply(self, point: str, ts: datetime, value: float) -> Applied:
        """Inject the active faults of `point` at `ts` into `value`."""
        active = self.active(point, ts)
        if not active:
            self._last_sent[point] = value
            return Applied(value, ts)
        out: float | None = value
        out_ts = ts
        corrupt = False
        for f in active:
            k = f.kind
            if out is None:
                break
            if k in ("dropout", "offline"):
                out = None
            elif k == "spike":
                out = out * f.magnitude if out else f.magnitude
            elif k in ("sag", "swell", "overconsumption"):
                out = out * f.magnitude
            elif k == "drift":
                total = (f.end - f.start).total_seconds()
                progress = max(0.05, (ts - f.start).total_seconds() / total)
                out = out * (1.0 + f.magnitude * progress)
            elif k == "frozen":
                key = (point, id(f))
                if key not in self._frozen_at:
                    self._frozen_at[key] = self._last_sent.get(point, out)
                out = self._frozen_at[key]
            elif k == "clock_skew":
                out_ts = ts + timedelta(seconds=f.magnitude)
            elif k == "corrupt":
                corrupt = True
                rng = random.Random(zlib.crc32(f"{point}|{ts.timestamp()}".encode()))
                out = rng.choice((math.nan, -out * 1000.0 - 1.0, rng.uniform(1e9, 1e12)))
        if out is not None:
            self._last_sent[point] = out
        return Applied(out, out_ts, corrupt, tuple(f.kind for f in active))

    # ------------------------------------------------------------------ labels
    def labels(self) -> list[dict[str, str]]:
        """Every fault as a label, ordered by start."""
        return [f.label() for f in self.faults]

    def write_labels(self, dest: str | Path | IO[str]) -> None:
        """Write the labels as JSON lines (to a path, created with its parent, or a text file)."""
        if isinstance(dest, (str, Path)):
            path = Path(dest)
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("w", encoding="utf-8") as f:
                self.write_labels(f)
            return
        for lab in self.labels():
            dest.write(json.dumps(lab, sort_keys=False) + "\n")

    def merged(self, other: FaultPlan) -> FaultPlan:
        """A plan with the faults of both."""
        return FaultPlan(self.faults + other.faults)


def read_labels(path: str | Path) -> list[Fault]:
    """Read a labels file back into faults (magnitudes are not part of labels: defaults)."""
    out = []
    with Path(path).open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            d = json.loads(line)
            where = f"{path}:{n}"
            out.append(Fault(d["point"], d["kind"], _parse_ts(d["start"], where), _parse_ts(d["end"], where)))
    return out
