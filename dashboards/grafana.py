"""How to point a Grafana at a GridWatch database: the environment the provisioning files in
configs/grafana/provisioning read, derived from a PostgreSQL DSN (URL or key=value form).

`make demo` prints `instructions(dsn, timescaledb=...)`; `gridwatch dashboards env --dsn DSN`
prints the same.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from dashboards.build import BUILD_DIR

PROVISIONING_DIR = Path(__file__).resolve().parent.parent / "configs" / "grafana" / "provisioning"


def parse_dsn(dsn: str) -> dict[str, str]:
    """host, port, dbname, user, password, sslmode of a libpq DSN (URL or key=value)."""
    out: dict[str, str] = {}
    if dsn.startswith(("postgresql://", "postgres://")):
        u = urlparse(dsn)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        out["host"] = q.get("host") or (u.hostname or "")
        out["port"] = q.get("port") or (str(u.port) if u.port else "")
        out["dbname"] = q.get("dbname") or unquote(u.path.lstrip("/"))
        out["user"] = q.get("user") or unquote(u.username or "")
        out["password"] = q.get("password") or unquote(u.password or "")
        out["sslmode"] = q.get("sslmode", "")
        return out
    for part in shlex.split(dsn):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip()] = v
    return out


def grafana_env(dsn: str, *, timescaledb: bool, prometheus_url: str = "http://127.0.0.1:9090",
                dashboards_dir: Path = BUILD_DIR, provisioning_dir: Path = PROVISIONING_DIR) -> dict[str, str]:
    """The environment variables configs/grafana/provisioning expects.

    A Unix-socket host (a directory, as the embedded PostgreSQL uses) is passed as is: Grafana's
    PostgreSQL datasource takes a socket directory as its host (grafana-server must be allowed
    to open it).
    """
    p = parse_dsn(dsn)
    host = p.get("host") or "127.0.0.1"
    port = p.get("port") or "5432"
    return {
        "GF_PATHS_PROVISIONING": str(provisioning_dir),
        "GRIDWATCH_DASHBOARDS_DIR": str(dashboards_dir),
        "GRIDWATCH_PG_HOST": host if host.startswith("/") else f"{host}:{port}",
        "GRIDWATCH_PG_DATABASE": p.get("dbname") or "postgres",
        "GRIDWATCH_PG_USER": p.get("user") or "postgres",
        "GRIDWATCH_PG_PASSWORD": p.get("password", ""),
        "GRIDWATCH_PG_SSLMODE": p.get("sslmode") or "disable",
        "GRIDWATCH_TIMESCALEDB": "true" if timescaledb else "false",
        "GRIDWATCH_PROMETHEUS_URL": prometheus_url,
    }


def instructions(dsn: str, *, timescaledb: bool, prometheus_url: str = "http://127.0.0.1:9090") -> str:
    """A few lines telling an operator how to start a Grafana on this database."""
    env = grafana_env(dsn, timescaledb=timescaledb, prometheus_url=prometheus_url)
    lines = ["Grafana: export these and start grafana-server (10.4 or later); dashboards appear in the",
             "folder GridWatch (build them first with `gridwatch dashboards build`):"]
    lines += [f"  export {k}={shlex.quote(v)}" for k, v in env.items()]
    return "\n".join(lines)
