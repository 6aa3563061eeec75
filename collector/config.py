"""Load a GridWatch configuration with every protocol's and feature's schema plugged in.

`core.config` knows no protocol: this module collects the `SOURCE_KIND` of every protocol
package (imported lazily; a package that is not importable is skipped) and the extra sections
owned by detectors, alerting and schedule control, then calls `core.config.load_config`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from core.config import GridWatchConfig, SourceKind, load_config

log = logging.getLogger(__name__)

PROTOCOLS: tuple[str, ...] = ("modbus", "iec104", "mqtt")
"""Protocol packages under `protocols/`, each exporting SOURCE_KIND and create_driver."""

SECTIONS: dict[str, tuple[str, str]] = {
    "detectors": ("detectors.config", "DetectorsConfig"),
    "alerting": ("alerting.config", "AlertingConfig"),
    "schedule": ("detectors.schedule.config", "ScheduleConfig"),
}
"""Extra top-level sections: name -> (module, model class)."""

_extra_kinds: dict[str, tuple[SourceKind, Any]] = {}


def register_kind(name: str, kind: SourceKind, create_driver: Any) -> None:
    """Add a source kind that is not a package under `protocols/` (tests, plugins)."""
    _extra_kinds[name] = (kind, create_driver)


def _import_optional(module: str) -> Any | None:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name and (module == e.name or module.startswith(e.name + ".")):
            return None
        raise


def protocol_modules() -> dict[str, Any]:
    """Importable protocol packages by kind name."""
    out: dict[str, Any] = {}
    for name in PROTOCOLS:
        mod = _import_optional(f"protocols.{name}")
        if mod is not None and hasattr(mod, "SOURCE_KIND"):
            out[name] = mod
    return out


def source_kinds() -> dict[str, SourceKind]:
    """The SourceKind of every available protocol (plus registered extra kinds)."""
    kinds: dict[str, SourceKind] = {n: m.SOURCE_KIND for n, m in protocol_modules().items()}
    for name, (kind, _) in _extra_kinds.items():
        kinds[name] = kind
    return kinds


def driver_factory(kind: str) -> Any:
    """`create_driver(source, ctx)` of a kind; KeyError if the kind is not available."""
    if kind in _extra_kinds:
        return _extra_kinds[kind][1]
    mod = protocol_modules().get(kind)
    if mod is None:
        raise KeyError(kind)
    return mod.create_driver


def extra_sections() -> dict[str, type[BaseModel]]:
    """The section models of detectors, alerting and schedule that are importable."""
    out: dict[str, type[BaseModel]] = {}
    for section, (module, cls) in SECTIONS.items():
        mod = _import_optional(module)
        if mod is None or not hasattr(mod, cls):
            continue
        out[section] = getattr(mod, cls)
    return out


def load(path: str | Path, *, kinds: Mapping[str, SourceKind] | None = None) -> GridWatchConfig:
    """Read and validate a configuration file; raises `core.errors.ConfigError` with every issue."""
    return load_config(path, kinds if kinds is not None else source_kinds(), extra_sections())
