"""The JSON payload decoder: field paths, payload-level unit/scale, timestamps, batches.

One message may carry one reading (an object) or many (an array, or an array at the
`readings` path). Each reading yields one sample per field. Problems are collected per
message as `Problem(code, reason)` where the reason names the field (`readings[3].p: not a
number ('x')`); the good readings of a partly bad message are kept.
"""

from __future__ import annotations

import json as _json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.records import Quality, RawSample
from protocols.mqtt.config import JsonOptions, TopicMapping
from protocols.mqtt.topics import TopicPattern
from protocols.mqtt.units import unit_factor

Path = tuple[str | int, ...]
_MISSING = object()


@dataclass(frozen=True, slots=True)
class Problem:
    """A decoding problem: a short `code` for counters and a `reason` naming the field."""

    code: str
    reason: str


def compile_path(text: str) -> tuple[bool, Path]:
    """(from_root, steps) for a dotted path; numeric steps index arrays."""
    root = text.startswith("$.") or text == "$"
    body = text[2:] if text.startswith("$.") else ("" if text == "$" else text)
    steps: list[str | int] = []
    for part in body.split(".") if body else []:
        steps.append(int(part) if part.isdigit() else part)
    return root, tuple(steps)


def resolve(obj: Any, steps: Path) -> Any:
    """The value at `steps` inside `obj`, or `_MISSING`."""
    for s in steps:
        if isinstance(obj, dict):
            obj = obj.get(s if isinstance(s, str) else str(s), _MISSING)
        elif isinstance(obj, list) and isinstance(s, int):
            obj = obj[s] if s < len(obj) else _MISSING
        else:
            return _MISSING
        if obj is _MISSING:
            return obj
    return obj


_EPOCH_MS_THRESHOLD = 1e11  # seconds since 1970 stay below this until year 5138


def parse_timestamp(raw: Any, fmt: str) -> datetime:
    """Parse an ISO 8601 string or an epoch number (s or ms); raise ValueError with the cause."""
    if isinstance(raw, bool):
        raise ValueError("a boolean is not a timestamp")
    if isinstance(raw, int | float):
        if fmt == "iso8601":
            raise ValueError("expected an ISO 8601 string, got a number")
        x = float(raw)
        if not math.isfinite(x):
            raise ValueError("not a finite number")
        if fmt == "epoch_ms" or (fmt == "auto" and abs(x) >= _EPOCH_MS_THRESHOLD):
            x /= 1000.0
        try:
            return datetime.fromtimestamp(x, UTC)
        except (OverflowError, OSError, ValueError) as e:
            raise ValueError(f"epoch {raw!r} out of range") from e
    if isinstance(raw, str):
        if fmt in ("epoch_s", "epoch_ms"):
            try:
                return parse_timestamp(float(raw), fmt)
            except ValueError:
                raise ValueError(f"expected epoch {fmt[6:]}, got {raw[:40]!r}") from None
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            raise ValueError(f"not ISO 8601: {raw[:40]!r}") from None
        if dt.tzinfo is None:
            raise ValueError(f"ISO 8601 timestamp without a timezone: {raw[:40]!r}")
        return dt.astimezone(UTC)
    raise ValueError(f"unsupported timestamp type {type(raw).__name__}")


class _Field:
    __slots__ = ("identity", "name", "offset", "root", "scale", "shown", "simple", "steps", "unit")

    def __init__(self, name: str, root: bool, steps: Path, scale: float, offset: float, unit: str) -> None:
        self.name = name
        self.root = root
        self.steps = steps
        self.scale = scale
        self.offset = offset
        self.unit = unit
        self.simple = len(steps) == 1 and isinstance(steps[0], str)
        self.identity = scale == 1.0 and offset == 0.0
        self.shown = _path_name(root, steps)


