"""Unit tests of the pure alert state machine (no I/O)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from alerting import lifecycle
from alerting.config import AlertingConfig
from core.records import Alert, Severity
from storage.alerts import AlertRow

T0 = datetime(2026, 1, 1, tzinfo=UTC)
CFG = AlertingConfig.model_validate({"flapping": {"window_s": 600, "transitions": 4},
                                     "escalation": {"after_s": {"critical": 60}, "repeat_s": 120}})


def alert(firing: bool = True, severity: Severity = Severity.MAJOR, key: str = "hi:p1") -> Alert:
    return Alert(key=key, rule="hi", severity=severity, firing=firing, ts=T0, summary="voltage high",
                 point_id=1, device="rtu1", zone="north")


def stored(row: AlertRow | None) -> AlertRow:
    assert row is not None
    return dataclasses.replace(row, id=row.id or 7)


def test_new_firing_notifies_and_journals() -> None:
    out = lifecycle.apply_alert(None, alert(), T0, CFG)
    assert out.notify == ["firing"]
    assert out.row is not None and out.row.state == "firing" and out.row.notified_state == "firing"
    assert [e.kind for e in out.events] == ["alert"]
    assert "firing" in out.events[0].message


def test_resolved_for_unknown_key_is_ignored() -> None:
    out = lifecycle.apply_alert(None, alert(firing=False), T0, CFG)
    assert out.row is None and out.notify == [] and out.counters == ["resolved_unknown"]


def test_repeated_firing_is_deduplicated() -> None:
    row = stored(lifecycle.apply_alert(None, alert(), T0, CFG).row)
    out = lifecycle.apply_alert(row, alert(), T0 + timedelta(seconds=5), CFG)
    assert out.notify == [] and out.events == []
    assert out.row is not None and out.row.repeat_count == 1


def test_severity_change_renotifies() -> None:
    row = stored(lifecycle.apply_alert(None, alert(), T0, CFG).row)
    out = lifecycle.apply_alert(row, alert(severity=Severity.CRITICAL), T0 + timedelta(seconds=5), CFG)
    assert out.notify == ["firing"]
    assert out.row is not None and out.row.severity == Severity.CRITICAL
    assert "severity" in out.events[0].message


def test_resolve_then_new_episode_resets_ack() -> None:
    row = stored(lifecycle.apply_alert(None, alert(), T0, CFG).row)
    row = stored(lifecycle.acknowledge(row, "op", "on it", T0 + timedelta(seconds=1)).row)
    out = lifecycle.apply_alert(row, alert(firing=False), T0 + timedelta(seconds=2), CFG)
    assert out.notify == ["resolved"]
    row = stored(out.row)
    out = lifecycle.apply_alert(row, alert(), T0 + timedelta(seconds=3), CFG)
    assert out.notify == ["firing"]
    assert out.row is not None and out.row.episode == 2 and out.row.acked_by is None


def test_flapping_holds_notifications_until_stable() -> None:
    row = stored(lifecycle.apply_alert(None, alert(), T0, CFG).row)
    sent: list[str] = []
    t = T0
    for i in range(6):
        t += timedelta(seconds=10)
        out = lifecycle.apply_alert(row, alert(firing=i % 2 == 1), t, CFG)
        sent += out.notify
        row = stored(out.row)
    # transitions at T0, +10 (resolved), +20 (firing), +30 (resolved): the 4th makes it flap.
    assert sent == ["resolved", "firing"]
    assert row.flapping and row.state == "firing" and row.notified_state == "firing"
    # Still within the window: nothing happens.
    assert lifecycle.maintain(row, t + timedelta(seconds=60), CFG).row is None
    # Resolve while flapping: held.
    out = lifecycle.apply_alert(row, alert(firing=False), t + timedelta(seconds=70), CFG)
    assert out.notify == [] and "flapping_held" in out.counters
    row = stored(out.row)
    # Stable for a window: flapping ends and the held state (resolved) is sent.
    out = lifecycle.maintain(row, t + timedelta(seconds=70 + 601), CFG)
    assert out.row is not None and not out.row.flapping
    assert out.notify == ["resolved"] and out.row.notified_state == "resolved"


def test_shelving_holds_then_expiry_sends_current_state() -> None:
    row = stored(lifecycle.apply_alert(None, alert(), T0, CFG).row)
    row = stored(lifecycle.shelve(row, "op", "maintenance", T0 + timedelta(hours=1), T0).row)
    out = lifecycle.apply_alert(row, alert(firing=False), T0 + timedelta(minutes=5), CFG)
    assert out.notify == []
    row = stored(out.row)
    assert lifecycle.maintain(row, T0 + timedelta(minutes=30), CFG).row is None
    out = lifecycle.maintain(row, T0 + timedelta(hours=1, seconds=1), CFG)
    assert out.row is not None and out.row.shelved_until is None
    assert out.notify == ["resolved"]
    assert any("shelving expired" in e.message for e in out.events)


def test_escalation_when_unacknowledged_and_repeat() -> None:
    row = stored(lifecycle.apply_alert(None, alert(severity=Severity.CRITICAL), T0, CFG).row)
    assert lifecycle.maintain(row, T0 + timedelta(seconds=59), CFG).row is None
    out = lifecycle.maintain(row, T0 + timedelta(seconds=61), CFG)
    assert out.notify == ["escalation"] and out.row is not None and out.row.escalation_level == 1
    row = stored(out.row)
    assert lifecycle.maintain(row, T0 + timedelta(seconds=150), CFG).row is None
    out = lifecycle.maintain(row, T0 + timedelta(seconds=182), CFG)
    assert out.notify == ["escalation"] and out.row is not None and out.row.escalation_level == 2


def test_no_escalation_when_acknowledged_or_not_configured() -> None:
    row = stored(lifecycle.apply_alert(None, alert(severity=Severity.CRITICAL), T0, CFG).row)
    acked = stored(lifecycle.acknowledge(row, "op", "", T0).row)
    assert lifecycle.maintain(acked, T0 + timedelta(hours=1), CFG).row is None
    minor = stored(lifecycle.apply_alert(None, alert(severity=Severity.MINOR), T0, CFG).row)
    assert lifecycle.maintain(minor, T0 + timedelta(hours=1), CFG).row is None


def test_group_key_by_zone_and_device() -> None:
    row = stored(lifecycle.apply_alert(None, alert(), T0, CFG).row)
    assert lifecycle.group_key(row, CFG) == "north/rtu1"
    cfg = AlertingConfig.model_validate({"group_by": ["zone"]})
    assert lifecycle.group_key(row, cfg) == "north"


@pytest.mark.parametrize("raw, needle", [
    ({"receivers": [{"kind": "webhook", "name": "w", "url": "http://x"}]}, "secret"),
    ({"receivers": [{"kind": "webhook", "name": "w", "url": "x", "secret": "s"}]}, "URL"),
    ({"receivers": [{"kind": "webhook", "name": "w", "url": "http://x", "secret_env": "GW_NOPE_NOT_SET"}]},
     "GW_NOPE_NOT_SET"),
    ({"receivers": [{"kind": "email", "name": "e", "host": "h", "from": "a@b", "to": ["c@d"], "user": "u",
                     "password": "p", "starttls": False}]}, "STARTTLS"),
    ({"receivers": [{"kind": "pager", "name": "p"}]}, "kind"),
    ({"escalation": {"receivers": ["nobody"]}}, "nobody"),
    ({"retry": {"initial_s": 0}}, "initial_s"),
    ({"flapping": {"windows": 3}}, "windows"),
])
def test_config_errors_are_clear(raw: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        AlertingConfig.model_validate(raw)


def test_secrets_not_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_HOOK_SECRET", "s3cr3t-value")
    monkeypatch.setenv("GW_TEST_SMTP_PW", "pw-value-123")
    cfg = AlertingConfig.model_validate({"receivers": [
        {"kind": "webhook", "name": "w", "url": "http://x", "secret_env": "GW_TEST_HOOK_SECRET"},
        {"kind": "email", "name": "e", "host": "h", "from": "a@b", "to": ["c@d"], "user": "u",
         "password_env": "GW_TEST_SMTP_PW"}]})
    text = repr(cfg) + str(cfg) + cfg.model_dump_json()
    assert "s3cr3t-value" not in text and "pw-value-123" not in text


def test_retry_delay_is_capped() -> None:
    cfg = AlertingConfig.model_validate({"retry": {"initial_s": 1, "factor": 2, "max_s": 10}})
    assert [cfg.retry.delay(n) for n in (1, 2, 3, 4, 5, 9)] == [1, 2, 4, 8, 10, 10]
