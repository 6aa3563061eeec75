"""The alert state machine, as pure functions over `storage.alerts.AlertRow` (no I/O).

One row per alert key holds its current episode. A submitted `core.records.Alert`:

* firing, unknown key            -> new row, firing, notify
* firing, row firing             -> deduplicated (repeat_count + 1); a severity change is
                                    journalled and re-notified
* resolved, row firing           -> resolved, notify
* firing, row resolved           -> a new episode: ack and escalation reset, notify
* resolved, row resolved/unknown -> nothing

Every state change is recorded in `transitions`; `flapping.transitions` changes within
`flapping.window_s` mark the alert flapping, which holds its notifications until it has been
stable for a whole window. Shelved alerts are quiet as well. When a quiet period ends and the
receivers were last told a different state, the current state is sent (`sync`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from alerting.config import AlertingConfig
from core.records import Alert, Event, Severity
from storage.alerts import AlertRow

SOURCE = "alerting"


@dataclass
class Outcome:
    """What applying an input changed: the new row (None: nothing to store), events, and
    the notification kinds to enqueue ('firing', 'resolved', 'escalation')."""

    row: AlertRow | None
    events: list[Event] = field(default_factory=list)
    notify: list[str] = field(default_factory=list)
    counters: list[str] = field(default_factory=list)


def sev_name(severity: int) -> str:
    """Lower-case severity name."""
    return Severity(severity).name.lower()


def is_quiet(row: AlertRow, now: datetime) -> bool:
    """True while notifications of `row` are held (flapping or shelved)."""
    return row.flapping or (row.shelved_until is not None and row.shelved_until > now)


def _event(row: AlertRow, message: str, now: datetime, actor: str = "system", **details: Any) -> Event:
    base: dict[str, Any] = {"alert_id": row.id or None, "key": row.key, "rule": row.rule,
                            "severity": sev_name(row.severity), "state": row.state, "episode": row.episode,
                            "device": row.device, "zone": row.zone}
    base.update(details)
    return Event(kind="alert", source=SOURCE, message=f"{row.key}: {message}", ts=now, actor=actor, details=base)


def _flap(row: AlertRow, now: datetime, cfg: AlertingConfig, events: list[Event]) -> AlertRow:
    window = timedelta(seconds=cfg.flapping.window_s)
    recent = (*(t for t in row.transitions if t > now - window), now)
    row = dataclasses.replace(row, transitions=recent)
    if not row.flapping and len(recent) >= cfg.flapping.transitions:
        row = dataclasses.replace(row, flapping=True)
        events.append(_event(row, f"flapping ({len(recent)} changes within {cfg.flapping.window_s:g} s); "
                                  "notifications held until stable", now, transitions=len(recent)))
    return row


def _want(row: AlertRow, now: datetime) -> list[str]:
    """Notification needed to bring receivers to the row's state (empty while quiet)."""
    if is_quiet(row, now):
        return []
    if row.state == "firing" and (row.notified_state != "firing" or row.notified_severity != row.severity):
        return ["firing"]
    if row.state == "resolved" and row.notified_state == "firing":
        return ["resolved"]
    return []


def _notified(row: AlertRow, kinds: list[str]) -> AlertRow:
    if kinds:
        return dataclasses.replace(row, notified_state=row.state, notified_severity=row.severity)
    return row


