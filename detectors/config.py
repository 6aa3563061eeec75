"""The `[detectors]` configuration section (rules beyond each point's own `limits`, and ML).

Rules select points by glob patterns over resolved point names (`"m*.voltage_*"`, `"rtu1.*"`);
a point's own `PointSpec` (limits, nominal, interval_s, frozen_after) gives per-point defaults.

```toml
[detectors]
[[detectors.rate]]
points = ["rtu*.p_mw"]
max_per_s = 5.0
[[detectors.voltage]]
points = ["*.u_*"]          # nominal from the point's `nominal` unless given
normal_pct = 5.0
max_pct = 10.0
[[detectors.consumption]]
points = ["miner*.energy_kwh"]
norm_per_interval = 250.0
norm_per_hour = 900.0
peak_hours = [8, 9, 10, 18, 19, 20, 21]
[detectors.ml]
score_threshold = 0.999
```
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.config import LimitSpec

SeverityName = Literal["info", "warning", "minor", "major", "critical"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PointSelector(_Model):
    """Glob patterns over point names; a rule applies to points matching any of them."""

    points: list[str] = Field(default_factory=lambda: ["*"], min_length=1)

    def matches(self, name: str) -> bool:
        """True when `name` matches one of the patterns."""
        return any(fnmatchcase(name, p) for p in self.points)


class LimitRule(PointSelector):
    """Limits for many points at once (a point's own `limits` take precedence)."""

    limits: LimitSpec
    severity_hi: SeverityName = "warning"
    severity_hihi: SeverityName = "critical"


class RateRule(PointSelector):
    """Rate of change |dv/dt| above `max_per_s` (engineering units per second)."""

    max_per_s: float = Field(gt=0)
    deadband_pct: float = Field(10.0, ge=0, lt=100)
    min_duration_s: float = Field(0.0, ge=0)
    severity: SeverityName = "minor"


class StaleRule(PointSelector):
    """No update for `after_intervals` × the point's `interval_s` (or `interval_s` here)."""

    after_intervals: float = Field(3.0, gt=0)
    interval_s: float | None = Field(None, gt=0)
    severity: SeverityName = "minor"


class FrozenRule(PointSelector):
    """Value unchanged (within `tolerance`) for `samples` consecutive readings."""

    samples: int = Field(10, ge=2)
    tolerance: float = Field(0.0, ge=0)
    severity: SeverityName = "minor"


class VoltageRule(PointSelector):
    """Deviation from nominal: outside ±normal_pct warns, outside ±max_pct is major."""

    nominal: float | None = Field(None, gt=0)
    normal_pct: float = Field(5.0, gt=0)
    max_pct: float = Field(10.0, gt=0)
    deadband_pct: float = Field(0.5, ge=0)
    min_duration_s: float = Field(0.0, ge=0)
    severity_normal: SeverityName = "warning"
    severity_max: SeverityName = "major"

    @model_validator(mode="after")
    def _ordered(self) -> VoltageRule:
        if self.max_pct < self.normal_pct:
            raise ValueError("max_pct must be >= normal_pct")
        return self


class ConsumptionRule(PointSelector):
    """Consumption above the contractual norm per metering interval and per clock hour.

    `mode = "interval"`: each reading is the energy of its interval; `"counter"`: readings are
    a cumulative register and the interval energy is the difference to the previous one.
    """

    mode: Literal["interval", "counter"] = "interval"
    norm_per_interval: float | None = Field(None, gt=0)
    norm_per_hour: float | None = Field(None, gt=0)
    peak_hours: list[int] = Field(default_factory=lambda: [8, 9, 10, 18, 19, 20, 21])
    severity: SeverityName = "major"
    unit: str = "kWh"

    @model_validator(mode="after")
    def _some_norm(self) -> ConsumptionRule:
        if self.norm_per_interval is None and self.norm_per_hour is None:
            raise ValueError("give norm_per_interval and/or norm_per_hour")
        if any(h < 0 or h > 23 for h in self.peak_hours):
            raise ValueError("peak_hours are hours 0..23")
        return self


class MLConfig(_Model):
    """Seasonal baseline + IsolationForest: training, scoring and score storage."""

    enabled: bool = True
    points: list[str] = Field(default_factory=lambda: ["*"])
    slot_minutes: int = Field(15, ge=1, le=1440)
    min_history: int = Field(96, ge=8)
    history_days: float = Field(28.0, gt=0)
    max_history_per_point: int = Field(20_000, ge=100)
    retrain_every_s: float = Field(6 * 3600.0, gt=0)
    iforest_trees: int = Field(100, ge=10, le=1000)
    iforest_sample: int = Field(256, ge=16)
    score_threshold: float = Field(0.999, gt=0, le=1)
    min_duration_s: float = Field(0.0, ge=0)
    severity: SeverityName = "minor"
    store_scores: bool = True
    seed: int = 0


class DetectorsConfig(_Model):
    """The `[detectors]` section.

    Per-point defaults: a point's `limits` give a limit detector; `interval_s` gives a stale
    detector (after `[filters] stale_after_intervals`) when `auto_stale`; `frozen_after` (or
    `[filters] frozen_after`) gives a frozen detector; `nominal` on a point with unit V or kV
    gives a voltage-band detector with the default bands when `auto_voltage`. Rules here add
    to or override (first matching rule wins) those defaults.
    """

    enabled: bool = True
    tick_s: float = Field(10.0, gt=0)
    auto_voltage: bool = True
    auto_stale: bool = True
    limits: list[LimitRule] = Field(default_factory=list)
    rate: list[RateRule] = Field(default_factory=list)
    stale: list[StaleRule] = Field(default_factory=list)
    frozen: list[FrozenRule] = Field(default_factory=list)
    voltage: list[VoltageRule] = Field(default_factory=list)
    consumption: list[ConsumptionRule] = Field(default_factory=list)
    ml: MLConfig = Field(default_factory=lambda: MLConfig.model_validate({}))
