"""Modbus TCP meter farm (pymodbus server): `run_simulator(cfg, clock, stop)`.

Config (a ``[[simulators]]`` table of kind "modbus")::

    [[simulators]]
    kind = "modbus"
    host = "127.0.0.1"
    templates = ["templates/*.toml"]     # relative to the config file
    seed = 1
    labels = "var/labels/modbus.jsonl"   # ground truth of injected faults (optional)
    [simulators.faults]                  # optional: random faults (+ explicit `items`)
    rate_per_day = 0.5
    [[simulators.groups]]
    name = "m{n:05d}"                    # same expansion as the collector's devices
    template = "sdm630"
    count = 1000
    port = 15020                         # meter i: port + i // units_per_port
    units_per_port = 100                 #          unit unit_start + i % units_per_port
    profile = { residential = 0.7, commercial = 0.3 }
    peak_kw = 10.0
    latency_ms = 100
    jitter_ms = 20
    silent = 0.02                        # share of meters that never answer
    bad_addresses = [60]                 # PDU addresses answering "illegal data address"
    values = { frequency = 50.0 }        # fixed values by point name (tests, demos)
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from core.interfaces import Clock
from simulators.modbus.farm import (
    FarmConfig,
    FarmDevice,
    GroupConfig,
    MeterFarm,
    farm_from_dict,
    layout,
    load_templates,
)

__all__ = ["FarmConfig", "FarmDevice", "GroupConfig", "MeterFarm", "farm_from_dict", "layout", "load_templates",
           "run_simulator"]


async def run_simulator(cfg: dict[str, Any], clock: Clock, stop: asyncio.Event) -> None:
    """Serve the farm described by `cfg` until `stop` is set."""
    farm, plan = farm_from_dict(cfg, clock)
    if plan is not None and farm.cfg.labels:
        path = Path(farm.cfg.labels)
        if not path.is_absolute():
            path = Path(farm.cfg.config_dir) / path
        plan.write_labels(path)
    async with farm:
        await stop.wait()