def apply_alert(row: AlertRow | None, alert: Alert, now: datetime, cfg: AlertingConfig) -> Outcome:
    """Apply one detector alert to the current row of its key."""
    events: list[Event] = []
    ctx: dict[str, Any] = {"summary": alert.summary, "evidence": dict(alert.evidence),
                           "recommendation": alert.recommendation, "alert_ts": alert.ts.isoformat()}
    if row is None:
        if not alert.firing:
            return Outcome(None, counters=["resolved_unknown"])
        new = AlertRow(id=0, key=alert.key, rule=alert.rule, severity=int(alert.severity), state="firing",
                       summary=alert.summary, point_id=alert.point_id, device=alert.device, zone=alert.zone,
                       subject=alert.subject, evidence=dict(alert.evidence), recommendation=alert.recommendation,
                       episode=1, started_at=alert.ts, opened_at=now, last_seen_at=now, resolved_at=None,
                       updated_at=now, transitions=(now,))
        events.append(_event(new, f"firing ({sev_name(new.severity)}): {alert.summary}", now, **ctx))
        kinds = _want(new, now)
        return Outcome(_notified(new, kinds), events, kinds, ["fired"])

    if alert.firing and row.state == "firing":
        new = dataclasses.replace(row, last_seen_at=now, repeat_count=row.repeat_count + 1, summary=alert.summary,
                                  evidence=dict(alert.evidence), recommendation=alert.recommendation,
                                  updated_at=now)
        counters = ["deduplicated"]
        if int(alert.severity) != row.severity:
            new = dataclasses.replace(new, severity=int(alert.severity), updated_at=now)
            events.append(_event(new, f"severity {sev_name(row.severity)} -> {sev_name(new.severity)}", now,
                                 previous_severity=sev_name(row.severity), **ctx))
            counters.append("severity_changed")
        kinds = _want(new, now)
        return Outcome(_notified(new, kinds), events, kinds, counters)

    if not alert.firing and row.state == "resolved":
        return Outcome(None, counters=["deduplicated"])

    if not alert.firing:  # firing -> resolved
        new = dataclasses.replace(row, state="resolved", resolved_at=alert.ts, last_seen_at=now, updated_at=now,
                                  summary=alert.summary or row.summary)
        new = _flap(new, now, cfg, events)
        events.insert(0, _event(new, f"resolved: {new.summary}", now, **ctx))
        kinds = _want(new, now)
        counters = ["resolved"] + (["flapping_held"] if not kinds and new.flapping else [])
        return Outcome(_notified(new, kinds), events, kinds, counters)

    # resolved -> firing: a new episode.
    new = dataclasses.replace(row, state="firing", severity=int(alert.severity), rule=alert.rule,
                              summary=alert.summary, point_id=alert.point_id, device=alert.device,
                              zone=alert.zone, subject=alert.subject, evidence=dict(alert.evidence),
                              recommendation=alert.recommendation, episode=row.episode + 1,
                              started_at=alert.ts, opened_at=now, last_seen_at=now, resolved_at=None,
                              updated_at=now, repeat_count=0, acked_by=None, acked_at=None, ack_comment=None,
                              escalation_level=0, escalated_at=None)
    new = _flap(new, now, cfg, events)
    events.insert(0, _event(new, f"firing again ({sev_name(new.severity)}): {alert.summary}", now, **ctx))
    kinds = _want(new, now)
    counters = ["fired"] + (["flapping_held"] if not kinds and new.flapping else [])
    return Outcome(_notified(new, kinds), events, kinds, counters)


def acknowledge(row: AlertRow, user: str, comment: str, now: datetime) -> Outcome:
    """An operator acknowledges the alert: escalation stops for this episode."""
    new = dataclasses.replace(row, acked_by=user, acked_at=now, ack_comment=comment, updated_at=now)
    ev = _event(new, f"acknowledged by {user}" + (f": {comment}" if comment else ""), now, actor=user,
                comment=comment)
    ev = dataclasses.replace(ev, kind="operator")
    return Outcome(new, [ev], [], ["acked"])


def shelve(row: AlertRow, user: str, reason: str, until: datetime, now: datetime) -> Outcome:
    """An operator shelves the alert until `until`: notifications and escalation are held."""
    new = dataclasses.replace(row, shelved_by=user, shelved_at=now, shelved_until=until, shelve_reason=reason,
                              updated_at=now)
    ev = _event(new, f"shelved by {user} until {until.isoformat()}: {reason}", now, actor=user, reason=reason,
                until=until.isoformat())
    return Outcome(new, [dataclasses.replace(ev, kind="operator")], [], ["shelved"])


