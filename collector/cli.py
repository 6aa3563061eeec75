"""`gridwatch` command line: each subcommand lives in its own module under collector/commands.

A command module defines `register(subparsers)` which adds its parser and sets
`handler=<callable(args) -> int>` via `set_defaults`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMAND_MODULES = [
    "collector.commands.run",
    "collector.commands.check_config",
    "collector.commands.db",
    "collector.commands.bench",
    "collector.commands.simulate",
    "collector.commands.detectors",
    "collector.commands.schedule",
    "collector.commands.dashboards",
    "collector.commands.demo",
]


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every available subcommand."""
    parser = argparse.ArgumentParser(prog="gridwatch", description="GridWatch telemetry daemon")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):  # not written yet
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `gridwatch` console script."""
    args = build_parser().parse_args(argv)
    rc = args.handler(args)
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