class JsonDecoder:
    """Decodes the messages of one topic mapping into `RawSample`s.

    `points` maps a derived key to `(emitted key, point unit)` for configured points, so a field
    unit can be converted to the point's unit once here (the collector then applies the point's
    scale/offset). Unmapped keys are emitted as derived.
    """

    def __init__(self, source: str, mapping: TopicMapping, points: Mapping[str, tuple[str, str]]) -> None:
        self.source = source
        self.pattern = TopicPattern.parse(mapping.pattern)
        o: JsonOptions = mapping.json_options
        self._readings_root, self._readings = compile_path(o.readings) if o.readings else (False, ())
        self._ts = compile_path(o.timestamp) if o.timestamp else None
        self._ts_fmt = o.timestamp_format
        self._ids = [(name, *compile_path(path)) for name, path in o.ids.items()]
        self._skip = {o.timestamp} | set(o.ids.values()) if o.timestamp else set(o.ids.values())
        self._fields = [
            _Field(name, *compile_path(f.path or name), f.scale, f.offset, f.unit) for name, f in o.fields.items()
        ]
        self._template = mapping.key
        self._named_idx = [i for i, n in enumerate(self.pattern.names) if n]
        self._names = [n for n in self.pattern.names if n]
        self._unnamed = len(self._named_idx) != len(self.pattern.names)
        self._points = points
        self._cache: dict[tuple[str, str], tuple[str, float]] = {}
        self.unit_problems: list[str] = []

    # -- keys -------------------------------------------------------------------------------
    def _target(self, key: str, unit: str) -> tuple[str, float]:
        """(key to emit, unit factor) for a derived key and the payload's unit, cached."""
        ck = (key, unit)
        hit = self._cache.get(ck)
        if hit is not None:
            return hit
        pt = self._points.get(key)
        if pt is None:
            out = (key, 1.0)
        else:
            try:
                out = (pt[0], unit_factor(unit, pt[1]) if unit and pt[1] else 1.0)
            except ValueError as e:  # reported once; the value passes unconverted
                self.unit_problems.append(f"{key}: {e}")
                out = (pt[0], 1.0)
        if len(self._cache) < 1_000_000:
            self._cache[ck] = out
        return out

    # -- decoding ---------------------------------------------------------------------------
    def decode(self, captured: tuple[str, ...], payload: bytes, received_at: datetime,
               out: list[RawSample], problems: list[Problem]) -> None:
        """Append the samples of one message to `out` and its problems to `problems`."""
        try:
            msg = _json.loads(payload)
        except (ValueError, RecursionError) as e:
            problems.append(Problem("json", f"payload: not valid JSON ({str(e)[:80]})"))
            return
        if self._readings:
            readings = resolve(msg, self._readings)
            where = self._readings_name()
            if readings is _MISSING:
                problems.append(Problem("shape", f"{where}: missing"))
                return
        else:
            readings, where = msg, ""
        if isinstance(readings, dict):
            readings = [readings]
            single = True
        elif isinstance(readings, list):
            single = False
        else:
            problems.append(Problem("shape", f"{where or 'payload'}: expected an object or an array of objects, "
                                             f"got {type(readings).__name__}"))
            return
        if self._unnamed:  # unnamed wildcards match but are not ids
            captured = tuple(captured[i] for i in self._named_idx)
        templated = self._template is not None
        pattern_named = dict(zip(self._names, captured, strict=True)) if templated else {}
        base_prefix = "/".join(captured) + "/" if captured else ""
        plain = not self._points
        source = self.source
        # a message-level timestamp is parsed once
        ts_spec = self._ts
        msg_quality = Quality.GOOD
        msg_ts: datetime | None = None
        if ts_spec is not None and ts_spec[0]:
            msg_ts, msg_quality = self._timestamp(msg, ts_spec[1], "", problems)
            ts_spec = None
        ts_key = ts_spec[1][0] if ts_spec is not None and len(ts_spec[1]) == 1 else None
        last_raw_ts: Any = _MISSING
        last_ts: datetime | None = None
        last_q = Quality.GOOD
        for i, r in enumerate(readings):
            if type(r) is not dict:
                problems.append(Problem("shape", f"{_at(where, single, i) or 'payload'}: expected an object, "
                                                 f"got {type(r).__name__}"))
                continue
            # timestamp
            quality = msg_quality
            device_ts = msg_ts
            if ts_spec is not None:
                raw_ts = r.get(ts_key, _MISSING) if ts_key is not None else resolve(r, ts_spec[1])
                if raw_ts is _MISSING or raw_ts is None:
                    quality, device_ts = Quality.CLOCK_INVALID, None
                elif raw_ts == last_raw_ts and type(raw_ts) is type(last_raw_ts):
                    device_ts, quality = last_ts, last_q
                else:
                    device_ts, quality = self._timestamp(r, ts_spec[1], _at(where, single, i), problems, raw_ts)
                    last_raw_ts, last_ts, last_q = raw_ts, device_ts, quality
            # ids
            prefix = base_prefix
            named = pattern_named
            if self._ids:
                extra: list[str] = []
                bad = False
                for name, root, steps in self._ids:
                    if not root and len(steps) == 1 and type(steps[0]) is str:
                        v = r.get(steps[0], _MISSING)
                    else:
                        v = resolve(msg if root else r, steps)
                    tv = type(v)
                    if tv is str and v and "/" not in v:
                        extra.append(v)
                    elif tv is int:
                        extra.append(str(v))
                    else:
                        shown = "missing" if v is _MISSING else f"not an id ({str(v)[:40]!r})"
                        problems.append(Problem("id", f"{_join(_at(where, single, i), _path_name(root, steps))}: "
                                                      f"{shown}"))
                        bad = True
                        break
                    if templated:
                        named = {**named, name: extra[-1]}
                if bad:
                    continue
                prefix = base_prefix + "/".join(extra) + "/"
            # values
            if self._fields:
                for f in self._fields:
                    v = (msg if f.root else r).get(f.steps[0], _MISSING) if f.simple else \
                        resolve(msg if f.root else r, f.steps)
                    tv = type(v)
                    if tv is float:
                        x = v
                    elif tv is int or tv is bool or tv is str:
                        try:
                            x = float(v)
                        except (ValueError, OverflowError):
                            problems.append(Problem("value", f"{_join(_at(where, single, i), f.shown)}: "
                                                             f"not a number ({str(v)[:40]!r})"))
                            continue
                    elif v is _MISSING or v is None:
                        continue  # sparse readings are allowed
                    else:
                        problems.append(Problem("value", f"{_join(_at(where, single, i), f.shown)}: "
                                                         f"not a number ({str(v)[:40]!r})"))
                        continue
                    if x - x != 0.0:  # NaN or infinite
                        problems.append(Problem("value", f"{_join(_at(where, single, i), f.shown)}: not finite"))
                        continue
                    if f.identity:
                        pass
                    else:
                        x = x * f.scale + f.offset
                    if templated:
                        key, factor = self._target(self._template.format(field=f.name, **named), f.unit)  # type: ignore[union-attr]
                    elif plain:
                        key, factor = prefix + f.name, 1.0
                    else:
                        key, factor = self._target(prefix + f.name, f.unit)
                    out.append(RawSample(source, key, x * factor if factor != 1.0 else x, received_at, device_ts,
                                         quality))
            else:
                skip = self._skip
                for name, v in r.items():
                    tv = type(v)
                    if name in skip or not (tv is float or tv is int):
                        continue
                    try:
                        x = float(v)
                    except OverflowError:
                        x = math.inf
                    if x - x != 0.0:
                        problems.append(Problem("value", f"{_join(_at(where, single, i), name)}: not finite"))
                        continue
                    if templated:
                        key = self._target(self._template.format(field=name, **named), "")[0]  # type: ignore[union-attr]
                    elif plain:
                        key = prefix + name
                    else:
                        key = self._target(prefix + name, "")[0]
                    out.append(RawSample(source, key, x, received_at, device_ts, quality))

    def _timestamp(self, obj: Any, steps: Path, at: str, problems: list[Problem],
                   raw: Any = _MISSING) -> tuple[datetime | None, Quality]:
        if raw is _MISSING:
            raw = resolve(obj, steps)
        if raw is _MISSING or raw is None:
            return None, Quality.CLOCK_INVALID
        try:
            return parse_timestamp(raw, self._ts_fmt), Quality.GOOD
        except ValueError as e:
            problems.append(Problem("timestamp", f"{_join(at, self._ts_name())}: {e}"))
            return None, Quality.CLOCK_INVALID

    def _readings_name(self) -> str:
        return _path_name(self._readings_root, self._readings)

    def _ts_name(self) -> str:
        assert self._ts is not None
        return _path_name(*self._ts)


def _path_name(root: bool, steps: Path) -> str:
    return ("$." if root else "") + ".".join(str(s) for s in steps)


def _at(where: str, single: bool, i: int) -> str:
    return where if single else f"{where}[{i}]"


def _join(at: str, name: str) -> str:
    if name.startswith("$."):
        return name
    return f"{at}.{name}" if at else name



def dumps(obj: Any) -> bytes:
    """Compact JSON bytes (used by the simulator and tests)."""
    return _json.dumps(obj, separators=(",", ":")).encode()
