"""Wiring of the daemon: database, agent, API and feature services, stopped by one event.

`serve(cfg, stop)` is what `gridwatch run` and `gridwatch demo` call. Features (detectors,
alerting, schedule control) plug in through `FEATURE_WIRING`: each entry names a function
`wire(cfg, db, journal, features) -> (observers, services)` that is called when importable.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from collector import store
from collector.agent import Agent, LogJournal
from collector.api.context import ApiContext
from collector.api.server import ApiService
from collector.runtime import open_database
from core.clock import clock_from_config
from core.config import GridWatchConfig
from core.interfaces import BackgroundService, BatchObserver, Journal

log = logging.getLogger(__name__)

FEATURE_WIRING: list[str] = ["alerting.wiring:wire", "detectors.wiring:wire", "detectors.schedule.wiring:wire"]
"""`module:function` hooks adding observers and services (missing modules are skipped)."""


def _wire_features(cfg: GridWatchConfig, db: Any, journal: Journal,
                   features: dict[str, Any]) -> tuple[list[BatchObserver], list[BackgroundService]]:
    observers: list[BatchObserver] = []
    services: list[BackgroundService] = []
    for ref in FEATURE_WIRING:
        mod_name, fn_name = ref.split(":")
        try:
            mod = importlib.import_module(mod_name)
        except ModuleNotFoundError as e:
            if e.name and (mod_name == e.name or mod_name.startswith(e.name + ".")):
                continue
            raise
        obs, svcs = getattr(mod, fn_name)(cfg, db, journal, features)
        observers.extend(obs)
        services.extend(svcs)
    return observers, services


async def serve(cfg: GridWatchConfig, stop: asyncio.Event, *, api: bool = True,
                extra_services: Sequence[BackgroundService] = (),
                on_ready: Callable[[Agent, ApiService | None], Awaitable[None]] | None = None) -> None:
    """Open the database (retrying until `stop`), run the agent until `stop` is set."""
    handle = await open_database(cfg, retry_until=stop)
    try:
        db = handle.db
        try:
            journal: Journal = store.journal(db)
        except store.StorageMissing:
            journal = LogJournal()
        registry = CollectorRegistry()
        features: dict[str, Any] = {}
        observers, services = _wire_features(cfg, db, journal, features)
        services.extend(extra_services)
        # Simulated time ([clock]) reaches the drivers, filters, detectors and schedule control
        # through the agent (the feature hooks read `features["agent"].clock`).
        clock = clock_from_config(cfg.clock.start_at, cfg.clock.speed)
        agent = Agent(cfg, db, clock=clock, observers=observers, services=services, journal=journal,
                      registry=registry)
        features["agent"] = agent
        api_service: ApiService | None = None
        if api and cfg.api.enabled:
            ctx = ApiContext(config=cfg, db=db, registry=registry, journal=journal, features=features)
            api_service = ApiService(ctx)
            agent.services.append(api_service)

        async def watch() -> None:
            await stop.wait()
            agent.stop()

        async def ready() -> None:
            await agent.started.wait()
            if api_service is not None:
                await api_service.ready.wait()
            if on_ready is not None:
                await on_ready(agent, api_service)

        watcher = asyncio.create_task(watch())
        readier = asyncio.create_task(ready())
        try:
            await agent.run()
        finally:
            for t in (watcher, readier):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
    finally:
        await handle.close()
