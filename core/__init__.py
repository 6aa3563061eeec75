"""GridWatch core: records, quality flags, errors, interfaces and the configuration schema.

Nothing here performs I/O; every other package builds on these types.
"""

from core.errors import (
    ConfigError,
    ConnectError,
    DecodeError,
    DriverError,
    GridWatchError,
    SinkError,
    SinkRejected,
    SinkUnavailable,
)
from core.records import Alert, Event, Quality, RawSample, Reading, Severity, utcnow

__all__ = [
    "Alert",
    "ConfigError",
    "ConnectError",
    "DecodeError",
    "DriverError",
    "Event",
    "GridWatchError",
    "Quality",
    "RawSample",
    "Reading",
    "Severity",
    "SinkError",
    "SinkRejected",
    "SinkUnavailable",
    "utcnow",
]
