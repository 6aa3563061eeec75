"""`gridwatch run -c FILE`: the daemon (collectors, forwarder, spool, API, features)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from typing import Any

from collector.runtime import load_or_report, setup_logging
from core.errors import SinkUnavailable

log = logging.getLogger(__name__)


def register(sub: Any) -> None:
    """Add the `run` command."""
    p: argparse.ArgumentParser = sub.add_parser("run", help="run the daemon")
    p.add_argument("-c", "--config", required=True, help="configuration file (TOML)")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--no-api", action="store_true", help="do not start the HTTP API")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT; exit 0 after flushing."""
    setup_logging(args.log_level)
    cfg = load_or_report(args.config)
    if cfg is None:
        return 2
    from collector.daemon import serve

    stop = asyncio.Event()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await serve(cfg, stop, api=not args.no_api)
        except SinkUnavailable as e:
            if not stop.is_set():
                raise
            log.info("stopped before the database was reachable: %s", e)

    asyncio.run(main())
    return 0
