"""The alerting service: `submit()` for detectors, `run()` for delivery, escalation, expiry.

`submit(alerts)` applies the lifecycle (`alerting.lifecycle`) to every alert in ONE database
transaction that also writes the outbox rows and the journal events; nothing is sent from
there. `run()` delivers the outbox: it leases due rows per receiver (rows locked with
`FOR UPDATE SKIP LOCKED` and a lease time, so two daemons on one database never send a row
twice), sends them grouped by zone and device, marks them delivered or schedules a retry
with exponential backoff. It also expires shelving, ends flapping, escalates unacknowledged
alerts and re-sends firing alerts to Alertmanager every `resend_s`.

While the database is unreachable, submitted alerts wait in a bounded in-memory backlog and
are written when it returns (`stats.counters['backlog_dropped']` counts any overflow).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from alerting import lifecycle
from alerting.config import AlertingConfig, AlertmanagerReceiver, EmailReceiver, WebhookReceiver
from alerting.receivers import AlertmanagerSender, DeliveryError, EmailSender, Sender, WebhookSender
from core.aio import wait_event
from core.config import GridWatchConfig
from core.errors import ConfigError, ConfigIssue, GridWatchError, SinkRejected, SinkUnavailable
from core.interfaces import Journal
from core.records import Alert, Event, Severity, utcnow
from storage.alerts import AlertFilter, AlertRow, AlertStore, AlertTx, EventFilter, NewNotification, OutboxRow
from storage.db import Database

log = logging.getLogger("gridwatch.alerting")

SECTION = "alerting"


@dataclass
class AlertingStats:
    """Plain counters and gauges for the collector's metrics (read-only for others).

    `counters`: fired, resolved, deduplicated, severity_changed, flapping_held, acked, shelved,
    unshelved, escalated, resolved_unknown, backlog_dropped, loop_errors.
    Per receiver: `delivered` / `failed` (notifications), `gave_up`, `pending`, `failed_rows`
    (status failed in the outbox), `oldest_pending_age_s`, `last_error`, `last_success_at`.
    """

    counters: Counter[str] = field(default_factory=Counter)
    delivered: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    gave_up: Counter[str] = field(default_factory=Counter)
    pending: dict[str, int] = field(default_factory=dict)
    failed_rows: dict[str, int] = field(default_factory=dict)
    oldest_pending_age_s: dict[str, float] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)
    last_success_at: dict[str, datetime] = field(default_factory=dict)
    backlog: int = 0

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        """(metric name, labels, value) for a Prometheus exposition; names as in docs/alerting.md."""
        out: list[tuple[str, dict[str, str], float]] = []
        for k, v in sorted(self.counters.items()):
            out.append(("gridwatch_alerting_transitions_total", {"kind": k}, float(v)))
        for name, series in (("gridwatch_alerting_notifications_delivered_total", self.delivered),
                             ("gridwatch_alerting_notifications_failed_total", self.failed),
                             ("gridwatch_alerting_notifications_dropped_total", self.gave_up)):
            for r, v in sorted(series.items()):
                out.append((name, {"receiver": r}, float(v)))
        for r, v in sorted(self.pending.items()):
            out.append(("gridwatch_alerting_outbox_pending", {"receiver": r}, float(v)))
            out.append(("gridwatch_alerting_outbox_oldest_age_seconds", {"receiver": r},
                        self.oldest_pending_age_s.get(r, 0.0)))
        out.append(("gridwatch_alerting_backlog", {}, float(self.backlog)))
        return out


def alerting_config(config: GridWatchConfig) -> AlertingConfig:
    """The `[alerting]` section of `config` (validated by the collector through `SECTIONS`,
    or here from a raw mapping, or the defaults when absent)."""
    raw = config.sections.get(SECTION)
    if isinstance(raw, AlertingConfig):
        return raw
    if raw is None:
        return AlertingConfig.model_validate({})
    try:
        return AlertingConfig.model_validate(raw if isinstance(raw, dict) else raw.model_dump())
    except Exception as e:
        raise ConfigError([ConfigIssue(str(config.file), SECTION, str(e))]) from None


SECTIONS = {SECTION: AlertingConfig}
"""Config sections this package owns, for `core.config.load_config(..., sections=...)`."""


def make_sender(r: AlertmanagerReceiver | WebhookReceiver | EmailReceiver, cfg: AlertingConfig,
                instance: str) -> Sender:
    """The sender for one configured receiver."""
    if isinstance(r, AlertmanagerReceiver):
        return AlertmanagerSender(r, cfg.generator_url, instance)
    if isinstance(r, WebhookReceiver):
        return WebhookSender(r)
    return EmailSender(r)


class AlertingService:
    """Implements `core.interfaces.AlertSink` and `BackgroundService` (see module docstring)."""

    def __init__(self, cfg: AlertingConfig, store: AlertStore, journal: Journal | None = None, *,
                 clock: Callable[[], datetime] = utcnow, instance: str = "gridwatch",
                 senders: Sequence[Sender] | None = None, backlog_max: int = 10_000) -> None:
        self.cfg = cfg
        self.store = store
        self.journal = journal
        self.clock = clock
        self.instance = instance
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stats = AlertingStats()
        self.receivers = [r for r in cfg.receivers if r.enabled]
        self.senders: list[Sender] = list(senders) if senders is not None else [
            make_sender(r, cfg, instance) for r in self.receivers]
        self._wake = asyncio.Event()
        self._backlog: deque[Alert] = deque(maxlen=backlog_max)
        self.rejected: deque[tuple[Alert, str]] = deque(maxlen=100)  # kept for inspection
        self._last_unavailable: Exception | None = None
        self._last_resend: dict[str, float] = {}
        self._last_stats = -1e18
        self._last_maintain = -1e18
        self._last_purge = -1e18
        self._esc_receivers = set(cfg.escalation.receivers if cfg.escalation.receivers is not None else
                                  [r.name for r in self.receivers if r.kind != "alertmanager"])

    # -- AlertSink -------------------------------------------------------------------------

    async def submit(self, alerts: Sequence[Alert]) -> None:
        """Apply alerts in one transaction (state, outbox, journal). While the database is
        unavailable they are kept in a bounded backlog and retried by `run()`; an alert the
        database refuses is counted and kept in `rejected`. Never raises for either."""
        if not alerts:
            return
        if self._backlog:  # keep the order: older alerts first
            self._keep(alerts, None)
            return
        kept = await self._apply(alerts)
        if kept:
            self._keep(kept, self._last_unavailable)
        else:
            self._wake.set()

    def _keep(self, alerts: Sequence[Alert], error: Exception | None) -> None:
        maxlen = self._backlog.maxlen or 0
        overflow = len(self._backlog) + len(alerts) - maxlen
        if overflow > 0:
            self.stats.counters["backlog_dropped"] += overflow
            log.error("alerting: in-memory backlog full, %d oldest alert(s) dropped", overflow)
        self._backlog.extend(alerts)
        self.stats.backlog = len(self._backlog)
        if error is not None:
            log.warning("alerting: database unavailable, %d alert(s) kept in memory: %s", len(alerts), error)

    async def _apply(self, alerts: Sequence[Alert]) -> list[Alert]:
        """Apply alerts; returns those to keep for later (database unavailable)."""
        try:
            await self._submit(alerts)
            return []
        except SinkUnavailable as e:
            self._last_unavailable = e
            return list(alerts)
        except SinkRejected:
            if len(alerts) == 1:
                a = alerts[0]
                self.stats.counters["rejected"] += 1
                self.rejected.append((a, "rejected by the database"))
                log.error("alerting: alert %r of rule %r rejected by the database", a.key, a.rule)
                return []
        # One bad alert must not sink the others: apply them one by one.
        kept: list[Alert] = []
        for i, a in enumerate(alerts):
            try:
                await self._submit([a])
            except SinkUnavailable as e:
                self._last_unavailable = e
                kept.extend(alerts[i:])
                break
            except SinkRejected as e:
                self.stats.counters["rejected"] += 1
                self.rejected.append((a, str(e)))
                log.error("alerting: alert %r of rule %r rejected by the database: %s", a.key, a.rule, e)
        return kept

    async def _submit(self, alerts: Sequence[Alert]) -> None:
        now = self.clock()
        counters: list[str] = []
        async with self.store.transaction() as tx:
            current = await tx.lock_keys([a.key for a in alerts])
            steps: list[tuple[AlertRow | None, lifecycle.Outcome]] = []
            for a in alerts:
                old = current.get(a.key)
                out = lifecycle.apply_alert(old, a, now, self.cfg)
                counters += out.counters
                if out.row is None:
                    continue
                steps.append((old, out))
                current[a.key] = out.row
            await self._persist(tx, steps, now)
        for c in counters:  # counted once committed
            self.stats.counters[c] += 1

    async def _persist(self, tx: AlertTx, steps: Sequence[tuple[AlertRow | None, lifecycle.Outcome]],
                       now: datetime) -> dict[str, AlertRow]:
        """Write the final row of every key, then outbox rows and events of every step, in order."""
        final: dict[str, AlertRow] = {}
        for _, out in steps:
            assert out.row is not None
            final[out.row.key] = out.row
        new = [r for r in final.values() if r.id == 0]
        changed = [r for r in final.values() if r.id != 0]
        stored = {r.key: r for r in await tx.insert_many(new)}
        stored.update({r.key: r for r in await tx.update_many(changed)})
        notes: list[NewNotification] = []
        events: list[Event] = []
        for old, out in steps:
            assert out.row is not None
            alert_id = stored[out.row.key].id
            row = dataclasses.replace(out.row, id=alert_id)
            prev = None
            if old is not None and old.notified_state == "firing" and old.notified_severity != row.severity:
                prev = old.notified_severity
            for kind in out.notify:
                payload = lifecycle.snapshot(row, kind, self.cfg, prev if kind == "firing" else None)
                for r in self.receivers:
                    if row.severity < r.min_level:
                        continue
                    if kind == "escalation" and r.name not in self._esc_receivers:
                        continue
                    gk = lifecycle.group_key(row, self.cfg, r.group_by)
                    notes.append(NewNotification(alert_id, r.name, kind, gk, payload, now))
            for ev in out.events:
                events.append(dataclasses.replace(ev, details=dict(ev.details, alert_id=alert_id)))
        await tx.enqueue(notes)
        await tx.record_many(events)
        return stored

    # -- operator actions ----------------------------------------------------------------

    async def _operate(self, alert_id: int, fn: Callable[[AlertRow, datetime], lifecycle.Outcome]) -> AlertRow | None:
        now = self.clock()
        async with self.store.transaction() as tx:
            old = await tx.get_for_update(alert_id)
            if old is None:
                return None
            out = fn(old, now)
            if out.row is None:
                return old
            row = (await self._persist(tx, [(old, out)], now))[old.key]
        for c in out.counters:
            self.stats.counters[c] += 1
        self._wake.set()
        return row

    async def acknowledge(self, alert_id: int, user: str, comment: str = "") -> AlertRow | None:
        """Acknowledge alert `alert_id` (None when it does not exist)."""
        return await self._operate(alert_id, lambda r, now: lifecycle.acknowledge(r, user, comment, now))

    async def shelve(self, alert_id: int, user: str, reason: str, until: datetime) -> AlertRow | None:
        """Shelve alert `alert_id` until `until` (aware UTC, in the future)."""
        return await self._operate(alert_id, lambda r, now: lifecycle.shelve(r, user, reason, until, now))

    async def unshelve(self, alert_id: int, user: str) -> AlertRow | None:
        """End shelving of alert `alert_id` now; held notifications are sent."""
        return await self._operate(alert_id, lambda r, now: lifecycle.unshelve(r, now, user))

    # -- queries for the API ---------------------------------------------------------------

    async def list_alerts(self, f: AlertFilter) -> list[AlertRow]:
        """Alerts for the API."""
        return await self.store.list_alerts(f)

    async def get(self, alert_id: int) -> AlertRow | None:
        """One alert."""
        return await self.store.get(alert_id)

    async def list_events(self, f: EventFilter) -> list[dict[str, Any]]:
        """Journal events for the API."""
        return await self.store.list_events(f)

    async def deliveries(self, **filters: Any) -> dict[str, Any]:
        """Delivery status per receiver plus the newest outbox rows."""
        summary = {s.receiver: s for s in await self.store.summary()}
        now = self.clock()
        receivers = []
        for r in self.cfg.receivers:
            s = summary.get(r.name)
            receivers.append({
                "name": r.name, "kind": r.kind, "enabled": r.enabled,
                "pending": s.pending if s else 0, "failed": s.failed if s else 0,
                "delivered": s.delivered if s else 0,
                "oldest_pending_age_s": (now - s.oldest_pending).total_seconds() if s and s.oldest_pending else 0.0,
                "last_delivered_at": s.last_delivered_at.isoformat() if s and s.last_delivered_at else None,
                "attempts_failed": self.stats.failed.get(r.name, 0),
                "last_error": self.stats.last_error.get(r.name, ""),
            })
        rows = await self.store.list_deliveries(**filters)
        return {"receivers": receivers, "backlog": len(self._backlog), "deliveries": rows}

    # -- BackgroundService -----------------------------------------------------------------

    async def run(self) -> None:
        """Deliver, maintain and re-send until cancelled."""
        loop = asyncio.get_running_loop()
        await self._journal(f"alerting started: receivers {', '.join(r.name for r in self.receivers) or 'none'}")
        try:
            gone = await self.store.abandon_unknown_receivers([s.name for s in self.senders])
        except GridWatchError as e:
            log.warning("alerting: %s", e)
            gone = {}
        for name, n in gone.items():
            await self._journal(f"{n} pending notification(s) for receiver {name!r} marked failed: "
                                "it is no longer configured")
        streak = 0  # consecutive failed passes: wait longer (database down), log less
        try:
            while True:
                self._wake.clear()
                try:
                    await self.step(loop.time())
                    streak = 0
                except asyncio.CancelledError:
                    raise
                except GridWatchError as e:
                    streak += 1
                    self.stats.counters["loop_errors"] += 1
                    if streak == 1 or streak % 20 == 0:
                        log.warning("alerting: %s (failed passes in a row: %d)", e, streak)
                except Exception:
                    streak += 1
                    self.stats.counters["loop_errors"] += 1
                    log.exception("alerting: unexpected error in the delivery loop")
                wait = min(30.0, self.cfg.poll_interval_s * 2 ** min(streak, 10))
                await wait_event(self._wake, wait if streak else self.cfg.poll_interval_s)
        finally:
            await self.close()

    async def close(self) -> None:
        """Close the senders' connections (`run()` does it when it ends)."""
        for s in self.senders:
            with contextlib.suppress(Exception):
                await s.close()

    async def step(self, mono: float) -> None:
        """One pass of the loop (tests call it directly)."""
        if self._backlog:
            batch = list(self._backlog)
            self._backlog.clear()
            kept = await self._apply(batch)
            self._backlog.extendleft(reversed(kept))
            self.stats.backlog = len(self._backlog)
            if kept:
                raise SinkUnavailable(f"database still unavailable, {len(kept)} alert(s) kept in memory")
        if mono - self._last_maintain >= min(5.0, self.cfg.poll_interval_s * 5):
            self._last_maintain = mono
            await self.maintain()
        for s in self.senders:
            while await self.deliver(s) >= self.cfg.batch_size:
                pass
        for s in self.senders:
            if isinstance(s, AlertmanagerSender) and mono - self._last_resend.get(s.name, -1e18) >= s.cfg.resend_s:
                self._last_resend[s.name] = mono
                await self.resend(s)
        if mono - self._last_stats >= 5.0:
            self._last_stats = mono
            await self.refresh_stats()
        if mono - self._last_purge >= 3600.0:
            self._last_purge = mono
            await self.store.purge_outbox(self.clock() - timedelta(days=self.cfg.outbox_keep_days))

    async def maintain(self) -> int:
        """Expire shelving, end flapping, escalate; returns how many alerts changed."""
        now = self.clock()
        candidates = [r for r in await self.store.maintenance_rows()
                      if lifecycle.maintain(r, now, self.cfg).row is not None]
        if not candidates:
            return 0
        steps: list[tuple[AlertRow | None, lifecycle.Outcome]] = []
        async with self.store.transaction() as tx:
            for c in candidates:
                old = await tx.get_for_update(c.id)
                if old is None:
                    continue
                out = lifecycle.maintain(old, now, self.cfg)
                if out.row is None:
                    continue
                steps.append((old, out))
            await self._persist(tx, steps, now)
        for _, out in steps:
            for k in out.counters:
                self.stats.counters[k] += 1
        return len(steps)

    async def deliver(self, sender: Sender) -> int:
        """Lease and send one batch for `sender`; returns the number of rows leased.

        Groups go out one message each: the first alone (a receiver that is down costs one
        attempt, the other groups are given back untried), the rest `parallel_sends` at a time.
        """
        now = self.clock()
        rows = await self.store.lease(sender.name, self.owner, now, now + timedelta(seconds=self.cfg.lease_s),
                                      self.cfg.batch_size)
        if not rows:
            return 0
        groups: list[list[OutboxRow]] = []
        if sender.grouped:
            by: dict[str, list[OutboxRow]] = {}
            for r in rows:
                by.setdefault(r.group_key, []).append(r)
            groups = list(by.values())
        else:
            groups = [rows]
        first, rest = groups[0], groups[1:]
        if not await self._send_group(sender, first):
            if rest:
                when = self.clock() + timedelta(seconds=self.cfg.retry.delay(max(r.attempts for r in first)))
                await self.store.release([r.id for g in rest for r in g], self.owner, when)
            return len(rows)
        sem = asyncio.Semaphore(self.cfg.parallel_sends)

        async def one(g: list[OutboxRow]) -> bool:
            async with sem:
                return await self._send_group(sender, g)

        results = await asyncio.gather(*(one(g) for g in rest), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            raise errors[0]
        return len(rows)

    async def _send_group(self, sender: Sender, g: list[OutboxRow]) -> bool:
        """Send one group and record the outcome; False when the receiver seems down."""
        ids = [r.id for r in g]
        try:
            await sender.send(g)
        except DeliveryError as e:
            self.stats.failed[sender.name] += len(g)
            self.stats.last_error[sender.name] = str(e)
            delay = self.cfg.retry.delay(max(r.attempts for r in g))
            when = self.clock() + timedelta(seconds=delay)
            gave_up = await self.store.mark_failed(ids, self.owner, when, str(e), self.cfg.retry.max_attempts)
            if gave_up:
                self.stats.gave_up[sender.name] += gave_up
                await self._journal(f"{sender.name}: gave up {gave_up} notification(s) after "
                                    f"{self.cfg.retry.max_attempts} attempts: {e}")
            log.warning("alerting: delivery to %s failed (retry in %.1f s): %s", sender.name, delay, e)
            return not e.retryable
        await self.store.mark_delivered(ids, self.owner, self.clock())
        self.stats.delivered[sender.name] += len(g)
        self.stats.last_success_at[sender.name] = self.clock()
        return True

    async def resend(self, sender: AlertmanagerSender) -> None:
        """Re-send every alert Alertmanager was told is firing (a failure only counts)."""
        rows = [r for r in await self.store.firing_notified() if r.severity >= sender.cfg.min_level]
        if not rows:
            return
        try:
            await sender.resend(rows, lambda r: lifecycle.snapshot(r, "firing", self.cfg))
        except DeliveryError as e:
            self.stats.counters["resend_failed"] += 1
            self.stats.last_error[sender.name] = str(e)

    async def refresh_stats(self) -> None:
        """Refresh the outbox gauges from the database."""
        now = self.clock()
        configured = {r.name for r in self.receivers}
        for s in await self.store.summary():
            if s.receiver not in configured:
                continue
            self.stats.pending[s.receiver] = s.pending
            self.stats.failed_rows[s.receiver] = s.failed
            self.stats.oldest_pending_age_s[s.receiver] = (
                (now - s.oldest_pending).total_seconds() if s.oldest_pending else 0.0)
        for r in self.receivers:
            self.stats.pending.setdefault(r.name, 0)
            self.stats.oldest_pending_age_s.setdefault(r.name, 0.0)

    async def _journal(self, message: str) -> None:
        ev = Event(kind="alert", source=lifecycle.SOURCE, message=message, ts=self.clock())
        try:
            if self.journal is not None:
                await self.journal.record(ev)
            else:
                await self.store.record(ev)
        except GridWatchError as e:
            log.warning("alerting: cannot journal %r: %s", message, e)


def build(config: GridWatchConfig, db: Database, journal: Journal, *,
          clock: Callable[[], datetime] | None = None) -> AlertingService:
    """The alerting service for a daemon (the Agent runs `run()` and hands it to detectors)."""
    return AlertingService(alerting_config(config), AlertStore(db), journal, clock=clock or utcnow,
                           instance=config.collector.instance)


__all__ = ["SECTIONS", "AlertingService", "AlertingStats", "Severity", "alerting_config", "build"]
