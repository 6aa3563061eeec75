"""Parsing and validating approved schedules (plans) from CSV and JSON.

A plan gives, for one operating day and one subject, one value per hour of that day (23, 24
or 25 hours, see `calendar.hours_in_day`): planned energy in MWh, or planned mean power in MW
(for one hour the same number of MWh). Validation collects every problem with its line and
column before anything is stored, so an import is all or nothing.

CSV, long form (one row per hour)::

    day,subject,hour,value[,unit]
    2026-12-02,TPP-1,1,120.5,MWh

CSV, wide form (one row per subject and day; h25 only on a 25-hour day)::

    day,subject,unit,h1,h2,...,h24
    2026-12-02,TPP-1,MWh,120.5,118.0,...

JSON: ``{"plans": [{"day": "2026-12-02", "subject": "TPP-1", "unit": "MWh", "values": [...]}]}``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from core.errors import GridWatchError
from detectors.schedule.calendar import hours_in_day
from detectors.schedule.config import ScheduleConfig

PLAN_UNITS = ("MWh", "MW")


@dataclass(frozen=True, slots=True)
class PlanIssue:
    """One problem in a plan import: where (line, column) and why."""

    source: str
    line: int | None
    column: str
    reason: str

    def __str__(self) -> str:
        where = f"line {self.line}" if self.line is not None else "document"
        col = f", column {self.column}" if self.column else ""
        return f"{self.source}: {where}{col}: {self.reason}"


class PlanImportError(GridWatchError):
    """A plan import was rejected; nothing of it was applied. Carries every issue found."""

    def __init__(self, issues: Iterable[PlanIssue]) -> None:
        self.issues: tuple[PlanIssue, ...] = tuple(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


@dataclass(frozen=True, slots=True)
class PlanDay:
    """A validated plan: one subject, one operating day, one value (MWh) per hour."""

    day: date
    subject: str
    unit: str
    values_mwh: tuple[float, ...]
    line: int | None = None


@dataclass(frozen=True)
class PlanImport:
    """A validated import, ready to store as one new version per (day, subject)."""

    plans: tuple[PlanDay, ...]
    source: str
    comment: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def _num(text: str) -> float:
    v = float(text.strip().replace(",", "."))
    if not math.isfinite(v):
        raise ValueError("not a finite number")
    return v


def _day(text: str) -> date:
    return date.fromisoformat(text.strip())


def _row_day(text: str, source: str, line: int, issues: list[PlanIssue]) -> date | None:
    """The row's day, or None once the issue is recorded."""
    try:
        return _day(text)
    except ValueError:
        issues.append(PlanIssue(source, line, "day", f"not a date (YYYY-MM-DD): {text!r}"))
        return None


def _check_values(config: ScheduleConfig, source: str, day: date, subject: str, values: list[float],
                  line: int | None, cols: list[str], issues: list[PlanIssue]) -> None:
    n = hours_in_day(day, config.tz)
    if len(values) != n:
        issues.append(PlanIssue(source, line, "hour",
                                f"subject {subject!r} on {day} has {len(values)} hourly values, the day has {n} hours"
                                f" in {config.timezone}"))
    subj = config.subject(subject)
    if subj is not None and not subj.allow_negative:
        for v, col in zip(values, cols, strict=False):
            if v < 0:
                issues.append(PlanIssue(source, line, col,
                                        f"negative value {v} not allowed for subject {subject!r} ({subj.kind})"))


def _known_subject(config: ScheduleConfig, source: str, subject: str, line: int | None, col: str,
                   issues: list[PlanIssue]) -> bool:
    if config.subject(subject) is None:
        known = ", ".join(s.name for s in config.subjects[:20]) or "none configured"
        issues.append(PlanIssue(source, line, col, f"unknown subject {subject!r} (known: {known})"))
        return False
    return True


