"""A small expander of Grafana's SQL macros and template variables, for testing panel queries.

It follows what Grafana's PostgreSQL datasource does (pkg/tsdb/grafana-postgresql-datasource
macros and the frontend's SQL variable formatting):

- `$__timeFilter(col)` -> `col BETWEEN '<from>' AND '<to>'`
- `$__timeFrom()` / `$__timeTo()` -> `'<RFC 3339 UTC>'`
- `$__timeGroup(col, '5m')` -> `floor(extract(epoch from col)/300)*300` (with the TimescaleDB
  option: `time_bucket('300s', col)`); `$__timeGroupAlias` adds `AS "time"`
- `$__time(col)` -> `col AS "time"`, `$__interval` -> `5m`, `$__interval_ms` -> `300000`
- `$var`, `${var}`, `[[var]]` -> `'a','b'` (every value quoted, single quotes doubled)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

_ARGS = r"\(([^()]*(?:\([^()]*\)[^()]*)*)\)"


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_interval(text: str) -> float:
    """Seconds of a Grafana interval such as `5m`, `1h`, `30s`, `1d`, `500ms`."""
    t = text.strip().strip("'\"")
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)", t)
    if not m:
        raise ValueError(f"not an interval: {text!r}")
    n = float(m.group(1))
    return n * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def format_interval(seconds: float) -> str:
    """`300` -> `5m` (Grafana's interval text)."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def _const(text: str) -> Callable[[re.Match[str]], str]:
    def repl(_m: re.Match[str]) -> str:
        return text
    return repl


def _quote(v: str) -> str:
    return "'" + str(v).replace("'", "''") + "'"


def expand(sql: str, start: datetime, end: datetime, variables: Mapping[str, Sequence[str]] | None = None,
           interval_s: float = 60.0, *, timescaledb: bool = False) -> str:
    """`sql` with every macro and template variable replaced (see the module docstring)."""
    variables = variables or {}
    out = sql.replace("$__interval_ms", str(int(interval_s * 1000)))
    out = out.replace("$__interval", format_interval(interval_s))
    for name in sorted(variables, key=len, reverse=True):
        values = variables[name]
        text = ",".join(_quote(v) for v in values) if values else "NULL"
        out = out.replace("${" + name + "}", text).replace("[[" + name + "]]", text)
        out = re.sub(r"\$" + re.escape(name) + r"\b", _const(text), out)

    def group(args: str, alias: bool) -> str:
        parts = [a.strip() for a in args.split(",")]
        col, secs = parts[0], parse_interval(parts[1])
        expr = (f"time_bucket('{secs:g}s', {col})" if timescaledb
                else f"floor(extract(epoch from {col})/{secs:g})*{secs:g}")
        return expr + (' AS "time"' if alias else "")

    out = re.sub(r"\$__timeGroupAlias" + _ARGS, lambda m: group(m.group(1), True), out)
    out = re.sub(r"\$__timeGroup" + _ARGS, lambda m: group(m.group(1), False), out)
    out = re.sub(r"\$__timeFilter" + _ARGS,
                 lambda m: f"{m.group(1).strip()} BETWEEN '{_iso(start)}' AND '{_iso(end)}'", out)
    out = re.sub(r"\$__timeFrom\(\)", f"'{_iso(start)}'", out)
    out = re.sub(r"\$__timeTo\(\)", f"'{_iso(end)}'", out)
    out = re.sub(r"\$__time" + _ARGS, lambda m: f'{m.group(1).strip()} AS "time"', out)
    left = re.search(r"\$__\w+|\$\{?\w+", out)
    if left:
        raise ValueError(f"unexpanded macro or variable {left.group(0)!r} in: {sql[:80]}...")
    return out
