"""RawSample -> Reading: point lookup, scaling, timestamps, quality flags.

One `Normalizer` per source. Its point map is keyed by the key a driver puts in
`RawSample.key`: the point's `ResolvedPoint.key` when that key is unique within the source,
and always the point's globally unique `name` (so drivers of template devices, whose template
keys repeat across devices, report `ResolvedPoint.name` or `<device>/<key>`).

Hot path: one dict lookup, one multiply-add, the filter checks and one `Reading` per sample;
no logging and no other allocation per reading. Samples whose key is not in the map are
collected in `unknown` for the agent (which counts them, journals each key once, keeps them as
dead letters and, for sources with `auto_register`, registers them as `<source>.<key>`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from collector.filters import PointFilter
from core.config import FilterConfig, ResolvedPoint, ResolvedSource
from core.records import Quality, RawSample, Reading

_CLOCK_INVALID = int(Quality.CLOCK_INVALID)
_QCACHE: dict[int, Quality] = {}
_MIN = datetime.min.replace(tzinfo=UTC)


def quality_of(q: int) -> Quality:
    """The `Quality` for a bit mask, cached (constructing IntFlag members is slow)."""
    v = _QCACHE.get(q)
    if v is None:
        v = _QCACHE[q] = Quality(q)
    return v


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        return t.replace(tzinfo=UTC)
    return t.astimezone(UTC)


class _Entry:
    __slots__ = ("filter", "offset", "point_id", "scale")

    def __init__(self, point_id: int, scale: float, offset: float, filt: PointFilter) -> None:
        self.point_id = point_id
        self.scale = scale
        self.offset = offset
        self.filter = filt


def point_keys(source: ResolvedSource) -> dict[str, ResolvedPoint]:
    """Every key that identifies a point of `source` (see module docstring)."""
    counts = Counter(p.key for p in source.points)
    out: dict[str, ResolvedPoint] = {}
    for p in source.points:
        out[p.name] = p
        if p.device:
            out[f"{p.device}/{p.key}"] = p
        if counts[p.key] == 1:
            out.setdefault(p.key, p)
    return out


class Normalizer:
    """Normalizes the samples of one source into readings (see module docstring)."""

    def __init__(self, source: ResolvedSource, point_ids: Mapping[str, int], filters: FilterConfig) -> None:
        self.source = source.name
        self.filters = filters
        self._future = timedelta(seconds=filters.future_tolerance_s)
        self._map: dict[str, _Entry] = {}
        self.unknown: list[RawSample] = []
        self.unknown_counts: Counter[str] = Counter()
        self.clock_invalid = 0
        shared: dict[str, _Entry] = {}
        for key, p in point_keys(source).items():
            pid = point_ids.get(p.name)
            if pid is None:
                continue
            e = shared.get(p.name)
            if e is None:
                e = shared[p.name] = _Entry(pid, p.spec.scale, p.spec.offset, PointFilter.for_point(p, filters))
            self._map[key] = e

    def __len__(self) -> int:
        return len(self._map)

    def add_point(self, key: str, point_id: int, *, scale: float = 1.0, offset: float = 0.0) -> None:
        """Map a key registered at run time (auto-registration) to a point id."""
        self._map[key] = _Entry(point_id, scale, offset, PointFilter(late_after_s=self.filters.late_after_s))

    def knows(self, key: str) -> bool:
        """True when `key` maps to a point."""
        return key in self._map

    def normalize(self, samples: Sequence[RawSample]) -> list[Reading]:
        """Readings for the known samples; unknown ones are appended to `self.unknown`."""
        out: list[Reading] = []
        append = out.append
        get = self._map.get
        future = self._future
        utc = UTC
        good = Quality.GOOD
        qcache = _QCACHE
        reading = Reading
        last_ra: datetime | None = None
        late_cut = future_cut = ra = _MIN  # set from the first sample's receive time
        late = timedelta(seconds=self.filters.late_after_s)
        for s in samples:
            e = get(s.key)
            if e is None:
                self.unknown.append(s)
                self.unknown_counts[s.key] += 1
                continue
            rav = s.received_at
            if rav is not last_ra:
                last_ra = rav
                ra = rav if rav.tzinfo is utc else _utc(rav)
                late_cut = ra - late
                future_cut = ra + future
            sq = s.quality
            q = 0 if sq is good else int(sq)
            dts = s.device_ts
            if dts is None:
                ts = ra
            else:
                if dts.tzinfo is not utc:
                    # A naive device time cannot be trusted; an aware one is converted.
                    dts = None if dts.tzinfo is None else dts.astimezone(utc)
                if dts is None or dts > future_cut:
                    ts = ra
                    q |= _CLOCK_INVALID
                    self.clock_invalid += 1
                else:
                    ts = dts
            f = e.filter
            value = s.value * e.scale + e.offset
            q |= f.check_cut(ts, value, late_cut)
            qq = qcache.get(q)
            if qq is None:
                qq = quality_of(q)
            append(reading(e.point_id, ts, value, qq, ra))
        return out
