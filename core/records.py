"""Immutable records that flow through GridWatch.

`RawSample` is what a driver produces (protocol key, raw value); the collector normalizes it
into a `Reading` (point id, engineering value, quality). Timestamps are always timezone-aware
UTC: `ts` is device time when the protocol carries it, otherwise receive time; `received_at`
is always the collector's receive time.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


def utcnow() -> datetime:
    """The current time as an aware UTC datetime."""
    return datetime.now(UTC)


class Quality(enum.IntFlag):
    """Quality flags of a reading.

    The low byte keeps the IEC 60870-5-104 quality descriptor bits at their wire positions
    (OV 0x01, BL 0x10, SB 0x20, NT 0x40, IV 0x80), so a QDS byte maps with a mask. Counter
    flags CY/CA (binary counter reading) follow, then GridWatch's own flags set by the
    collector's filters, drivers and operators. A reading is never dropped for its quality:
    the flags say what is wrong with it.
    """

    GOOD = 0
    # IEC 104 quality descriptor (QDS) bits, at their wire positions.
    OVERFLOW = 0x01  # OV
    BLOCKED = 0x10  # BL
    SUBSTITUTED = 0x20  # SB
    NOT_TOPICAL = 0x40  # NT
    INVALID = 0x80  # IV
    # Integrated totals (BCR sequence byte): carry and counter adjusted.
    CARRY = 0x100  # CY
    ADJUSTED = 0x200  # CA
    # Our own flags.
    OUT_OF_RANGE = 0x1000
    SPIKE = 0x2000
    FROZEN = 0x4000
    STALE = 0x8000
    DUPLICATE = 0x1_0000
    LATE = 0x2_0000
    MANUAL = 0x4_0000
    COMM_FAIL = 0x8_0000  # the device answered with an exception or not at all
    CLOCK_INVALID = 0x10_0000  # device time absent/unsynchronised/implausible; receive time used
    ROLLOVER = 0x20_0000  # an energy counter wrapped and was unwrapped

    @property
    def is_good(self) -> bool:
        """True when no flag that makes the value unusable is set."""
        return not (self & BAD_QUALITY)


BAD_QUALITY = Quality.INVALID | Quality.COMM_FAIL | Quality.OUT_OF_RANGE

IEC_QDS_MASK = 0xF1  # OV | BL | SB | NT | IV


@dataclass(frozen=True, slots=True)
class RawSample:
    """A value as a driver read it, before scaling and filtering.

    `key` identifies the point inside its source, in the form the source's point map uses
    (`PointSpec.key`); `device_ts` is the device's own timestamp when the protocol carries one.
    """

    source: str
    key: str
    value: float
    received_at: datetime
    device_ts: datetime | None = None
    quality: Quality = Quality.GOOD


@dataclass(frozen=True, slots=True)
class Reading:
    """A normalized measurement of one point, ready to store."""

    point_id: int
    ts: datetime
    value: float
    quality: Quality
    received_at: datetime


class Severity(enum.IntEnum):
    """Alert severities, ordered so that max() picks the worst."""

    INFO = 0
    WARNING = 1
    MINOR = 2
    MAJOR = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> Severity:
        """Parse a severity name case-insensitively."""
        return cls[text.strip().upper()]


@dataclass(frozen=True, slots=True)
class Alert:
    """A detector's statement that a condition is active (or has cleared) for a key.

    `key` is stable for one condition (rule plus point or device) so that alerting can
    deduplicate; `firing=False` resolves it. `evidence` carries value, expected value, score
    and the rule's parameters; `recommendation` is a short operator hint where one applies.
    """

    key: str
    rule: str
    severity: Severity
    firing: bool
    ts: datetime
    summary: str
    point_id: int | None = None
    device: str = ""
    zone: str = ""
    subject: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)
    recommendation: str = ""


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the append-only event journal.

    `kind` groups events: alert, link, config, correction, operator, schedule, data.
    """

    kind: str
    source: str
    message: str
    ts: datetime
    actor: str = "system"
    details: dict[str, Any] = field(default_factory=dict)
