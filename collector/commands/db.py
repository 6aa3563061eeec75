"""`gridwatch db migrate|status -c FILE [--dsn DSN]`: schema migrations and their state."""

from __future__ import annotations

import argparse
import asyncio
import json
from typing import Any

from collector import store
from collector.runtime import load_or_report, open_database, setup_logging
from storage.db import migration_files


def register(sub: Any) -> None:
    """Add `db migrate` and `db status`."""
    p: argparse.ArgumentParser = sub.add_parser("db", help="database schema")
    actions = p.add_subparsers(dest="action", required=True)
    for name, helptext in (("migrate", "apply pending migrations"), ("status", "show migrations and backend")):
        a = actions.add_parser(name, help=helptext)
        a.add_argument("-c", "--config", required=True, help="configuration file (TOML)")
        a.add_argument("--dsn", help="database DSN (overrides storage.dsn)")
        a.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Migrate or print status."""
    setup_logging("WARNING")
    cfg = load_or_report(args.config)
    if cfg is None:
        return 2

    async def main() -> int:
        handle = await open_database(cfg, dsn=args.dsn, migrate=False)
        try:
            if args.action == "migrate":
                applied = await store.migrate(handle.db)
                print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {f}" for f in applied))
                return 0
            status = store.find("db_status", required=False)
            if status is not None:
                st = await status(handle.db)
                print(json.dumps(st, indent=2, default=str) if not isinstance(st, str) else st)
                return 0
            from storage.migrate import applied_migrations

            done = {(m.version, m.name) for m in await applied_migrations(handle.db)}
            print(f"backend: {handle.db.backend}")
            for version, name, backend, fname in migration_files():
                if backend is not None and backend != handle.db.backend:
                    continue
                print(f"  {'applied' if (version, name) in done else 'pending'}  {fname}")
            return 0
        finally:
            await handle.close()

    return asyncio.run(main())
