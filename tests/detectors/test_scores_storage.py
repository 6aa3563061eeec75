"""anomaly_scores and detector_models on a real PostgreSQL (migrated with storage.migrate)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from collector.cli import main
from core.records import Quality, Reading
from detectors.config import DetectorsConfig
from detectors.ml import MODEL_NAME
from detectors.service import DetectionService
from storage import scores
from storage.db import Database
from storage.migrate import migrate
from storage.writer import ReadingWriter

from .helpers import T0, point

pytestmark = pytest.mark.integration


@pytest.fixture
async def db(pg_dsn: str) -> AsyncIterator[Database]:
    d = await Database.open(pg_dsn, backend="postgres")
    try:
        await migrate(d)
        yield d
    finally:
        await d.close()


async def test_write_read_scores_idempotent(db: Database) -> None:
    ts = T0.timestamp() + np.arange(5) * 60.0
    n = await scores.write_scores(db, [1] * 5, ts, [0.1, 0.2, 0.3, 0.4, 0.5], "m1")
    assert n == 5
    # replay with new values: updated, not duplicated
    await scores.write_scores(db, [1] * 5, ts, [0.9] * 5, "m1")
    await scores.write_scores(db, [1, 2], ts[:2], [0.5, 0.5], "m2")
    rows = await scores.read_scores(db, 1, T0, T0 + timedelta(hours=1))
    assert [(r.ts, r.model) for r in rows][:2] == [(T0, "m1"), (T0, "m2")]
    m1 = [r for r in rows if r.model == "m1"]
    assert len(m1) == 5 and all(abs(r.score - 0.9) < 1e-6 for r in m1)
    assert m1[1].ts == T0 + timedelta(minutes=1)
    assert await scores.delete_scores_before(db, T0 + timedelta(minutes=2)) == 4  # 2 of m1, 2 of m2
    assert await scores.write_scores(db, [], [], [], "m1") == 0


async def test_models_versioned_and_pruned(db: Database) -> None:
    assert await scores.load_model(db, "x") is None
    for i in range(5):
        v = await scores.save_model(db, "x", bytes([i]), trained_at=T0, keep=2)
        assert v == i + 1
    m = await scores.load_model(db, "x")
    assert m is not None and m.version == 5 and m.blob == b"\x04"


async def test_service_trains_from_archive_persists_and_stores_scores(db: Database) -> None:
    rng = np.random.default_rng(2)
    batch = [Reading(1, T0 + timedelta(minutes=15 * i),
                     float(50 + 10 * np.sin(2 * np.pi * (i % 96) / 96) + rng.normal(0, 0.5)),
                     Quality.GOOD, T0) for i in range(96 * 3)]
    await ReadingWriter(db).write(batch)
    cfg = DetectorsConfig.model_validate({"ml": {"min_history": 50, "iforest_trees": 20}})
    now = T0 + timedelta(days=3)
    svc = DetectionService(cfg, {1: point(1, "f.p", unit="MW")}, db=db, alert_sink=None, journal=None,
                           clock=lambda: now)
    model = await svc.retrain()
    assert model is not None and model.version == 1 and model.point_ids == [1]
    # a fresh service loads the persisted model
    svc2 = DetectionService(cfg, {1: point(1, "f.p", unit="MW")}, db=db, alert_sink=None, journal=None,
                            clock=lambda: now)
    assert await svc2.load_model() and svc2.stats.model_version == 1
    new = [Reading(1, now + timedelta(minutes=15 * i), 50.0 + i, Quality.GOOD, now) for i in range(4)]
    await svc2.on_batch(new)
    rows = await scores.read_scores(db, 1, now, now + timedelta(hours=2))
    assert len(rows) == 4 and all(r.model == MODEL_NAME and 0 <= r.score <= 1 for r in rows)
    assert svc2.stats.scores_stored == 4 and svc2.stats.score_errors == 0


async def test_service_retention_deletes_old_scores(db: Database) -> None:
    now = T0 + timedelta(days=10)
    await scores.write_scores(db, [1, 1], [T0.timestamp(), now.timestamp()], [0.5, 0.5], MODEL_NAME)
    svc = DetectionService(DetectorsConfig.model_validate({}), {}, db=db, alert_sink=None, journal=None,
                           clock=lambda: now, retention_days=5)
    assert await svc.apply_retention() == 1
    assert await svc.apply_retention() == 0  # at most hourly
    rows = await scores.read_scores(db, 1, T0, now + timedelta(seconds=1))
    assert [r.ts for r in rows] == [now]


async def test_evaluate_faults_reads_the_database(db: Database, pg_dsn: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from storage.points import register_points

    ids = await register_points(db, [point(0, "m_1.u"), point(0, "m_1.i"), point(0, "m_10.u")])
    rng = np.random.default_rng(0)
    batch = []
    for i in range(600):
        ts = T0 + timedelta(minutes=15 * i)
        for name in ("m_1.u", "m_1.i", "m_10.u"):
            v = 230 + rng.normal(0, 0.3) + (60 if (name == "m_1.u" and i == 500) else 0)
            batch.append(Reading(ids[name], ts, float(v), Quality.GOOD, ts))
    await ReadingWriter(db).write(batch)
    got = await scores.readings_for_labels(db, ["m_1"], T0, T0 + timedelta(days=30))
    assert sorted(got) == ["m_1.i", "m_1.u"]  # the device prefix, not m_10, and `_` is literal
    assert len(got["m_1.u"][0]) == 600
    labels = tmp_path / "l.jsonl"
    spike_at = (T0 + timedelta(minutes=15 * 500)).isoformat()
    labels.write_text(json.dumps({"point": "m_1.u", "start": spike_at, "end": spike_at, "kind": "spike"}) + "\n")
    # the CLI runs its own event loop: call it from a thread
    rc = await asyncio.to_thread(main, ["detectors", "evaluate", "--labels", str(labels), "--readings-dsn", pg_dsn,
                                        "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert out["kinds"]["spike"]["recall"] == 1.0
