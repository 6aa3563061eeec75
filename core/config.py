"""The one TOML configuration schema, validated once into frozen models.

Protocol-, detector- and alerting-specific parts are validated by models those packages own;
the collector passes them in (`SourceKind`, `sections`), so `core` imports nothing of ours.
Every error names the file, the key path and the reason (`ConfigError.issues`).

Shape of a file::

    include = ["templates/*.toml"]          # files whose [[templates]] are merged in
    [storage]  [spool]  [buffer]  [api]  [filters]  [detectors]  [alerting]  [schedule] ...
    [[templates]]   name, kind, points = [...]          # a meter model's point map
    [[sources]]     name, kind, options = {...}, points = [...]
    [[sources.devices]]  name = "m{n:05d}", count = 10000, template = "...", options = {...}
"""

from __future__ import annotations

import glob
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.errors import ConfigError, ConfigIssue

NAME_RE = r"^[A-Za-z0-9_][A-Za-z0-9_.:\-/]*$"


class Model(BaseModel):
    """Base for config models: frozen, and unknown keys are errors (typos must not pass)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class LimitSpec(Model):
    """Alarm limits of one point, with a deadband to clear and a minimum duration to raise."""

    lolo: float | None = None
    lo: float | None = None
    hi: float | None = None
    hihi: float | None = None
    deadband: float = Field(0.0, ge=0)
    min_duration_s: float = Field(0.0, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> LimitSpec:
        seq = [v for v in (self.lolo, self.lo, self.hi, self.hihi) if v is not None]
        if seq != sorted(seq):
            raise ValueError("limits must be ordered lolo <= lo <= hi <= hihi")
        return self


class PointSpec(Model):
    """One point of a point map (in a source, a device or a template).

    `key` is the protocol address as the driver reports it (defaults to `name`); `options`
    holds protocol-specific fields (register, type, byte order; CA/IOA; JSON path) that the
    driver's own model validates. Engineering value = raw * scale + offset.
    """

    name: str = Field(pattern=NAME_RE)
    key: str = ""
    unit: str = ""
    scale: float = 1.0
    offset: float = 0.0
    kind: Literal["analog", "counter", "status"] = "analog"
    description: str = ""
    device: str = ""
    subject: str = ""
    zone: str = ""
    range: tuple[float, float] | None = None
    spike: float | None = Field(None, gt=0)
    frozen_after: int | None = Field(None, ge=2)
    interval_s: float | None = Field(None, gt=0)
    nominal: float | None = Field(None, gt=0)
    limits: LimitSpec | None = None
    options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("range")
    @classmethod
    def _range_ordered(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and v[0] >= v[1]:
            raise ValueError("range must be [min, max] with min < max")
        return v


class TemplateConfig(Model):
    """A reusable point map (a meter or RTU model) shared by many devices."""

    name: str = Field(pattern=NAME_RE)
    kind: str = ""
    description: str = ""
    options: dict[str, Any] = Field(default_factory=dict)
    points: list[PointSpec] = Field(default_factory=list)


class DeviceConfig(Model):
    """A device of a source; `count` expands it into many with `{n}` in name and options."""

    name: str
    template: str | None = None
    count: int | None = Field(None, ge=1, le=1_000_000)
    start: int = 1
    subject: str = ""
    zone: str = ""
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)
    points: list[PointSpec] = Field(default_factory=list)


class SourceConfig(Model):
    """A configured source: one protocol driver instance."""

    name: str = Field(pattern=NAME_RE)
    kind: str
    enabled: bool = True
    options: dict[str, Any] = Field(default_factory=dict)
    devices: list[DeviceConfig] = Field(default_factory=list)
    points: list[PointSpec] = Field(default_factory=list)


class StorageConfig(Model):
    """Database settings. No `dsn` means: start the embedded PostgreSQL in `embedded_dir`."""

    dsn: str | None = None
    embedded_dir: Path = Path("var/pgdata")
    backend: Literal["auto", "timescaledb", "postgres"] = "auto"
    retention_days: int = Field(400, ge=1)
    compress_after_days: int = Field(7, ge=1)
    partition_ahead_days: int = Field(3, ge=1, le=60)
    pool_size: int = Field(4, ge=1, le=64)
    batch_max_rows: int = Field(5000, ge=1)
    batch_max_age_ms: int = Field(500, ge=1)
    write_timeout_s: float = Field(30.0, gt=0)


class SpoolConfig(Model):
    """The crash-safe disk spool used while the database is down or slow."""

    dir: Path = Path("var/spool")
    max_bytes: int = Field(2 * 1024**3, ge=1024 * 1024)
    segment_bytes: int = Field(16 * 1024**2, ge=4096)


class BufferConfig(Model):
    """The in-memory buffer between collectors and the writer; beyond it, batches spool."""

    max_rows: int = Field(200_000, ge=100)


class TokenConfig(Model):
    """An API token with a role; give `token_env` to keep the secret out of the file."""

    name: str
    role: Literal["viewer", "operator", "admin"]
    token: str | None = None
    token_env: str | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> TokenConfig:
        if (self.token is None) == (self.token_env is None):
            raise ValueError("give exactly one of token or token_env")
        return self


class ApiConfig(Model):
    """The HTTP API: health, metrics, readings, archive, alerts, schedule."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    tokens: list[TokenConfig] = Field(default_factory=list)
    public_read: bool = True