def unshelve(row: AlertRow, now: datetime, user: str | None = None) -> Outcome:
    """Shelving ends (by an operator, or expired when `user` is None); held state is sent."""
    new = dataclasses.replace(row, shelved_by=None, shelved_at=None, shelved_until=None, shelve_reason=None,
                              updated_at=now)
    if user is None:
        ev = _event(new, "shelving expired", now)
    else:
        ev = dataclasses.replace(_event(new, f"unshelved by {user}", now, actor=user), kind="operator")
    kinds = _want(new, now)
    return Outcome(_notified(new, kinds), [ev], kinds, ["unshelved"])


def maintain(row: AlertRow, now: datetime, cfg: AlertingConfig) -> Outcome:
    """Periodic checks of one row: shelving expiry, end of flapping, escalation."""
    events: list[Event] = []
    counters: list[str] = []
    new = row
    if new.shelved_until is not None and new.shelved_until <= now:
        out = unshelve(new, now)
        new, events, counters = out.row or new, out.events, out.counters
        new = dataclasses.replace(new, notified_state=row.notified_state, notified_severity=row.notified_severity)
    window = timedelta(seconds=cfg.flapping.window_s)
    if new.flapping and (not new.transitions or max(new.transitions) <= now - window):
        new = dataclasses.replace(new, flapping=False, updated_at=now)
        events.append(_event(new, f"stable for {cfg.flapping.window_s:g} s, no longer flapping ({new.state})",
                             now))
        counters.append("flapping_ended")
    kinds = _want(new, now)
    new = _notified(new, kinds)
    after = cfg.escalation.after(Severity(new.severity))
    if (after is not None and new.state == "firing" and new.acked_at is None and not is_quiet(new, now)
            and new.notified_state == "firing"):
        if new.escalated_at is None:
            due = new.opened_at + timedelta(seconds=after)
        elif cfg.escalation.repeat_s is not None:
            due = new.escalated_at + timedelta(seconds=cfg.escalation.repeat_s)
        else:
            due = None
        if due is not None and due <= now:
            new = dataclasses.replace(new, escalation_level=new.escalation_level + 1, escalated_at=now,
                                      updated_at=now)
            events.append(_event(new, f"escalated (level {new.escalation_level}): unacknowledged for "
                                      f"{(now - new.opened_at).total_seconds():.0f} s", now,
                                 level=new.escalation_level))
            kinds.append("escalation")
            counters.append("escalated")
    if new == row:
        return Outcome(None)
    return Outcome(new, events, kinds, counters)


def group_key(row: AlertRow, cfg: AlertingConfig, group_by: Sequence[str] | None = None) -> str:
    """The notification group of `row` (by zone and device by default)."""
    parts = [str(getattr(row, g) or "-") for g in (cfg.group_by if group_by is None else group_by)]
    return "/".join(parts)


def snapshot(row: AlertRow, kind: str, cfg: AlertingConfig, previous_severity: int | None = None) -> dict[str, Any]:
    """The outbox payload: the alert as the receivers should see it at enqueue time."""
    return {
        "id": row.id, "key": row.key, "rule": row.rule, "severity": sev_name(row.severity), "kind": kind,
        "state": row.state, "summary": row.summary, "point_id": row.point_id, "device": row.device,
        "zone": row.zone, "subject": row.subject, "evidence": row.evidence, "recommendation": row.recommendation,
        "episode": row.episode, "started_at": row.started_at.isoformat(),
        "resolved_at": row.resolved_at.isoformat() if row.resolved_at else None,
        "escalation_level": row.escalation_level,
        "previous_severity": sev_name(previous_severity) if previous_severity is not None else None,
        "url": f"{cfg.generator_url}/api/v1/alerts?key={quote(row.key, safe='')}",
    }
