"""The alerting service on a real PostgreSQL: state, outbox, journal, leases, retries.

Receivers here are recording fakes (the real receivers are in test_receivers.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta

import pytest

from alerting.config import AlertingConfig
from alerting.receivers import DeliveryError
from alerting.service import AlertingService
from core.errors import SinkUnavailable
from core.records import Alert, Severity
from storage.alerts import AlertFilter, AlertStore, EventFilter, OutboxRow
from storage.db import Database

from .conftest import ManualClock, eventually

pytestmark = pytest.mark.integration


class Recorder:
    """A sender that records what it got, and fails while `down` is set."""

    grouped = True

    def __init__(self, name: str, delay: float = 0.0) -> None:
        self.name = name
        self.down = False
        self.delay = delay
        self.got: list[tuple[int, str, str]] = []  # (outbox id, kind, key)
        self.messages = 0

    async def send(self, rows: Sequence[OutboxRow]) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.down:
            raise DeliveryError(self.name, "connection refused")
        self.messages += 1
        self.got += [(r.id, r.kind, r.payload["key"]) for r in rows]

    async def close(self) -> None:
        pass


def cfg(**extra: object) -> AlertingConfig:
    raw: dict[str, object] = {
        "receivers": [{"kind": "webhook", "name": "hook", "url": "http://127.0.0.1:9", "secret": "x"},
                      {"kind": "webhook", "name": "pager", "url": "http://127.0.0.1:9", "secret": "x",
                       "min_severity": "critical"}],
        "retry": {"initial_s": 10, "max_s": 60},
        "escalation": {"after_s": {"critical": 300}, "receivers": ["pager"]},
        "flapping": {"window_s": 600, "transitions": 4},
    }
    raw.update(extra)
    return AlertingConfig.model_validate(raw)


def mk(key: str, firing: bool = True, sev: Severity = Severity.MAJOR, device: str = "rtu1",
       zone: str = "north") -> Alert:
    from core.records import utcnow
    return Alert(key=key, rule=key.split(":")[0], severity=sev, firing=firing, ts=utcnow(),
                 summary=f"{key} {'on' if firing else 'off'}", device=device, zone=zone)


def service(db: Database, clock: ManualClock, c: AlertingConfig | None = None) -> tuple[AlertingService, Recorder,
                                                                                         Recorder]:
    hook, pager = Recorder("hook"), Recorder("pager")
    svc = AlertingService(c or cfg(), AlertStore(db), None, clock=clock, senders=[hook, pager])
    return svc, hook, pager


async def drain(svc: AlertingService) -> None:
    for s in svc.senders:
        while await svc.deliver(s):
            pass


async def test_lifecycle_outbox_and_journal(db: Database) -> None:
    clock = ManualClock()
    svc, hook, pager = service(db, clock)
    await svc.submit([mk("hi:p1"), mk("hi:p1"), mk("lo:p2", device="rtu2")])
    await svc.submit([mk("hi:p1")])
    clock.advance(5)
    await svc.submit([mk("hi:p1", firing=False)])
    await drain(svc)
    assert [(k, key) for _, k, key in hook.got] == [("firing", "hi:p1"), ("firing", "lo:p2"), ("resolved", "hi:p1")]
    assert pager.got == []  # below its min_severity
    # Grouped by zone/device: rtu1 and rtu2 alerts came in separate messages.
    assert hook.messages >= 2
    rows = await svc.list_alerts(AlertFilter())
    by_key = {r.key: r for r in rows}
    assert by_key["hi:p1"].state == "resolved" and by_key["hi:p1"].repeat_count == 2
    assert by_key["lo:p2"].state == "firing"
    events = await svc.list_events(EventFilter(kind="alert"))
    msgs = [e["message"] for e in events]
    assert sum("hi:p1: firing" in m for m in msgs) == 1 and sum("hi:p1: resolved" in m for m in msgs) == 1
    d = await svc.deliveries()
    hook_status = next(r for r in d["receivers"] if r["name"] == "hook")
    assert hook_status["delivered"] == 3 and hook_status["pending"] == 0


async def test_retry_with_backoff_keeps_order(db: Database) -> None:
    clock = ManualClock()
    svc, hook, _ = service(db, clock)
    hook.down = True
    await svc.submit([mk("hi:p1")])
    await svc.submit([mk("hi:p1", firing=False)])
    await drain(svc)
    assert hook.got == [] and svc.stats.failed["hook"] == 1
    hook.down = False
    await drain(svc)  # not due yet: backoff of 10 s on the manual clock
    assert hook.got == []
    clock.advance(11)
    await drain(svc)
    assert [k for _, k, _ in hook.got] == ["firing", "resolved"]
    await drain(svc)
    assert len(hook.got) == 2
    await svc.refresh_stats()
    assert svc.stats.pending["hook"] == 0


async def test_two_daemons_never_deliver_a_row_twice(db: Database) -> None:
    clock = ManualClock()
    c = cfg(batch_size=7)
    a_svc, a_hook, _ = service(db, clock, c)
    b_svc, b_hook, _ = service(db, clock, c)
    a_hook.delay = b_hook.delay = 0.01
    await a_svc.submit([mk(f"hi:p{i}", device=f"d{i % 5}") for i in range(60)])

    async def run(svc: AlertingService) -> None:
        for _ in range(40):
            await svc.deliver(svc.senders[0])
            await asyncio.sleep(0)

    await asyncio.gather(run(a_svc), run(b_svc))
    await drain(a_svc)
    ids = [i for i, _, _ in a_hook.got + b_hook.got]
    assert len(ids) == 60 and len(set(ids)) == 60


async def test_ack_shelve_escalation_and_journal(db: Database) -> None:
    clock = ManualClock()
    svc, hook, pager = service(db, clock)
    await svc.submit([mk("trip:b1", sev=Severity.CRITICAL), mk("trip:b2", sev=Severity.CRITICAL)])
    await drain(svc)
    rows = {r.key: r for r in await svc.list_alerts(AlertFilter())}
    b1, b2 = rows["trip:b1"], rows["trip:b2"]
    acked = await svc.acknowledge(b1.id, "olga", "crew dispatched")
    assert acked is not None and acked.acked_by == "olga"
    clock.advance(301)
    assert await svc.maintain() == 1  # only the unacknowledged one escalates
    await drain(svc)
    assert [(k, key) for _, k, key in pager.got] == [("firing", "trip:b1"), ("firing", "trip:b2"),
                                                     ("escalation", "trip:b2")]
    assert "escalation" not in [k for _, k, _ in hook.got]  # escalation goes to `pager` only
    # Shelve b2 for 10 minutes: its resolution is held, then sent at expiry.
    until = clock() + timedelta(minutes=10)
    shelved = await svc.shelve(b2.id, "olga", "breaker maintenance", until)
    assert shelved is not None and shelved.shelved_until == until
    await svc.submit([mk("trip:b2", firing=False, sev=Severity.CRITICAL)])
    await drain(svc)
    assert ("resolved", "trip:b2") not in [(k, key) for _, k, key in hook.got]
    clock.advance(601)
    assert await svc.maintain() == 1
    await drain(svc)
    assert [(k, key) for _, k, key in hook.got].count(("resolved", "trip:b2")) == 1
    ops = await svc.list_events(EventFilter(kind="operator"))
    assert {e["actor"] for e in ops} == {"olga"}
    assert any("crew dispatched" in e["message"] for e in ops)
    assert any("breaker maintenance" in e["message"] for e in ops)
    expired = await svc.list_events(EventFilter(text="shelving expired"))
    assert len(expired) == 1
    assert await svc.acknowledge(999999, "olga") is None


async def test_backlog_while_database_down(db: Database) -> None:
    clock = ManualClock()
    svc, hook, _ = service(db, clock)
    await db.pool.close()
    await svc.submit([mk("hi:p1")])  # kept in memory, not raised
    await svc.submit([mk("hi:p1", firing=False), mk("hi:p2")])
    assert svc.stats.backlog == 3
    with pytest.raises(SinkUnavailable):
        await svc.step(0.0)  # still down: kept, in order
    assert svc.stats.backlog == 3
    db.pool = type(db.pool)(db.dsn, min_size=1, max_size=2, open=False, kwargs={"autocommit": False})
    await db.pool.open(wait=True)
    await svc.step(1.0)
    await drain(svc)
    assert [(k, key) for _, k, key in hook.got] == [("firing", "hi:p1"), ("firing", "hi:p2"), ("resolved", "hi:p1")]
    assert svc.stats.backlog == 0 and svc.stats.counters["fired"] == 2 and svc.stats.counters["resolved"] == 1


async def test_wiring_builds_service_from_the_config_file_section(db: Database, tmp_path: object) -> None:
    from pathlib import Path

    from alerting.service import SECTIONS
    from alerting.wiring import wire
    from core.config import parse_config

    class Journal:
        def __init__(self) -> None:
            self.events: list[object] = []

        async def record(self, event: object) -> None:
            self.events.append(event)

    raw = {"collector": {"instance": "gw-north"},
           "alerting": {"receivers": [{"kind": "alertmanager", "name": "am", "url": "http://127.0.0.1:9"}],
                        "escalation": {"after_s": {"critical": 60}}}}
    cfg = parse_config(raw, Path("gw.toml"), {}, SECTIONS)
    features: dict[str, object] = {}
    journal = Journal()
    observers, services = wire(cfg, db, journal, features)
    svc = features["alerting"]
    assert observers == [] and services == [svc] and features["alert_sink"] is svc
    assert isinstance(svc, AlertingService) and svc.instance == "gw-north"
    await svc.submit([mk("hi:p1")])
    assert [r.key for r in await svc.list_alerts(AlertFilter())] == ["hi:p1"]
    off = parse_config({"alerting": {"enabled": False}}, Path("gw.toml"), {}, SECTIONS)
    assert wire(off, db, journal, {}) == ([], [])


async def test_one_batch_with_several_steps_of_one_key(db: Database) -> None:
    clock = ManualClock()
    svc, hook, _ = service(db, clock)
    await svc.submit([mk("hi:p1"), mk("hi:p1"), mk("hi:p1", firing=False), mk("hi:p1")])
    await drain(svc)
    assert [k for _, k, _ in hook.got] == ["firing", "resolved", "firing"]
    (row,) = await svc.list_alerts(AlertFilter())
    assert row.state == "firing" and row.episode == 2
    events = await svc.list_events(EventFilter(kind="alert"))
    assert len(events) == 3 and all(e["details"]["alert_id"] == row.id for e in events)


async def test_concurrent_submits_of_a_new_key_do_not_collide(db: Database) -> None:
    clock = ManualClock()
    svc_a, hook, _ = service(db, clock)
    svc_b, _, _ = service(db, clock)
    batch = [mk(f"hi:p{i}") for i in range(30)]
    await asyncio.gather(svc_a.submit(batch), svc_b.submit(list(reversed(batch))), svc_a.submit(batch[:10]))
    rows = await svc_a.list_alerts(AlertFilter(limit=1000))
    assert len(rows) == 30 and all(r.repeat_count == (2 if int(r.key[4:]) < 10 else 1) for r in rows)
    await drain(svc_a)
    assert sorted(key for _, _, key in hook.got) == sorted(a.key for a in batch)  # one firing each


async def test_pending_rows_of_a_removed_receiver_are_marked_failed(db: Database) -> None:
    clock = ManualClock()
    svc, hook, pager = service(db, clock)
    hook.down = True
    await svc.submit([mk("hi:p1", sev=Severity.CRITICAL)])
    c = cfg(receivers=[{"kind": "webhook", "name": "pager", "url": "http://127.0.0.1:9", "secret": "x"}],
            escalation={"after_s": {}})
    svc2 = AlertingService(c, AlertStore(db), None, clock=clock, senders=[pager])
    task = asyncio.create_task(svc2.run())
    try:
        async def done() -> bool:
            rows = await svc2.store.list_deliveries(receiver="hook")
            return bool(rows) and rows[0]["status"] == "failed" and len(pager.got) == 1
        await eventually(done, what="hook rows abandoned, pager delivered")
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    events = await svc2.list_events(EventFilter(text="no longer configured"))
    assert len(events) == 1


async def test_receiver_group_by_override(db: Database) -> None:
    clock = ManualClock()
    c = cfg(receivers=[{"kind": "webhook", "name": "hook", "url": "http://127.0.0.1:9", "secret": "x",
                        "group_by": ["zone"]}], escalation={"after_s": {}})
    hook = Recorder("hook")
    svc = AlertingService(c, AlertStore(db), None, clock=clock, senders=[hook])
    await svc.submit([mk(f"hi:p{i}", device=f"rtu{i}") for i in range(5)] + [mk("hi:w", zone="west")])
    await drain(svc)
    assert hook.messages == 2 and len(hook.got) == 6  # north and west


async def test_awkward_evidence_is_stored_not_rejected(db: Database) -> None:
    from datetime import UTC, datetime

    class Odd:
        def __str__(self) -> str:
            return "odd-object"

    clock = ManualClock()
    svc, hook, _ = service(db, clock)
    evidence: dict[str, object] = {"score": float("nan"), "limit": float("inf"), "at": datetime(2026, 1, 1, tzinfo=UTC),
                                   "obj": Odd(), "nested": {"t": (1, 2)}, 3: "int key"}
    try:
        import numpy as np
        evidence["np_float"] = np.float64(1.5)
        evidence["np_int"] = np.int64(7)
    except ImportError:
        pass
    a = Alert(key="ml:p1", rule="ml", severity=Severity.MAJOR, firing=True, ts=clock(), summary="anomaly",
              evidence=evidence)
    await svc.submit([a])
    assert svc.stats.backlog == 0
    (row,) = await svc.list_alerts(AlertFilter())
    assert row.evidence["score"] == "nan" and row.evidence["limit"] == "inf"
    assert row.evidence["at"] == "2026-01-01T00:00:00+00:00" and row.evidence["obj"] == "odd-object"
    assert row.evidence["nested"] == {"t": [1, 2]} and row.evidence["3"] == "int key"
    if "np_int" in evidence:
        assert row.evidence["np_float"] == 1.5 and row.evidence["np_int"] == 7
    assert row.started_at.utcoffset() is not None and row.started_at.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    await drain(svc)
    assert [k for _, k, _ in hook.got] == ["firing"]


async def test_a_rejected_alert_does_not_sink_the_batch(db: Database) -> None:
    clock = ManualClock()
    svc, _, _ = service(db, clock)
    bad = Alert(key="bad:p1", rule="bad", severity=Severity.MAJOR, firing=True, ts=clock(), summary="nul \x00 byte")
    await svc.submit([mk("hi:p1"), bad, mk("hi:p2")])
    assert sorted(r.key for r in await svc.list_alerts(AlertFilter())) == ["hi:p1", "hi:p2"]
    assert svc.stats.counters["rejected"] == 1
    assert [a.key for a, _ in svc.rejected] == ["bad:p1"]


async def test_a_down_receiver_costs_one_attempt_per_pass(db: Database) -> None:
    clock = ManualClock()
    svc, hook, _ = service(db, clock)
    hook.down = True
    await svc.submit([mk(f"hi:p{i}", device=f"rtu{i}") for i in range(6)])
    assert await svc.deliver(hook) == 6
    assert svc.stats.failed["hook"] == 1 and hook.got == []  # only the first group was tried
    hook.down = False
    assert await svc.deliver(hook) == 0  # all six wait for the backoff
    clock.advance(11)
    await drain(svc)
    assert hook.messages == 6 and sorted(key for _, _, key in hook.got) == [f"hi:p{i}" for i in range(6)]
