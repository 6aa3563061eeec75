"""The `[alerting]` configuration section, validated into frozen models.

Shape::

    [alerting]
    generator_url = "http://gridwatch.example:8080"   # links in notifications
    group_by = ["zone", "device"]
    [alerting.retry]       initial_s, max_s, factor, max_attempts (0 = retry forever)
    [alerting.flapping]    window_s, transitions
    [alerting.escalation]  after_s = {critical = 300, major = 900}, repeat_s, receivers
    [[alerting.receivers]] kind = "alertmanager", name, url, resend_s, min_severity
    [[alerting.receivers]] kind = "webhook", name, url, secret_env (or secret), min_severity
    [[alerting.receivers]] kind = "email", name, host, port, starttls, user, password_env,
                           from, to, min_severity

Secrets are `SecretStr` (never shown by `repr`, logs or the API); prefer `*_env` keys that
name an environment variable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from core.records import Severity

SEVERITY_NAMES = tuple(s.name.lower() for s in Severity)
SeverityName = Literal["info", "warning", "minor", "major", "critical"]


GroupBy = Literal["zone", "device", "subject", "rule"]


def _default_after() -> dict[SeverityName, float]:
    return {"critical": 300.0, "major": 900.0}


def _default_group_by() -> list[GroupBy]:
    return ["zone", "device"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _url(v: str) -> str:
    if not (v.startswith("http://") or v.startswith("https://")):
        raise ValueError("must be an http:// or https:// URL")
    return v.rstrip("/")


def _env_secret(value: SecretStr | None, env: str | None, what: str) -> SecretStr | None:
    if value is not None and env is not None:
        raise ValueError(f"give at most one of {what} and {what}_env")
    if env is not None:
        got = os.environ.get(env)
        if got is None:
            raise ValueError(f"{what}_env names environment variable {env!r}, which is not set")
        return SecretStr(got)
    return value


class _Receiver(_Model):
    name: str = Field(pattern=r"^[A-Za-z0-9_.\-]+$")
    min_severity: SeverityName = "info"
    group_by: list[GroupBy] | None = None  # None: [alerting] group_by
    timeout_s: float = Field(default=10.0, gt=0, le=300)
    enabled: bool = True

    @property
    def min_level(self) -> Severity:
        """`min_severity` as a `Severity`."""
        return Severity.parse(self.min_severity)


class AlertmanagerReceiver(_Receiver):
    """Prometheus Alertmanager (API v2). Firing alerts are re-sent every `resend_s`."""

    kind: Literal["alertmanager"]
    url: str
    resend_s: float = Field(default=60.0, gt=0)

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        return _url(v)


class WebhookReceiver(_Receiver):
    """A generic JSON webhook signed with HMAC-SHA256 (see docs/alerting.md)."""

    kind: Literal["webhook"]
    url: str
    secret: SecretStr | None = None
    secret_env: str | None = None
    signature_header: str = "X-GridWatch-Signature"

    @field_validator("url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        return _url(v)

    @model_validator(mode="after")
    def _secret(self) -> WebhookReceiver:
        resolved = _env_secret(self.secret, self.secret_env, "secret")
        if resolved is None:
            raise ValueError("a webhook needs secret_env (or secret) for its HMAC signature")
        object.__setattr__(self, "secret", resolved)
        return self


class EmailReceiver(_Receiver):
    """E-mail through an SMTP server, with STARTTLS unless `starttls = false`."""

    kind: Literal["email"]
    host: str
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    tls_verify: bool = True
    ca_file: Path | None = None
    user: str | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    from_addr: str = Field(alias="from", pattern=r"^[^@\s]+@[^@\s]+$")
    to: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = Field(min_length=1)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _password(self) -> EmailReceiver:
        resolved = _env_secret(self.password, self.password_env, "password")
        object.__setattr__(self, "password", resolved)
        if resolved is not None and self.user is None:
            raise ValueError("a password needs a user")
        if resolved is not None and not self.starttls:
            raise ValueError("refusing to send a password without STARTTLS (set starttls = true)")
        return self


Receiver = Annotated[AlertmanagerReceiver | WebhookReceiver | EmailReceiver, Field(discriminator="kind")]


class RetryConfig(_Model):
    """Exponential backoff of failed deliveries: initial_s * factor**(attempt-1), capped."""

    initial_s: float = Field(default=2.0, gt=0)
    max_s: float = Field(default=300.0, gt=0)
    factor: float = Field(default=2.0, ge=1)
    max_attempts: int = Field(default=0, ge=0)  # 0: retry forever, no alert is ever dropped

    def delay(self, attempts: int) -> float:
        """Seconds to wait after the `attempts`-th failed attempt."""
        return float(min(self.max_s, self.initial_s * self.factor ** max(0, attempts - 1)))


class FlappingConfig(_Model):
    """An alert with `transitions` state changes within `window_s` is flapping: its
    notifications are held until it has been stable for `window_s`."""

    window_s: float = Field(default=600.0, gt=0)
    transitions: int = Field(default=5, ge=2)


class EscalationConfig(_Model):
    """Escalate an alert that stays firing and unacknowledged for `after_s[severity]` seconds."""

    after_s: dict[SeverityName, float] = Field(default_factory=_default_after)
    repeat_s: float | None = Field(default=None, gt=0)
    receivers: list[str] | None = None  # None: every receiver except Alertmanager

    @field_validator("after_s")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        for k, s in v.items():
            if s <= 0:
                raise ValueError(f"after_s.{k} must be positive")
        return v

    def after(self, severity: Severity) -> float | None:
        """Seconds before escalation for `severity`, or None when it never escalates."""
        return self.after_s.get(severity.name.lower())  # type: ignore[call-overload,no-any-return]


class AlertingConfig(_Model):
    """The `[alerting]` section."""

    enabled: bool = True
    generator_url: str = "http://127.0.0.1:8080"
    group_by: list[GroupBy] = Field(default_factory=_default_group_by)
    receivers: list[Receiver] = Field(default_factory=list)
    retry: RetryConfig = Field(default_factory=RetryConfig)
    flapping: FlappingConfig = Field(default_factory=FlappingConfig)
    escalation: EscalationConfig = Field(default_factory=EscalationConfig)
    poll_interval_s: float = Field(default=1.0, gt=0, le=60)
    lease_s: float = Field(default=120.0, gt=0)
    batch_size: int = Field(default=200, ge=1, le=10_000)
    parallel_sends: int = Field(default=4, ge=1, le=64)
    outbox_keep_days: int = Field(default=30, ge=1)

    @field_validator("generator_url")
    @classmethod
    def _check_url(cls, v: str) -> str:
        return _url(v)

    @model_validator(mode="after")
    def _check(self) -> AlertingConfig:
        names = [r.name for r in self.receivers]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate receiver name(s): {', '.join(sorted(dup))}")
        for name in self.escalation.receivers or []:
            if name not in names:
                raise ValueError(f"escalation.receivers: unknown receiver {name!r}")
        for r in self.receivers:
            if r.kind != "alertmanager" and r.timeout_s >= self.lease_s:
                raise ValueError(f"receivers.{r.name}: timeout_s must be shorter than lease_s")
        return self
