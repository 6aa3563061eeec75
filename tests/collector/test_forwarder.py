"""Buffer + forwarder + spool with an in-memory sink whose availability the test controls."""

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from collector.buffer import Buffer
from collector.forwarder import Forwarder
from collector.metrics import Metrics
from collector.spool import Spool
from core.errors import SinkRejected, SinkUnavailable
from core.records import Quality, Reading

T0 = datetime(2026, 3, 1, tzinfo=UTC)


def readings(start: int, n: int) -> list[Reading]:
    return [Reading(1, T0 + timedelta(seconds=start + i), float(start + i), Quality.GOOD, T0) for i in range(n)]


class MemSink:
    def __init__(self) -> None:
        self.rows: dict[tuple[int, datetime], float] = {}
        self.down = False
        self.hang = False
        self.reject_value: float | None = None
        self.writes = 0

    async def write(self, batch: Sequence[Reading]) -> None:
        if self.hang:
            await asyncio.sleep(3600)
        if self.down:
            raise SinkUnavailable("test: database down")
        if self.reject_value is not None and any(r.value == self.reject_value for r in batch):
            raise SinkRejected(f"test: value {self.reject_value} rejected")
        self.writes += 1
        for r in batch:
            self.rows.setdefault((r.point_id, r.ts), r.value)


async def wait_for(cond, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.fixture
def parts(tmp_path: Path):  # type: ignore[no-untyped-def]
    buf = Buffer(max_rows=1000, batch_max_rows=100, batch_max_age_s=0.05)
    sink = MemSink()
    spool = Spool(tmp_path / "spool").open()
    stored: list[int] = []

    async def on_stored(rs: Sequence[Reading]) -> None:
        stored.append(len(rs))

    fw = Forwarder(buf, sink, spool, write_timeout_s=0.5, metrics=Metrics(CollectorRegistry()), on_stored=on_stored,
                   backoff_initial_s=0.01, backoff_max_s=0.05)
    return buf, sink, spool, fw, stored


async def test_batches_by_size_and_age(parts) -> None:  # type: ignore[no-untyped-def]
    buf, sink, _spool, fw, stored = parts
    task = asyncio.create_task(fw.run())
    await buf.put(readings(0, 250), "a")
    await wait_for(lambda: sum(stored) == 250)
    assert sorted(stored) == [50, 100, 100]  # two full batches, the rest sealed by age
    await buf.close()
    await task
    assert len(sink.rows) == 250


async def test_outage_spools_then_replays_without_loss(parts) -> None:  # type: ignore[no-untyped-def]
    buf, sink, spool, fw, _stored = parts
    acked: list[int] = []
    task = asyncio.create_task(fw.run())
    sink.down = True
    for k in range(10):
        await buf.put(readings(k * 100, 100), "a", ack=lambda k=k: acked.append(k))
    await wait_for(lambda: len(acked) == 10)  # all acknowledged while the DB is down: spooled
    assert spool.depth > 0 and not sink.rows
    sink.down = False
    # db_ok turns True once the replay's last commit (run in a thread) returned
    await wait_for(lambda: len(sink.rows) == 1000 and spool.empty() and fw.db_ok)
    assert fw.replayed == 1000 and fw.stored == 0
    await buf.put(readings(5000, 10), "a")
    await buf.close()
    await task
    assert len(sink.rows) == 1010


async def test_slow_database_times_out_to_spool(parts) -> None:  # type: ignore[no-untyped-def]
    buf, sink, spool, fw, _ = parts
    task = asyncio.create_task(fw.run())
    sink.hang = True
    acked = asyncio.Event()
    await buf.put(readings(0, 100), "a", ack=acked.set)
    await asyncio.wait_for(acked.wait(), 30)
    assert spool.depth == 1 and not fw.db_ok
    sink.hang = False
    await wait_for(lambda: len(sink.rows) == 100)
    await buf.close()
    await task


async def test_rejected_rows_are_quarantined_rest_stored(parts, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    buf, sink, _spool, fw, _ = parts
    sink.reject_value = 42.0
    task = asyncio.create_task(fw.run())
    acked = asyncio.Event()
    await buf.put(readings(0, 100), "a", ack=acked.set)
    await asyncio.wait_for(acked.wait(), 30)
    await buf.close()
    await task
    assert len(sink.rows) == 99 and fw.quarantined == 1
    q = (tmp_path / "spool" / "quarantine.jsonl").read_text()
    assert "value 42.0 rejected" in q
    assert fw.metrics.registry.get_sample_value("gridwatch_readings_rejected_total", {"source": "a"}) == 1


async def test_buffer_is_bounded(parts) -> None:  # type: ignore[no-untyped-def]
    buf, sink, _spool, fw, _ = parts
    sink.hang = True
    fw.write_timeout_s = 3600
    task = asyncio.create_task(fw.run())
    put = asyncio.create_task(buf.put(readings(0, 3000), "a"))
    await wait_for(lambda: buf.rows >= 1000)
    await asyncio.sleep(0.1)
    assert not put.done() and buf.rows == 1000
    sink.hang = False
    fw.write_timeout_s = 0.5
    task.cancel()
    put.cancel()
    await asyncio.gather(task, put, return_exceptions=True)


async def test_shutdown_with_database_down_spools_everything(parts) -> None:  # type: ignore[no-untyped-def]
    buf, sink, spool, fw, _ = parts
    sink.down = True
    task = asyncio.create_task(fw.run())
    await buf.put(readings(0, 130), "a")
    await buf.close()
    await asyncio.wait_for(task, 30)
    assert spool.rows == 130


async def test_ack_of_a_split_put_waits_for_every_part() -> None:
    buf = Buffer(max_rows=1000, batch_max_rows=100, batch_max_age_s=0.05)
    acked: list[int] = []
    await buf.put(readings(0, 250), "a", ack=lambda: acked.append(1))
    b1 = await buf.get()
    b2 = await buf.get()
    assert b1 is not None and b2 is not None
    await buf.close()
    b3 = await buf.get()
    assert b3 is not None and len(b3) == 50
    for b in (b3, b1):  # out of order, as concurrent writers may finish
        for a in b.acks:
            a()
    assert acked == []
    for a in b2.acks:
        a()
    assert acked == [1]
