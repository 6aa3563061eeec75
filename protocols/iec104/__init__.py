"""IEC 60870-5-104 driver (c104): `SOURCE_KIND` for the config schema, `create_driver()`.

Point keys are `"<ca>/<ioa>"` (common address / information object address); see README.md.
"""

from __future__ import annotations

from core.config import ResolvedSource, SourceKind
from core.interfaces import DriverContext, StreamingDriver
from protocols.iec104.config import PointOptions, RtuOptions, SourceOptions

SOURCE_KIND = SourceKind(options=SourceOptions, device=RtuOptions, point=PointOptions)


def create_driver(source: ResolvedSource, ctx: DriverContext) -> StreamingDriver:
    """The streaming driver for one `iec104` source."""
    from protocols.iec104.driver import Iec104Driver

    return Iec104Driver(source, ctx)


__all__ = ["SOURCE_KIND", "PointOptions", "RtuOptions", "SourceOptions", "create_driver"]