class FilterConfig(Model):
    """Default data-quality checks; points override spike/frozen/range/interval."""

    late_after_s: float = Field(3600.0, gt=0)
    future_tolerance_s: float = Field(300.0, ge=0)
    frozen_after: int | None = Field(None, ge=2)
    stale_after_intervals: float = Field(3.0, gt=0)


class CollectorConfig(Model):
    """Daemon-wide collector settings."""

    instance: str = "gridwatch"
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    dead_letter_max: int = Field(10_000, ge=10)


class ClockConfig(Model):
    """Simulated time for demos: `speed` > 1 runs the daemon's clock faster from `start`.

    `start` is an ISO 8601 time with an offset (e.g. "2026-03-02T00:00:00Z"); without it a
    faster clock starts from now. The collector, detectors and schedule control all use it.
    """

    start: str | None = None
    speed: float = Field(1.0, gt=0)

    @field_validator("start")
    @classmethod
    def _aware_iso(cls, v: str | None) -> str | None:
        if v is None:
            return v
        try:
            ts = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError as e:
            raise ValueError(f"not an ISO 8601 time: {v!r}") from e
        if ts.tzinfo is None:
            raise ValueError("needs a UTC offset (e.g. 2026-03-02T00:00:00Z): naive times are ambiguous")
        return v

    @property
    def start_at(self) -> datetime | None:
        """`start` as an aware UTC datetime."""
        if self.start is None:
            return None
        return datetime.fromisoformat(self.start.replace("Z", "+00:00")).astimezone(UTC)


@dataclass(frozen=True, slots=True)
class SourceKind:
    """The models a protocol package provides to validate its parts of the schema."""

    options: type[BaseModel]
    device: type[BaseModel] | None = None
    point: type[BaseModel] | None = None


@dataclass(frozen=True, slots=True)
class ResolvedPoint:
    """A point after template expansion: globally unique `name`, validated options."""

    spec: PointSpec
    name: str
    key: str
    source: str
    device: str
    subject: str
    zone: str
    options: Any


@dataclass(frozen=True, slots=True)
class ResolvedDevice:
    """A device after `count` expansion, with its validated options and points."""

    name: str
    subject: str
    zone: str
    options: Any
    points: tuple[ResolvedPoint, ...]
    template: str | None = None


@dataclass(frozen=True, slots=True)
class ResolvedSource:
    """A source ready for its driver: validated options, devices and every point."""

    name: str
    kind: str
    options: Any
    devices: tuple[ResolvedDevice, ...]
    points: tuple[ResolvedPoint, ...]


