"""`gridwatch dashboards build [--out DIR] [--check]` and `gridwatch dashboards env --dsn DSN`.

The definitions are grafanalib code in `dashboards/`; the JSON goes to `dashboards/build/`
(committed). `--check` exits 1 when the committed JSON differs from a fresh build.
Grafana provisioning (datasources, dashboards provider) lives in `configs/grafana/`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dashboards.build import BUILD_DIR, check, write


def register(sub: Any) -> None:
    """Add `dashboards build`."""
    p: argparse.ArgumentParser = sub.add_parser("dashboards", help="Grafana dashboards as code")
    actions = p.add_subparsers(dest="action", required=True)
    b = actions.add_parser("build", help="generate dashboards/build/*.json from the grafanalib definitions")
    b.add_argument("--out", type=Path, default=BUILD_DIR, help=f"output directory (default {BUILD_DIR})")
    b.add_argument("--check", action="store_true", help="only compare with the files in --out; exit 1 on drift")
    b.set_defaults(handler=run)
    e = actions.add_parser("env", help="print the environment a Grafana needs to use this database")
    e.add_argument("--dsn", required=True, help="PostgreSQL DSN GridWatch writes to")
    e.add_argument("--timescaledb", action="store_true", help="the database has the timescaledb extension")
    e.add_argument("--prometheus-url", default="http://127.0.0.1:9090", help="Prometheus scraping GridWatch")
    e.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Build, check, or print the Grafana environment."""
    if args.action == "env":
        from dashboards.grafana import instructions

        print(instructions(args.dsn, timescaledb=args.timescaledb, prometheus_url=args.prometheus_url))
        return 0
    if args.check:
        diffs = check(args.out)
        for name in diffs:
            print(f"{args.out / name}: differs from a fresh build (run `gridwatch dashboards build`)",
                  file=sys.stderr)
        if not diffs:
            print(f"{args.out}: up to date")
        return 1 if diffs else 0
    for path in write(args.out):
        print(f"wrote {path}")
    print("Grafana: provision configs/grafana/provisioning (see dashboards/README.md for the environment)")
    return 0
