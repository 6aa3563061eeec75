"""Simulators of the three protocols GridWatch collects, plus load profiles and faults.

Shared building blocks (stable API, imported by every simulator):

* `simulators.profiles` - deterministic load profiles (`Profile.create(kind, seed=, peak_kw=)`)
  and three-phase meters with exact energy counters (`Meter(profile).sample(ts)`).
* `simulators.faults` - `FaultPlan` (from config or random for a seed), `apply()` on a value
  stream, and the ground-truth labels file (JSON lines: point, start, end, kind).

Runner contract (what `gridwatch simulate -c FILE` calls for each ``[[simulators]]`` table)::

    # simulators/<kind>/__init__.py
    async def run_simulator(cfg: dict[str, Any], clock: Clock, stop: asyncio.Event) -> None:
        ...

* `cfg` is the ``[[simulators]]`` table as parsed from TOML, plus two keys added by the
  command: ``config_dir`` (the directory of the TOML file, to resolve relative paths) and
  ``seed`` (the table's own, else the file's ``[simulate] seed``). The runner validates it
  and raises `ValueError` naming the key on bad input, before starting anything.
* `clock` is a `core.interfaces.Clock` (`() -> aware UTC datetime`), usually a
  `core.clock.AcceleratedClock`: all simulated values and timestamps come from it; the
  clock's `speed` attribute (1.0 when absent) converts simulated intervals to real sleeps.
* `stop` is set when the runner must shut down; it returns after releasing its ports and
  tasks. It must not return earlier unless it failed (raise then).

`RUNNERS` maps a simulator kind to the module that exposes `run_simulator`; the lead adds
iec104 and mqtt when their simulators exist (an entry whose module is missing is reported
as "not available" by the command, not a crash).
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from typing import Any

from core.interfaces import Clock

SimulatorRunner = Callable[[dict[str, Any], Clock, asyncio.Event], Awaitable[None]]
"""`async def run_simulator(cfg, clock, stop) -> None` (see the module docstring)."""

RUNNERS: dict[str, str] = {
    "modbus": "simulators.modbus",
    "iec104": "simulators.iec104",
    "mqtt": "simulators.mqtt",
}


def load_runner(kind: str) -> SimulatorRunner:
    """The `run_simulator` of simulator `kind`; `LookupError` if unknown or not installed."""
    module = RUNNERS.get(kind)
    if module is None:
        raise LookupError(f"unknown simulator kind {kind!r} (known: {', '.join(sorted(RUNNERS))})")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and module.startswith(e.name):
            raise LookupError(f"simulator {kind!r} is not available ({module} is missing)") from e
        raise
    runner = getattr(mod, "run_simulator", None)
    if runner is None:
        raise LookupError(f"simulator {kind!r}: {module} has no run_simulator()")
    return runner  # type: ignore[no-any-return]