@dataclass(frozen=True)
class GridWatchConfig:
    """The whole validated configuration."""

    file: Path
    storage: StorageConfig
    spool: SpoolConfig
    buffer: BufferConfig
    api: ApiConfig
    filters: FilterConfig
    collector: CollectorConfig
    clock: ClockConfig
    sources: tuple[ResolvedSource, ...]
    templates: Mapping[str, TemplateConfig]
    sections: Mapping[str, Any] = field(default_factory=dict)

    @property
    def points(self) -> list[ResolvedPoint]:
        """Every point of every enabled source."""
        return [p for s in self.sources for p in s.points]


CORE_SECTIONS: dict[str, type[Model]] = {
    "storage": StorageConfig,
    "spool": SpoolConfig,
    "buffer": BufferConfig,
    "api": ApiConfig,
    "filters": FilterConfig,
    "collector": CollectorConfig,
    "clock": ClockConfig,
}


def _loc(prefix: str, loc: Sequence[int | str]) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _issues_from(err: ValidationError, file: str, prefix: str) -> list[ConfigIssue]:
    issues = []
    for e in err.errors():
        loc = [p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-after"))]
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (not part of the schema)"
        elif e["type"] == "missing":
            msg = "required key is missing"
        issues.append(ConfigIssue(file, _loc(prefix, loc), msg))
    return issues


_EXPR = re.compile(r"\{(n|i)([+-]\d+)?(:[^}]*)?\}")


def expand(value: Any, n: int, i: int) -> Any:
    """Substitute `{n}`, `{i}`, `{n+5000}` and `{n:05d}` in strings (recursively).

    A string that is exactly one placeholder becomes an int, so `unit_id = "{n}"` works.
    """
    if isinstance(value, str):
        def repl(m: re.Match[str]) -> str:
            base = n if m.group(1) == "n" else i
            v = base + int(m.group(2) or 0)
            return format(v, (m.group(3) or ":")[1:])

        out = _EXPR.sub(repl, value)
        if out != value and _EXPR.fullmatch(value) and re.fullmatch(r"-?\d+", out):
            return int(out)
        return out
    if isinstance(value, dict):
        return {k: expand(v, n, i) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v, n, i) for v in value]
    return value


def _read_toml(path: Path, issues: list[ConfigIssue]) -> dict[str, Any] | None:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        issues.append(ConfigIssue(str(path), "", "file not found"))
    except tomllib.TOMLDecodeError as e:
        issues.append(ConfigIssue(str(path), "", f"not valid TOML: {e}"))
    except OSError as e:
        issues.append(ConfigIssue(str(path), "", f"cannot read: {e.strerror}"))
    return None


def load_config(
    path: str | Path,
    kinds: Mapping[str, SourceKind],
    sections: Mapping[str, type[BaseModel]] | None = None,
) -> GridWatchConfig:
    """Read, validate and expand a configuration file; raise `ConfigError` with every issue."""
    path = Path(path)
    issues: list[ConfigIssue] = []
    raw = _read_toml(path, issues)
    if raw is None:
        raise ConfigError(issues)
    return parse_config(raw, path, kinds, sections or {}, issues)


