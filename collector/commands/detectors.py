"""`gridwatch detectors evaluate ...`: score detectors on NAB-format data or on labelled faults."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from core.errors import GridWatchError


def register(sub: Any) -> None:
    """Add `detectors` with its `evaluate` subcommand."""
    p: argparse.ArgumentParser = sub.add_parser("detectors", help="anomaly detectors: offline evaluation")
    cmds = p.add_subparsers(dest="detectors_command", required=True)
    ev = cmds.add_parser("evaluate", help="score a detector on NAB-format data or on labelled simulator faults",
                         description="NAB mode: --data DIR --windows FILE [--emit DIR]. "
                                     "Fault mode: --labels FILE --readings FILE.")
    ev.add_argument("--data", type=Path, help="NAB data directory (<category>/<file>.csv)")
    ev.add_argument("--windows", type=Path, help="NAB windows JSON (combined_windows.json)")
    ev.add_argument("--emit", type=Path, help="write <DIR>/<category>/<file>.csv with anomaly_score per row")
    ev.add_argument("--detector", default=None, help="stream detector name (default: ensemble for NAB, "
                                                     "zscore for faults)")
    ev.add_argument("--labels", type=Path, help="fault labels, JSON lines {point,start,end,kind}")
    ev.add_argument("--readings", type=Path, help="readings CSV (point,ts,value) for --labels")
    ev.add_argument("--readings-dsn", help="read the labelled points' readings from this database instead "
                                           "(points and readings tables)")
    ev.add_argument("--threshold", type=float, default=0.9999, help="score threshold for fault detections")
    ev.add_argument("--probation-days", type=float, default=0.0,
                    help="fault mode: do not score faults starting or detections made in the first DAYS "
                         "after the earliest reading (the detectors are still learning)")
    ev.add_argument("--json", action="store_true", help="print the result as JSON")
    ev.set_defaults(handler=evaluate)


def evaluate(args: argparse.Namespace) -> int:
    """Run the evaluation; 0 on success, 2 on bad arguments or input."""
    from detectors.evaluate import evaluate_faults, evaluate_nab, read_labels, read_readings
    from detectors.online import DETECTORS

    if args.detector is not None and args.detector not in DETECTORS:
        print(f"unknown detector {args.detector!r} (known: {', '.join(sorted(DETECTORS))})", file=sys.stderr)
        return 2
    try:
        if args.labels is not None or args.readings is not None or args.readings_dsn is not None:
            if args.labels is None or (args.readings is None) == (args.readings_dsn is None):
                print("--labels goes with one of --readings or --readings-dsn", file=sys.stderr)
                return 2
            labels = read_labels(args.labels)
            if args.readings is not None:
                readings = read_readings(args.readings)
            else:
                readings = asyncio.run(_db_readings(args.readings_dsn, labels))
            rep = evaluate_faults(labels, readings, detector=args.detector or "zscore", threshold=args.threshold,
                                  probation_s=args.probation_days * 86400.0)
            print(json.dumps(rep.as_dict(), indent=2) if args.json else rep.as_text())
            return 0
        if args.data is None or args.windows is None:
            print("give --data DIR and --windows FILE (NAB mode) or --labels and --readings", file=sys.stderr)
            return 2
        if not args.data.is_dir():
            print(f"--data {args.data}: not a directory", file=sys.stderr)
            return 2
        nrep = evaluate_nab(args.data, args.windows, detector=args.detector or "ensemble", emit=args.emit)
    except (OSError, ValueError, GridWatchError) as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"detector": nrep.detector, "files": nrep.files, "rows": nrep.rows,
                          "windows": nrep.windows,
                          "profiles": {k: {"score": r.normalized, "threshold": r.threshold, "raw": r.raw,
                                           "tp": r.tp, "fp": r.fp, "fn": r.fn}
                                       for k, r in nrep.results.items()}}, indent=2))
    else:
        print(nrep.as_text())
    return 0


async def _db_readings(dsn: str, labels: Any) -> Any:
    from storage.db import Database
    from storage.scores import readings_for_labels

    if not labels:
        return {}
    since = min(lab.start for lab in labels) - timedelta(days=7)
    until = max(lab.end for lab in labels) + timedelta(days=1)
    db = await Database.open(dsn, pool_size=1)
    try:
        return await readings_for_labels(db, sorted({lab.point for lab in labels}), since, until)
    finally:
        await db.close()