def parse_csv(text: str, config: ScheduleConfig, source: str = "<csv>") -> PlanImport:
    """Parse and validate a CSV plan file (long or wide form); raise `PlanImportError`."""
    issues: list[PlanIssue] = []
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    rows = [(i + 1, r) for i, r in enumerate(reader) if any(c.strip() for c in r)]
    if not rows:
        raise PlanImportError([PlanIssue(source, None, "", "empty file: expected a header line")])
    hline, header = rows[0]
    cols = [c.strip().lower() for c in header]
    for required in ("day", "subject"):
        if required not in cols:
            raise PlanImportError([PlanIssue(source, hline, required, f"header lacks the column {required!r}")])
    wide = any(c.startswith("h") and c[1:].isdigit() for c in cols)
    if not wide and ("hour" not in cols or "value" not in cols):
        raise PlanImportError([PlanIssue(source, hline, "hour",
                                         "header needs hour and value columns (long form) or h1..h24 (wide form)")])
    idx = {c: k for k, c in enumerate(cols)}
    plans: list[PlanDay] = []

    def cell(row: list[str], name: str) -> str:
        k = idx.get(name)
        return row[k].strip() if k is not None and k < len(row) else ""

    if wide:
        hour_cols = sorted((int(c[1:]), c) for c in cols if c.startswith("h") and c[1:].isdigit())
        seen: set[tuple[date, str]] = set()
        for line, row in rows[1:]:
            if len(row) > len(cols):
                issues.append(PlanIssue(source, line, "", f"{len(row)} cells, the header has {len(cols)}"))
                continue
            n_before = len(issues)
            day = _row_day(cell(row, "day"), source, line, issues)
            if day is None:
                continue
            subject = cell(row, "subject")
            _known_subject(config, source, subject, line, "subject", issues)
            unit = cell(row, "unit") or "MWh"
            if unit not in PLAN_UNITS:
                issues.append(PlanIssue(source, line, "unit", f"unit {unit!r} is not one of {', '.join(PLAN_UNITS)}"))
            values: list[float] = []
            used: list[str] = []
            for _, c in hour_cols:
                raw = cell(row, c)
                if raw == "":
                    continue
                try:
                    values.append(_num(raw))
                    used.append(c)
                except ValueError:
                    issues.append(PlanIssue(source, line, c, f"not a number: {raw!r}"))
            if (day, subject) in seen:
                issues.append(PlanIssue(source, line, "subject", f"subject {subject!r} on {day} appears twice"))
            seen.add((day, subject))
            if len(issues) == n_before:
                _check_values(config, source, day, subject, values, line, used, issues)
            if len(issues) == n_before:
                plans.append(PlanDay(day, subject, unit, tuple(values), line))
    else:
        groups: dict[tuple[date, str], dict[int, tuple[float, int]]] = {}
        units: dict[tuple[date, str], str] = {}
        first_line: dict[tuple[date, str], int] = {}
        bad: set[tuple[date, str]] = set()
        for line, row in rows[1:]:
            n_before = len(issues)
            day = _row_day(cell(row, "day"), source, line, issues)
            if day is None:
                continue
            subject = cell(row, "subject")
            key = (day, subject)
            if key not in first_line and not _known_subject(config, source, subject, line, "subject", issues):
                bad.add(key)
            first_line.setdefault(key, line)
            try:
                hour = int(cell(row, "hour"))
                if hour < 1:
                    raise ValueError
            except ValueError:
                issues.append(PlanIssue(source, line, "hour", f"not an hour number (1..25): {cell(row, 'hour')!r}"))
                hour = 0
            try:
                value = _num(cell(row, "value"))
            except ValueError:
                issues.append(PlanIssue(source, line, "value", f"not a number: {cell(row, 'value')!r}"))
                value = math.nan
            unit = cell(row, "unit") or "MWh"
            if unit not in PLAN_UNITS:
                issues.append(PlanIssue(source, line, "unit", f"unit {unit!r} is not one of {', '.join(PLAN_UNITS)}"))
            elif units.setdefault(key, unit) != unit:
                issues.append(PlanIssue(source, line, "unit", f"unit {unit!r} differs from {units[key]!r} earlier"))
            if len(issues) > n_before:
                bad.add(key)
                continue
            g = groups.setdefault(key, {})
            if hour in g:
                issues.append(PlanIssue(source, line, "hour", f"hour {hour} of {subject!r} on {day} given twice"
                                                              f" (first on line {g[hour][1]})"))
                bad.add(key)
                continue
            g[hour] = (value, line)
        for key, g in groups.items():
            if key in bad:
                continue
            day, subject = key
            n = hours_in_day(day, config.tz)
            extra = sorted(h for h in g if h > n)
            if extra:
                issues.append(PlanIssue(source, g[extra[0]][1], "hour",
                                        f"hour {extra[0]} does not exist: {day} has {n} hours in {config.timezone}"))
                continue
            missing = [h for h in range(1, n + 1) if h not in g]
            if missing:
                issues.append(PlanIssue(source, first_line[key], "hour",
                                        f"subject {subject!r} on {day}: {len(g)} of {n} hours given, missing"
                                        f" hour(s) {', '.join(map(str, missing[:10]))}"))
                continue
            values = [g[h][0] for h in range(1, n + 1)]
            subj = config.subject(subject)
            if subj is not None and not subj.allow_negative:
                for h in range(1, n + 1):
                    if g[h][0] < 0:
                        issues.append(PlanIssue(source, g[h][1], "value",
                                                f"negative value {g[h][0]} not allowed for subject {subject!r}"
                                                f" ({subj.kind})"))
            plans.append(PlanDay(day, subject, units.get(key, "MWh"), tuple(values), first_line[key]))
    if issues:
        raise PlanImportError(issues)
    if not plans:
        raise PlanImportError([PlanIssue(source, None, "", "no plan rows after the header")])
    return PlanImport(tuple(plans), source)