def parse_config(
    raw: dict[str, Any],
    path: Path,
    kinds: Mapping[str, SourceKind],
    sections: Mapping[str, type[BaseModel]],
    issues: list[ConfigIssue] | None = None,
) -> GridWatchConfig:
    """Validate an already parsed TOML document (see `load_config`)."""
    issues = [] if issues is None else issues
    file = str(path)
    raw = dict(raw)

    # Templates may come from included files; each keeps its own file name for errors.
    template_raw: list[tuple[str, str, Any]] = [
        (file, f"templates[{k}]", t) for k, t in enumerate(raw.pop("templates", []) or [])
    ]
    includes = raw.pop("include", [])
    if not isinstance(includes, list):
        issues.append(ConfigIssue(file, "include", "must be a list of file patterns"))
        includes = []
    for pattern in includes:
        matches = sorted(glob.glob(str(path.parent / str(pattern))))
        if not matches:
            issues.append(ConfigIssue(file, "include", f"pattern {pattern!r} matches no file"))
        for m in matches:
            doc = _read_toml(Path(m), issues)
            if doc is None:
                continue
            extra = set(doc) - {"templates"}
            if extra:
                issues.append(ConfigIssue(m, sorted(extra)[0], "included files may only hold [[templates]]"))
            for k, t in enumerate(doc.get("templates", []) or []):
                template_raw.append((m, f"templates[{k}]", t))

    models: dict[str, Any] = {}
    all_sections: dict[str, type[BaseModel]] = {**CORE_SECTIONS, **sections}
    raw_sources = raw.pop("sources", []) or []
    for key in list(raw):
        if key not in all_sections:
            issues.append(ConfigIssue(file, key, "unknown section (not part of the schema)"))
    for name, model in all_sections.items():
        try:
            models[name] = model.model_validate(raw.get(name, {}) or {})
        except ValidationError as e:
            issues.extend(_issues_from(e, file, name))
            models[name] = None

    templates: dict[str, TemplateConfig] = {}
    template_file: dict[str, tuple[str, str]] = {}
    for tfile, tloc, traw in template_raw:
        try:
            t = TemplateConfig.model_validate(traw)
        except ValidationError as e:
            issues.extend(_issues_from(e, tfile, tloc))
            continue
        if t.name in templates:
            issues.append(ConfigIssue(tfile, f"{tloc}.name", f"duplicate template name {t.name!r}"))
            continue
        templates[t.name] = t
        template_file[t.name] = (tfile, tloc)

    sources: list[ResolvedSource] = []
    seen_sources: set[str] = set()
    seen_points: dict[str, str] = {}
    if not isinstance(raw_sources, list):
        issues.append(ConfigIssue(file, "sources", "must be an array of tables ([[sources]])"))
        raw_sources = []
    for si, sraw in enumerate(raw_sources):
        sloc = f"sources[{si}]"
        try:
            src = SourceConfig.model_validate(sraw)
        except ValidationError as e:
            issues.extend(_issues_from(e, file, sloc))
            continue
        if src.name in seen_sources:
            issues.append(ConfigIssue(file, f"{sloc}.name", f"duplicate source name {src.name!r}"))
            continue
        seen_sources.add(src.name)
        kind = kinds.get(src.kind)
        if kind is None:
            known = ", ".join(sorted(kinds)) or "none"
            issues.append(ConfigIssue(file, f"{sloc}.kind", f"unknown source kind {src.kind!r} (known: {known})"))
            continue
        resolved = _resolve_source(src, kind, templates, template_file, file, sloc, issues, seen_points)
        if resolved is not None and src.enabled:
            sources.append(resolved)

    if issues:
        raise ConfigError(issues)
    return GridWatchConfig(
        file=path,
        storage=models["storage"],
        spool=models["spool"],
        buffer=models["buffer"],
        api=models["api"],
        filters=models["filters"],
        collector=models["collector"],
        clock=models["clock"],
        sources=tuple(sources),
        templates=templates,
        sections={k: v for k, v in models.items() if k not in CORE_SECTIONS},
    )


def _validate(model: type[BaseModel] | None, data: dict[str, Any], file: str, loc: str,
              issues: list[ConfigIssue]) -> Any:
    if model is None:
        if data:
            issues.append(ConfigIssue(file, loc, "this source kind takes no options here"))
        return None
    try:
        return model.model_validate(data)
    except ValidationError as e:
        issues.extend(_issues_from(e, file, loc))
        return None


