"""Modbus TCP driver (pymodbus): templates, request planning, aligned staggered polling.

Public surface used by the collector::

    SOURCE_KIND                      # core.config.SourceKind(options, device, point models)
    create_driver(source, ctx)       # -> ModbusDriver (a StreamingDriver: async with + samples())

See README.md in this folder for the options, the scheduling model and the sample keys.
"""

from __future__ import annotations

from core.config import SourceKind
from protocols.modbus.config import DeviceOptions, PointOptions, SourceOptions
from protocols.modbus.driver import ModbusDriver, create_driver

SOURCE_KIND = SourceKind(options=SourceOptions, device=DeviceOptions, point=PointOptions)

__all__ = ["SOURCE_KIND", "DeviceOptions", "ModbusDriver", "PointOptions", "SourceOptions", "create_driver"]
