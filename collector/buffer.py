"""The bounded in-memory buffer: readings in, batches out (by size and by age).

Producers (one task per source) `put` readings; the forwarder `get`s sealed batches. A batch
is sealed when it holds `batch_max_rows` readings or its oldest reading waited
`batch_max_age_ms`. Rows count against `max_rows` from `put` until the forwarder calls
`done(batch)` (written, spooled or quarantined), so memory stays bounded: a producer waits in
`put` while the buffer is full (backpressure to the drivers; MQTT keeps unacknowledged
messages at the broker).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from core.records import Reading

Ack = Callable[[], None]


@dataclass(slots=True)
class Batch:
    """Readings written together; `acks` run once they are written or spooled."""

    readings: list[Reading] = field(default_factory=list)
    acks: list[Ack] = field(default_factory=list)
    sources: Counter[str] = field(default_factory=Counter)
    created: float = 0.0

    def __len__(self) -> int:
        return len(self.readings)


class _SplitAck:
    """Runs `ack` once every batch holding a part of one `put` is done (with concurrent writers
    the batch with the last part may finish first)."""

    __slots__ = ("ack", "complete", "pending")

    def __init__(self, ack: Ack) -> None:
        self.ack = ack
        self.pending = 0
        self.complete = False

    def part(self) -> Ack:
        self.pending += 1
        return self._done

    def _done(self) -> None:
        self.pending -= 1
        self._maybe_fire()

    def finish(self) -> None:
        self.complete = True
        self._maybe_fire()

    def _maybe_fire(self) -> None:
        if self.complete and self.pending == 0:
            self.complete = False  # never twice
            self.ack()


class Buffer:
    """See module docstring. Single consumer; any number of producers."""

    def __init__(self, *, max_rows: int, batch_max_rows: int, batch_max_age_s: float) -> None:
        self.max_rows = max(max_rows, batch_max_rows)
        self.batch_max_rows = batch_max_rows
        self.batch_max_age_s = batch_max_age_s
        self.rows = 0  # rows held: current + sealed + handed out and not done
        self._current = Batch()
        self._sealed: deque[Batch] = deque()
        self._cond = asyncio.Condition()
        self._closed = False

    @property
    def closed(self) -> bool:
        """True after `close()`."""
        return self._closed

    async def put(self, readings: Sequence[Reading], source: str = "", ack: Ack | None = None) -> None:
        """Add readings (waits while the buffer is full). `ack` runs after all of them are safe."""
        async with self._cond:
            if not readings:
                if ack is not None:
                    if self._current.readings:
                        self._current.acks.append(ack)
                    elif self._sealed:
                        self._sealed[-1].acks.append(ack)
                    else:
                        ack()
                return
            i = 0
            n = len(readings)
            split = _SplitAck(ack) if ack is not None else None
            while i < n:
                await self._cond.wait_for(lambda: self.rows < self.max_rows or self._closed)
                cur = self._current
                if not cur.readings:
                    cur.created = time.monotonic()
                take = min(n - i, self.batch_max_rows - len(cur.readings), self.max_rows - self.rows)
                if self._closed:
                    take = n - i  # shutting down: the forwarder flushes whatever is left
                chunk = readings[i:i + take]
                cur.readings.extend(chunk)
                if source:
                    cur.sources[source] += take
                self.rows += take
                i += take
                if split is not None:
                    cur.acks.append(split.part())
                if len(cur.readings) >= self.batch_max_rows:
                    self._seal()
                self._cond.notify_all()
            if split is not None:
                split.finish()

    def _seal(self) -> None:
        if self._current.readings or self._current.acks:
            self._sealed.append(self._current)
            self._current = Batch()

    async def get(self) -> Batch | None:
        """The next batch; None once closed and empty."""
        async with self._cond:
            while True:
                if self._sealed:
                    return self._sealed.popleft()
                cur = self._current
                if cur.readings:
                    left = cur.created + self.batch_max_age_s - time.monotonic()
                    if left <= 0 or self._closed:
                        self._seal()
                        continue
                else:
                    left = None
                    if self._closed:
                        return None
                # asyncio.timeout, not wait_for: 3.11's wait_for can lose a cancellation
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(left):
                        await self._cond.wait()

    async def done(self, batch: Batch) -> None:
        """The forwarder finished `batch`: free its rows for producers."""
        async with self._cond:
            self.rows -= len(batch.readings)
            self._cond.notify_all()

    async def close(self) -> None:
        """No more batches after the current ones: `get` returns None when drained."""
        async with self._cond:
            self._closed = True
            self._cond.notify_all()