def _resolve_source(
    src: SourceConfig,
    kind: SourceKind,
    templates: Mapping[str, TemplateConfig],
    template_file: Mapping[str, tuple[str, str]],
    file: str,
    sloc: str,
    issues: list[ConfigIssue],
    seen_points: dict[str, str],
) -> ResolvedSource | None:
    before = len(issues)
    options = _validate(kind.options, src.options, file, f"{sloc}.options", issues)
    points: list[ResolvedPoint] = []
    # Validated point options are shared between the devices of one template: 10,000 meters
    # validate their register map once.
    point_opts_cache: dict[tuple[str, int], Any] = {}

    def add_point(spec: PointSpec, name: str, device: str, subject: str, zone: str,
                  ploc_file: str, ploc: str, cache_key: tuple[str, int] | None) -> ResolvedPoint | None:
        if cache_key is not None and cache_key in point_opts_cache:
            popts = point_opts_cache[cache_key]
        else:
            n_before = len(issues)
            popts = _validate(kind.point, spec.options, ploc_file, f"{ploc}.options", issues)
            if len(issues) > n_before:
                return None
            if cache_key is not None:
                point_opts_cache[cache_key] = popts
        where = f"{file}: {sloc}"
        if name in seen_points:
            issues.append(ConfigIssue(file, ploc, f"duplicate point name {name!r} (also at {seen_points[name]})"))
            return None
        seen_points[name] = where
        rp = ResolvedPoint(spec=spec, name=name, key=spec.key or spec.name, source=src.name,
                           device=device or spec.device, subject=subject or spec.subject,
                           zone=zone or spec.zone, options=popts)
        points.append(rp)
        return rp

    for pi, spec in enumerate(src.points):
        add_point(spec, spec.name, spec.device, spec.subject, spec.zone, file, f"{sloc}.points[{pi}]", None)

    devices: list[ResolvedDevice] = []
    for di, dev in enumerate(src.devices):
        dloc = f"{sloc}.devices[{di}]"
        tmpl = None
        if dev.template is not None:
            tmpl = templates.get(dev.template)
            if tmpl is None:
                issues.append(ConfigIssue(file, f"{dloc}.template", f"unknown template {dev.template!r}"))
                continue
            if tmpl.kind and tmpl.kind != src.kind:
                issues.append(ConfigIssue(file, f"{dloc}.template",
                                          f"template {tmpl.name!r} is for kind {tmpl.kind!r}, not {src.kind!r}"))
                continue
        if dev.count is not None and not _EXPR.search(dev.name):
            issues.append(ConfigIssue(file, f"{dloc}.name", "a device with count needs {n} in its name"))
            continue
        if not dev.enabled:
            continue
        numbers = range(dev.start, dev.start + (dev.count or 1))
        for i, n in enumerate(numbers):
            name = expand(dev.name, n, i) if dev.count else dev.name
            name = str(name)
            if not re.match(NAME_RE, name):
                issues.append(ConfigIssue(file, f"{dloc}.name", f"device name {name!r} has characters not allowed"))
                break
            merged_opts = {**(tmpl.options if tmpl else {}), **dev.options}
            dopts_raw = expand(merged_opts, n, i) if dev.count else merged_opts
            n_before = len(issues)
            dopts = _validate(kind.device, dopts_raw, file, f"{dloc}.options", issues)
            if len(issues) > n_before:
                break
            dpoints: list[ResolvedPoint] = []
            if tmpl is not None:
                tf, tl = template_file[tmpl.name]
                for pi, spec in enumerate(tmpl.points):
                    rp = add_point(spec, f"{name}.{spec.name}", name, dev.subject, dev.zone, tf,
                                   f"{tl}.points[{pi}]", (tmpl.name, pi))
                    if rp is None:
                        break
                    dpoints.append(rp)
            for pi, spec in enumerate(dev.points):
                rp = add_point(spec, f"{name}.{spec.name}", name, dev.subject, dev.zone, file,
                               f"{dloc}.points[{pi}]", None)
                if rp is None:
                    break
                dpoints.append(rp)
            if len(issues) > before:
                break
            devices.append(ResolvedDevice(name=name, subject=dev.subject, zone=dev.zone, options=dopts,
                                          points=tuple(dpoints), template=dev.template))
    if len(issues) > before:
        return None
    return ResolvedSource(name=src.name, kind=src.kind, options=options, devices=tuple(devices),
                          points=tuple(points))
