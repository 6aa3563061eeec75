"""The `[schedule]` configuration section: time zone, tolerance band, early warning, subjects.

Validated once into frozen pydantic models (unknown keys are errors). Example::

    [schedule]
    timezone = "Asia/Almaty"
    tolerance_pct = 5.0          # band half-width: max(pct of |plan|, tolerance_mwh)
    tolerance_mwh = 0.5
    zone_miner_quota_mwh = { North = 40.0, South = 25.0 }

    [[schedule.subjects]]
    name = "TPP-1"
    zone = "North"
    kind = "generator"
    points = [{ point = "tpp1.meter.ea_export", sign = 1, unit = "kWh" }]
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

ZONES: tuple[str, ...] = ("North", "South", "West")
JOINT_ZONE = "North-South"
"""North and South trade jointly: results are also kept for their sum under this name."""

Unit = Literal["Wh", "kWh", "MWh", "W", "kW", "MW"]

TO_MWH: dict[str, float] = {"Wh": 1e-6, "kWh": 1e-3, "MWh": 1.0, "W": 1e-6, "kW": 1e-3, "MW": 1.0}
"""Factor from a point's unit to MWh (energy) or MW (power)."""


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MeteringPoint(_Model):
    """A metering point of a subject.

    `kind = "energy"`: an energy counter (cumulative, read every 15 minutes); the hour's energy
    is the counter's delta. `kind = "power"`: an active-power value; the energy is its integral.
    `sign` +1 counts the point as generation, -1 as consumption; `loss_factor` is the share
    lost between the meter and the trading boundary (metered x (1 - loss_factor)).
    """

    point: str = Field(min_length=1)
    sign: Literal[1, -1] = 1
    kind: Literal["energy", "power"] = "energy"
    unit: Unit = "kWh"
    loss_factor: float = Field(0.0, ge=0.0, lt=1.0)

    @model_validator(mode="after")
    def _unit_fits_kind(self) -> MeteringPoint:
        energy = self.unit.endswith("h")
        if energy != (self.kind == "energy"):
            raise ValueError(f"unit {self.unit!r} does not fit kind {self.kind!r} (energy: Wh/kWh/MWh, power: W/kW/MW)")
        return self


class SubjectConfig(_Model):
    """A market subject: a generator, a consumer or a digital miner in one balancing zone.

    Plans are positive in the subject's direction (generation for generators, consumption for
    consumers and miners). A miner's plan is its purchased hourly volume: consuming above it
    is a breach. `allow_negative` admits negative plan values (e.g. pumped storage).
    """

    name: str = Field(min_length=1, max_length=100, pattern=r"^[^,\s][^,]*$")
    zone: Literal["North", "South", "West"]
    kind: Literal["generator", "consumer", "miner"]
    points: list[MeteringPoint] = Field(default_factory=list)
    allow_negative: bool = False
    tolerance_pct: float | None = Field(None, ge=0)
    tolerance_mwh: float | None = Field(None, ge=0)


class EarlyWarning(_Model):
    """When a projection out of the band raises a warning during the hour."""

    enabled: bool = True
    min_elapsed_min: float = Field(30.0, ge=0, le=60)
    """Do not warn before this much of the hour is covered by data (projections are noisy)."""
    severity: Literal["info", "warning", "minor", "major", "critical"] = "warning"
    final_severity: Literal["info", "warning", "minor", "major", "critical"] = "minor"


class ScheduleConfig(_Model):
    """Schedule execution control settings (`[schedule]`)."""

    enabled: bool = True
    timezone: str = "Asia/Almaty"
    tolerance_pct: float | None = Field(5.0, ge=0)
    tolerance_mwh: float | None = Field(None, ge=0)
    early_warning: EarlyWarning = EarlyWarning.model_validate({})
    interval_s: float = Field(900.0, gt=0)
    """Nominal reading interval of energy counters (a baseline is searched this far back)."""
    power_max_gap_s: float = Field(300.0, gt=0)
    """Power samples further apart than this are a gap (not integrated)."""
    min_completeness: float = Field(0.98, gt=0, le=1)
    """A closed hour with less of it covered by data gets the verdict 'incomplete'."""
    compute_every_s: float = Field(60.0, gt=0)
    """How often (in the injected clock's time) the current hour is recomputed."""
    final_after_s: float = Field(120.0, ge=0)
    """An hour is closed (final verdict) this long after its end, to let the last reading in."""
    recompute_days: int = Field(2, ge=0, le=31)
    """Late data older than this many days is journaled but not recomputed automatically."""
    quota_tolerance_mwh: float = Field(0.001, ge=0)
    """A miner is above its purchased volume when it consumes more than volume + this (metering
    resolution, 1 kWh by default)."""
    zone_miner_quota_mwh: dict[str, float] = Field(default_factory=dict)
    """Hourly quota of the miners' total consumption per zone."""
    subjects: list[SubjectConfig] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as e:
            raise ValueError(f"unknown time zone {v!r}") from e
        return v

    @field_validator("zone_miner_quota_mwh")
    @classmethod
    def _quota_zones(cls, v: dict[str, float]) -> dict[str, float]:
        for zone, q in v.items():
            if zone not in ZONES:
                raise ValueError(f"unknown zone {zone!r} (known: {', '.join(ZONES)})")
            if q < 0:
                raise ValueError(f"quota of zone {zone!r} must not be negative")
        return v

    @model_validator(mode="after")
    def _unique(self) -> ScheduleConfig:
        seen: set[str] = set()
        for s in self.subjects:
            if s.name in seen:
                raise ValueError(f"duplicate subject name {s.name!r}")
            if s.name in ZONES or s.name == JOINT_ZONE:
                raise ValueError(f"subject name {s.name!r} clashes with a zone name")
            seen.add(s.name)
        return self

    @property
    def tz(self) -> ZoneInfo:
        """The operator's time zone."""
        return ZoneInfo(self.timezone)

    def subject(self, name: str) -> SubjectConfig | None:
        """The subject called `name`, or None."""
        for s in self.subjects:
            if s.name == name:
                return s
        return None

    def band(self, plan_mwh: float, subject: SubjectConfig | None = None) -> float:
        """Half-width of the tolerance band around `plan_mwh` (MWh)."""
        pct = subject.tolerance_pct if subject and subject.tolerance_pct is not None else self.tolerance_pct
        mwh = subject.tolerance_mwh if subject and subject.tolerance_mwh is not None else self.tolerance_mwh
        return max(abs(plan_mwh) * (pct or 0.0) / 100.0, mwh or 0.0)