def parse_json(doc: Any, config: ScheduleConfig, source: str = "<json>") -> PlanImport:
    """Validate a JSON plan document (see module docstring); raise `PlanImportError`."""
    issues: list[PlanIssue] = []
    if not isinstance(doc, Mapping) or not isinstance(doc.get("plans"), list):
        raise PlanImportError([PlanIssue(source, None, "plans", "expected an object with a list 'plans'")])
    plans: list[PlanDay] = []
    seen: set[tuple[date, str]] = set()
    for k, item in enumerate(doc["plans"]):
        where = f"plans[{k}]"
        n_before = len(issues)
        if not isinstance(item, Mapping):
            issues.append(PlanIssue(source, None, where, "expected an object"))
            continue
        extra = set(item) - {"day", "subject", "unit", "values"}
        if extra:
            issues.append(PlanIssue(source, None, f"{where}.{sorted(extra)[0]}", "unknown key"))
        try:
            day = _day(str(item.get("day", "")))
        except ValueError:
            issues.append(PlanIssue(source, None, f"{where}.day", f"not a date (YYYY-MM-DD): {item.get('day')!r}"))
            continue
        subject = str(item.get("subject", ""))
        _known_subject(config, source, subject, None, f"{where}.subject", issues)
        unit = str(item.get("unit", "MWh"))
        if unit not in PLAN_UNITS:
            issues.append(PlanIssue(source, None, f"{where}.unit",
                                    f"unit {unit!r} is not one of {', '.join(PLAN_UNITS)}"))
        raw_values = item.get("values")
        values: list[float] = []
        if not isinstance(raw_values, list):
            issues.append(PlanIssue(source, None, f"{where}.values", "expected a list of hourly numbers"))
        else:
            for h, v in enumerate(raw_values):
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    issues.append(PlanIssue(source, None, f"{where}.values[{h}]", f"not a number: {v!r}"))
                else:
                    values.append(float(v))
        if (day, subject) in seen:
            issues.append(PlanIssue(source, None, f"{where}.subject", f"subject {subject!r} on {day} appears twice"))
        seen.add((day, subject))
        if len(issues) == n_before:
            _check_values(config, source, day, subject, values, None,
                          [f"{where}.values[{h}]" for h in range(len(values))], issues)
            for iss in issues[n_before:]:
                if iss.column == "hour":
                    issues[issues.index(iss)] = PlanIssue(source, None, f"{where}.values", iss.reason)
        if len(issues) == n_before:
            plans.append(PlanDay(day, subject, unit, tuple(values)))
    if issues:
        raise PlanImportError(issues)
    if not plans:
        raise PlanImportError([PlanIssue(source, None, "plans", "no plans given")])
    return PlanImport(tuple(plans), source, comment=str(doc.get("comment", "")))
