"""Helpers of the collector's integration tests: configs for the fake kind, DB checks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from collector import config as gwconfig
from core.config import GridWatchConfig
from tests.collector import fakes

fakes.install()


def fake_source(name: str, n_points: int, **options: Any) -> str:
    opts = ", ".join(f"{k} = {toml_value(v)}" for k, v in options.items())
    pts = ", ".join(f'{{ name = "{name}.p{i}" }}' for i in range(n_points))
    return f'[[sources]]\nname = "{name}"\nkind = "fake"\noptions = {{ {opts} }}\npoints = [{pts}]\n'


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return str(v)


def write_config(tmp: Path, dsn: str | None, sources: str, *, api_port: int | None = None,
                 extra: str = "", batch_rows: int = 500, write_timeout_s: float = 3.0) -> Path:
    api = f"[api]\nenabled = true\nport = {api_port}\n" if api_port else "[api]\nenabled = false\n"
    dsn_line = f'dsn = "{dsn}"\n' if dsn else f'embedded_dir = "{tmp / "pg"}"\n'
    text = (f"[storage]\n{dsn_line}batch_max_rows = {batch_rows}\nbatch_max_age_ms = 50\n"
            f"write_timeout_s = {write_timeout_s}\n"
            f'[spool]\ndir = "{tmp / "spool"}"\n'
            f"[collector]\nbackoff_initial_s = 0.05\nbackoff_max_s = 0.5\ndead_letter_max = 100\n"
            f"{api}{extra}\n{sources}")
    path = tmp / "gridwatch.toml"
    path.write_text(text)
    return path


def load(path: Path) -> GridWatchConfig:
    return gwconfig.load(path)


def readings_stats(dsn: str) -> tuple[int, int, float]:
    """(rows, distinct (point, ts), sum of values) in readings."""
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT count(*), count(DISTINCT (point_id, ts)), coalesce(sum(value), 0) "
                           "FROM readings").fetchone()
        assert row is not None
        return int(row[0]), int(row[1]), float(row[2])


def expected_sum(n_points: int, rounds: int, start: int = 0) -> float:
    return sum(fakes.expected_value(k, i) for k in range(start, start + rounds) for i in range(n_points))


async def until(cond: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while True:
        if await asyncio.to_thread(cond):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        await asyncio.sleep(0.1)


def until_sync(cond: Callable[[], Any], timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout}s")
        time.sleep(0.1)


TEMPLATES_GLOB = str(Path(__file__).resolve().parents[2] / "configs" / "templates" / "*.toml")


def modbus_daemon_config(tmp: Path, dsn: str, port: int, *, count: int = 3, interval_s: float = 1,
                         head: str = "", sections: str = "", device: str = "") -> GridWatchConfig:
    """A daemon config reading `count` SDM630 meters `sdm-NN` (unit ids 1..count) on `port`.

    `head` goes before [storage] (e.g. [clock]), `sections` after [api], `device` into the
    device table (e.g. `zone = "North"`).
    """
    path = tmp / "gw.toml"
    path.write_text(f"""
include = ["{TEMPLATES_GLOB}"]
{head}
[storage]
dsn = "{dsn}"
batch_max_age_ms = 100
[spool]
dir = "{tmp / 'spool'}"
[api]
enabled = false
{sections}
[[sources]]
name = "mb"
kind = "modbus"
options = {{ host = "127.0.0.1", port = {port}, interval_s = {interval_s}, stagger_s = 0, read_on_start = true }}
[[sources.devices]]
name = "sdm-{{n:02d}}"
count = {count}
template = "sdm630"
{device}
options = {{ unit_id = "{{n}}" }}
""")
    return load(path)


def rows_once_migrated(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """The rows of `sql`, or [] while the daemon has not created its tables yet."""
    with psycopg.connect(dsn) as conn:
        try:
            return conn.execute(sql, params).fetchall()
        except psycopg.errors.UndefinedTable:
            return []
