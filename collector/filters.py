"""Data-quality filters: range, spike, frozen, duplicate and late. They FLAG, never drop.

One `PointFilter` per point keeps the little state the checks need (last value, last
timestamps, repeat count). `PointFilter.check` is pure apart from that state and does no I/O,
so the normalizer calls it inline for every reading.
"""

from __future__ import annotations

from datetime import datetime

from core.config import FilterConfig, ResolvedPoint
from core.records import Quality

_OUT_OF_RANGE = int(Quality.OUT_OF_RANGE)
_SPIKE = int(Quality.SPIKE)
_FROZEN = int(Quality.FROZEN)
_DUPLICATE = int(Quality.DUPLICATE)
_LATE = int(Quality.LATE)
_RECENT = 8  # timestamps remembered per point to detect duplicates arriving out of order


class PointFilter:
    """The checks of one point and their state.

    - range: value outside `[lo, hi]` -> OUT_OF_RANGE
    - spike: |value - previous value| > `spike` -> SPIKE
    - frozen: the same value for `frozen_after` consecutive samples (this one included) -> FROZEN
    - duplicate: a timestamp already seen (the last few are remembered) -> DUPLICATE
    - late: `received_at - ts > late_after_s` -> LATE
    """

    __slots__ = ("frozen_after", "hi", "last_ts", "last_value", "late_after_s", "lo", "recent", "repeats", "spike")

    def __init__(self, *, range: tuple[float, float] | None = None, spike: float | None = None,
                 frozen_after: int | None = None, late_after_s: float = 3600.0) -> None:
        self.lo: float | None = range[0] if range else None
        self.hi: float | None = range[1] if range else None
        self.spike = spike
        self.frozen_after = frozen_after
        self.late_after_s = late_after_s
        self.last_ts: datetime | None = None
        self.last_value: float | None = None
        self.repeats = 0
        self.recent: list[datetime] = []

    @classmethod
    def for_point(cls, point: ResolvedPoint, cfg: FilterConfig) -> PointFilter:
        """The filter configured for `point` (point settings override the defaults)."""
        spec = point.spec
        return cls(range=spec.range, spike=spec.spike,
                   frozen_after=spec.frozen_after if spec.frozen_after is not None else cfg.frozen_after,
                   late_after_s=cfg.late_after_s)

    def check(self, ts: datetime, value: float, received_at: datetime) -> int:
        """Flags (a `Quality` bit mask as int, for speed) for one reading, updating the state."""
        q = 0
        lo = self.lo
        if lo is not None and (value < lo or value > self.hi):  # type: ignore[operator]
            q |= _OUT_OF_RANGE
        if (received_at - ts).total_seconds() > self.late_after_s:
            q |= _LATE
        last_ts = self.last_ts
        if last_ts is not None and ts <= last_ts:
            # Same or older timestamp: a duplicate if we saw it, otherwise an out-of-order
            # sample; neither may disturb the spike/frozen state of the newest value.
            if ts == last_ts or ts in self.recent:
                q |= _DUPLICATE
            else:
                self._remember(ts)
            return q
        last = self.last_value
        if last is not None:
            if self.spike is not None and abs(value - last) > self.spike:
                q |= _SPIKE
            if value == last:
                self.repeats += 1
                fa = self.frozen_after
                if fa is not None and self.repeats >= fa:
                    q |= _FROZEN
            else:
                self.repeats = 1
        else:
            self.repeats = 1
        self.last_value = value
        self.last_ts = ts
        self._remember(ts)
        return q

    def _remember(self, ts: datetime) -> None:
        recent = self.recent
        recent.append(ts)
        if len(recent) > _RECENT:
            del recent[0]
