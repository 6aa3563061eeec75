"""GridWatch storage: PostgreSQL / TimescaleDB (the only package that imports psycopg).

Public API (see docs/storage.md)::

    db = await Database.open(dsn)            # storage.db
    await migrate(db)                         # storage.migrate
    writer = ReadingWriter(db)                # storage.writer (core Sink)
    ids = await register_points(db, points)   # storage.points
    rows = await query_readings(db, ids, start, end, step="auto")   # storage.readings
    await refresh_rollups(db, since); await maintain(db, now, cfg)  # storage.maintenance
    journal = DbJournal(db)                   # storage.journal (core Journal)
"""

from storage.bench import copy_ceiling
from storage.db import Database, migration_files, read_sql, translate
from storage.journal import DbJournal, EventRow, purge_events, query_events, record_event
from storage.maintenance import (
    JobHealth,
    MaintenanceReport,
    apply_policies,
    db_status,
    job_health,
    maintain,
    ping,
    refresh_rollups,
)
from storage.migrate import applied_migrations, migrate
from storage.points import PointRow, list_points, point_ids_by_name, register_points
from storage.readings import LatestReading, ReadingRow, choose_step, latest_readings, query_readings
from storage.writer import ReadingWriter, WriterStats

__all__ = [
    "Database",
    "DbJournal",
    "EventRow",
    "JobHealth",
    "LatestReading",
    "MaintenanceReport",
    "PointRow",
    "ReadingRow",
    "ReadingWriter",
    "WriterStats",
    "applied_migrations",
    "apply_policies",
    "choose_step",
    "copy_ceiling",
    "db_status",
    "job_health",
    "latest_readings",
    "list_points",
    "maintain",
    "migrate",
    "migration_files",
    "ping",
    "point_ids_by_name",
    "purge_events",
    "query_events",
    "query_readings",
    "read_sql",
    "record_event",
    "refresh_rollups",
    "register_points",
    "translate",
]
