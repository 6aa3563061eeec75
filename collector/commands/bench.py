"""`gridwatch bench KIND`: benchmarks. Each kind is a module with `add_arguments(parser)` and
`run(args) -> int`; figures go to `docs/performance.md`."""

from __future__ import annotations

import argparse
import importlib
from typing import Any

BENCHES = {
    "ingest": "collector.bench_ingest",
    "modbus": "protocols.modbus.bench",
    "iec104": "protocols.iec104.bench",
    "mqtt": "protocols.mqtt.bench",
    "detectors": "detectors.bench",
    "alerting": "alerting.bench",
    "schedule": "detectors.schedule.bench",
}


def register(sub: Any) -> None:
    """Add `bench` and one sub-parser per available benchmark."""
    p: argparse.ArgumentParser = sub.add_parser("bench", help="run a benchmark")
    kinds = p.add_subparsers(dest="bench", required=True)
    for name, module in BENCHES.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name and module.startswith(e.name):
                continue
            raise
        bp = kinds.add_parser(name, help=(mod.__doc__ or "").strip().splitlines()[0] if mod.__doc__ else None)
        mod.add_arguments(bp)
        bp.set_defaults(handler=mod.run)
