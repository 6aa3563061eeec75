"""The one error tree of GridWatch.

Third-party exceptions are translated into these at the package boundary that imports the
library, so callers never need to know which driver or database client raised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class GridWatchError(Exception):
    """Root of every error GridWatch raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigIssue:
    """One problem in a configuration file: where it is and why it is wrong."""

    file: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}: {self.path or '<root>'}: {self.reason}"


class ConfigError(GridWatchError):
    """A configuration file is unreadable or invalid; carries every issue found."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues: tuple[ConfigIssue, ...] = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class DriverError(GridWatchError):
    """A protocol driver failed; `source` names the configured source."""

    def __init__(self, source: str, message: str) -> None:
        self.source = source
        super().__init__(f"{source}: {message}")


class ConnectError(DriverError):
    """The link to a device or broker is down; the driver retries with backoff."""


class DecodeError(DriverError):
    """A payload or register block could not be decoded; `field` names what was wrong."""

    def __init__(self, source: str, message: str, *, field: str = "", payload: bytes = b"") -> None:
        self.field = field
        self.payload = payload
        super().__init__(source, f"{field}: {message}" if field else message)


class SinkError(GridWatchError):
    """Writing a batch failed."""


class SinkUnavailable(SinkError):
    """The sink is down or slow: keep the batch (spool) and retry later."""


class SinkRejected(SinkError):
    """The sink refused the batch's content: retrying cannot help, quarantine it."""
