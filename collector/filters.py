"""Data-quality filters: range, spike, frozen, duplicate and late. They FLAG, never drop.

One `PointFilter` per point keeps the little state the checks need (last value, last two
timestamps, repeat count). `PointFilter.check` is pure apart from that state and does no I/O.
The normalizer calls `check_cut` with the lateness cut-off (`received_at - late_after_s`)
computed once per receive time, which keeps the per-reading cost to a few comparisons.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from core.config import FilterConfig, ResolvedPoint
from core.records import Quality

_OUT_OF_RANGE = int(Quality.OUT_OF_RANGE)
_SPIKE = int(Quality.SPIKE)
_FROZEN = int(Quality.FROZEN)
_DUPLICATE = int(Quality.DUPLICATE)
_LATE = int(Quality.LATE)
_OUT_OF_ORDER_KEPT = 8  # out-of-order timestamps remembered per point to detect their duplicates


class PointFilter:
    """The checks of one point and their state.

    - range: value outside `[lo, hi]` -> OUT_OF_RANGE
    - spike: |value - previous value| > `spike` -> SPIKE
    - frozen: the same value for `frozen_after` consecutive samples (this one included) -> FROZEN
    - duplicate: a timestamp already seen (the newest two, and recent out-of-order ones) -> DUPLICATE
    - late: `received_at - ts > late_after_s` -> LATE

    A sample older than the newest one (out of order) is checked for range, late and duplicate
    only; it does not disturb the spike/frozen state of the newest value.
    """

    __slots__ = ("frozen_after", "hi", "last_ts", "last_value", "late", "lo", "older", "prev_ts", "repeats",
                 "spike")

    def __init__(self, *, range: tuple[float, float] | None = None, spike: float | None = None,
                 frozen_after: int | None = None, late_after_s: float = 3600.0) -> None:
        self.lo: float = range[0] if range else float("-inf")
        self.hi: float = range[1] if range else float("inf")
        self.spike = spike
        self.frozen_after = frozen_after
        self.late = timedelta(seconds=late_after_s)
        self.last_ts: datetime | None = None
        self.prev_ts: datetime | None = None
        self.last_value: float | None = None
        self.repeats = 0
        self.older: list[datetime] | None = None

    @classmethod
    def for_point(cls, point: ResolvedPoint, cfg: FilterConfig) -> PointFilter:
        """The filter configured for `point` (point settings override the defaults)."""
        spec = point.spec
        return cls(range=spec.range, spike=spec.spike,
                   frozen_after=spec.frozen_after if spec.frozen_after is not None else cfg.frozen_after,
                   late_after_s=cfg.late_after_s)

    def check(self, ts: datetime, value: float, received_at: datetime) -> int:
        """Flags (a `Quality` bit mask as int, for speed) for one reading, updating the state."""
        return self.check_cut(ts, value, received_at - self.late)

    def check_cut(self, ts: datetime, value: float, late_cut: datetime) -> int:
        """`check` with the lateness cut-off (`received_at - late_after_s`) precomputed."""
        q = 0
        if value < self.lo or value > self.hi:
            q = _OUT_OF_RANGE
        if ts < late_cut:
            q |= _LATE
        last_ts = self.last_ts
        if last_ts is not None and ts <= last_ts:
            older = self.older
            if ts == last_ts or ts == self.prev_ts or (older is not None and ts in older):
                return q | _DUPLICATE
            if older is None:
                older = self.older = []
            older.append(ts)
            if len(older) > _OUT_OF_ORDER_KEPT:
                del older[0]
            return q
        last = self.last_value
        if last is not None:
            spike = self.spike
            if spike is not None and abs(value - last) > spike:
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
        self.prev_ts = last_ts
        self.last_ts = ts
        return q
