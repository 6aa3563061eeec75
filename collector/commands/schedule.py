"""`gridwatch schedule import|results|recompute|template`: the approved daily schedule.

    gridwatch schedule import PLAN.csv -c gridwatch.toml [--actor NAME] [--dry-run]
    gridwatch schedule results -c gridwatch.toml [--day YYYY-MM-DD] [--subject S] [--json]
    gridwatch schedule recompute -c gridwatch.toml --day YYYY-MM-DD
    gridwatch schedule template -c gridwatch.toml [--day YYYY-MM-DD]

An import is validated completely first (every problem is printed as `file: line N, column
C: reason`, exit status 1) and stored in one transaction: all or nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import getpass
import json
import sys
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from collector.runtime import load_or_report, open_database, setup_logging
from core.config import GridWatchConfig
from core.records import utcnow
from detectors.schedule.calendar import day_hours, operating_day
from detectors.schedule.config import ScheduleConfig
from detectors.schedule.plans import PlanImport, PlanImportError, parse_csv
from detectors.schedule.service import ScheduleService
from storage.journal import DbJournal
from storage.schedule import ScheduleStore


def register(sub: Any) -> None:
    """Add `schedule` and its actions."""
    p: argparse.ArgumentParser = sub.add_parser("schedule", help="daily schedule: import plans, show results")
    actions = p.add_subparsers(dest="action", required=True)

    def common(a: argparse.ArgumentParser) -> None:
        a.add_argument("-c", "--config", required=True, help="configuration file (TOML) with a [schedule] section")
        a.add_argument("--dsn", help="database DSN (overrides storage.dsn)")
        a.set_defaults(handler=run)

    imp = actions.add_parser("import", help="validate and store a plan CSV (long or wide form)")
    imp.add_argument("file", help="CSV file: day,subject,hour,value[,unit] or day,subject,unit,h1..h24")
    imp.add_argument("--actor", default=None, help="who imports (journaled; default: the OS user)")
    imp.add_argument("--dry-run", action="store_true", help="validate only, store nothing")
    common(imp)
    res = actions.add_parser("results", help="plan against actual per hour of a day")
    res.add_argument("--day", help="operating day YYYY-MM-DD (default: today in the schedule's time zone)")
    res.add_argument("--subject", help="one subject or zone (North, South, West, North-South, miners:North)")
    res.add_argument("--json", action="store_true", help="JSON instead of a table")
    common(res)
    rec = actions.add_parser("recompute", help="recompute every closed hour of a day (changes are journaled)")
    rec.add_argument("--day", required=True, help="operating day YYYY-MM-DD")
    common(rec)
    tpl = actions.add_parser("template", help="print an empty plan CSV for every subject and hour of a day")
    tpl.add_argument("--day", help="operating day YYYY-MM-DD (default: tomorrow)")
    tpl.set_defaults(handler=run)
    tpl.add_argument("-c", "--config", required=True, help="configuration file (TOML)")


def _schedule_config(cfg: GridWatchConfig) -> ScheduleConfig | None:
    sc = cfg.sections.get("schedule")
    if not isinstance(sc, ScheduleConfig) or not sc.subjects:
        print(f"{cfg.file}: schedule: no [schedule] section with subjects", file=sys.stderr)
        return None
    return sc


def _day(text: str | None, sc: ScheduleConfig, offset: int = 0) -> date:
    if text:
        return date.fromisoformat(text)
    return date.fromordinal(operating_day(utcnow(), sc.tz).toordinal() + offset)


def run(args: argparse.Namespace) -> int:
    """Run one schedule action."""
    setup_logging("WARNING")
    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    sc = _schedule_config(cfg)
    if sc is None:
        return 2
    try:
        day = _day(getattr(args, "day", None), sc, 1 if args.action == "template" else 0)
    except ValueError:
        print(f"--day: {args.day!r} is not a date (YYYY-MM-DD)", file=sys.stderr)
        return 2
    if args.action == "template":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["day", "subject", "hour", "value", "unit"])
        for s in sc.subjects:
            for h in day_hours(day, sc.tz):
                w.writerow([day.isoformat(), s.name, h.number, "", "MWh"])
        return 0
    if args.action == "import":
        path = Path(args.file)
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            print(f"{path}: cannot read: {e}", file=sys.stderr)
            return 2
        try:
            imp = parse_csv(text, sc, str(path))
        except PlanImportError as e:
            for issue in e.issues:
                print(str(issue), file=sys.stderr)
            print(f"{path}: rejected, nothing stored ({len(e.issues)} problem(s))", file=sys.stderr)
            return 1
        if args.dry_run:
            print(f"{path}: valid: {len(imp.plans)} plan(s); nothing stored (--dry-run)")
            return 0
        return asyncio.run(_db_action(args, cfg, sc, day, imp))
    return asyncio.run(_db_action(args, cfg, sc, day, None))


async def _db_action(args: argparse.Namespace, cfg: GridWatchConfig, sc: ScheduleConfig, day: date,
                     imp: PlanImport | None) -> int:
    handle = await open_database(cfg, dsn=args.dsn, migrate=True)
    try:
        db = handle.db
        svc = ScheduleService(sc, ScheduleStore(db), None, DbJournal(db), lambda: datetime.now(UTC))
        if imp is not None:
            stored = await svc.import_plans(imp, args.actor or getpass.getuser())
            for s in stored:
                print(f"stored {s.subject} {s.day} version {s.version}")
            return 0
        if args.action == "recompute":
            n = await svc.recompute_day(day)
            print(f"recomputed {n} closed hour(s) of {day}")
            return 0
        rows = await ScheduleStore(db).results(day, args.subject)
        if args.json:
            print(json.dumps(rows, default=str, indent=1))
            return 0
        print(f"{'entity':<16} {'hour':>4} {'plan MWh':>11} {'actual MWh':>11} {'dev MWh':>9} {'dev %':>7} "
              f"{'compl':>5}  verdict")
        for r in rows:
            def f(v: Any, spec: str) -> str:
                return "" if v is None else format(v, spec)
            print(f"{r['entity']:<16} {r['hour']:>4} {f(r['plan_mwh'], '11.3f'):>11} {r['actual_mwh']:>11.3f} "
                  f"{f(r['deviation_mwh'], '9.3f'):>9} {f(r['deviation_pct'], '7.1f'):>7} "
                  f"{r['completeness']:>5.2f}  {r['verdict']}{'' if r['final'] else ' (open)'}")
        return 0
    finally:
        await handle.close()
