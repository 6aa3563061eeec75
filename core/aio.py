"""Small asyncio helpers shared by every package (no I/O of their own).

Python 3.11's `asyncio.wait_for` can lose a cancellation that arrives just as the awaited
future completes (fixed in 3.12 by rebuilding it on `asyncio.timeout`); a task looping over
`wait_for(event.wait(), t)` then never stops. These helpers use `asyncio.timeout`, which
cannot lose it.
"""

from __future__ import annotations

import asyncio


async def wait_event(event: asyncio.Event, timeout: float) -> bool:
    """Wait for `event` at most `timeout` seconds; True when it is set."""
    if event.is_set():
        return True
    try:
        async with asyncio.timeout(max(0.0, timeout)):
            await event.wait()
    except TimeoutError:
        return event.is_set()
    return True
