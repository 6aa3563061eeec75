"""Senders for the three receiver kinds: Alertmanager API v2, signed webhook, e-mail.

A sender gets outbox rows (already grouped where the kind groups) and either delivers all of
them or raises `DeliveryError`, whose message is safe to store and show: it never contains a
secret, a password or URL credentials.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import smtplib
import ssl
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp

from alerting.config import AlertmanagerReceiver, EmailReceiver, WebhookReceiver
from core.errors import GridWatchError
from core.records import utcnow
from storage.alerts import AlertRow, OutboxRow


class DeliveryError(GridWatchError):
    """A receiver did not accept a notification; `retryable` is False for a 4xx refusal."""

    def __init__(self, receiver: str, message: str, *, retryable: bool = True) -> None:
        self.receiver = receiver
        self.retryable = retryable
        super().__init__(f"{receiver}: {message}")


def safe_url(url: str) -> str:
    """`url` without user info and query (which may hold credentials)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


class Sender(Protocol):
    """Delivers outbox rows to one receiver."""

    name: str
    grouped: bool

    async def send(self, rows: Sequence[OutboxRow]) -> None: ...

    async def close(self) -> None: ...


def _iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


class _Http:
    def __init__(self, name: str, timeout_s: float) -> None:
        self.name = name
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        return self._session

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> None:
        where = safe_url(url)
        try:
            async with self.session().post(url, data=body, headers=headers) as resp:
                if 200 <= resp.status < 300:
                    await resp.read()
                    return
                text = (await resp.text(errors="replace"))[:200]
                retry = resp.status >= 500 or resp.status in (408, 429)
                raise DeliveryError(self.name, f"HTTP {resp.status} from {where}: {text}", retryable=retry)
        except aiohttp.ClientError as e:
            raise DeliveryError(self.name, f"cannot reach {where}: {type(e).__name__}") from None
        except TimeoutError:
            raise DeliveryError(self.name, f"no answer from {where} within {self._timeout.total:g} s") from None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class AlertmanagerSender:
    """POSTs alerts to Alertmanager's `/api/v2/alerts`; firing alerts carry an `endsAt` of four
    re-send intervals ahead (as Prometheus does), resolved ones their resolution time."""

    grouped = False

    def __init__(self, cfg: AlertmanagerReceiver, generator_url: str, instance: str) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self.generator_url = generator_url
        self.instance = instance
        self._http = _Http(cfg.name, cfg.timeout_s)

    def labels(self, p: dict[str, Any], severity: str | None = None) -> dict[str, str]:
        """Alertmanager labels of a payload (empty values left out)."""
        raw = {"alertname": p["rule"], "key": p["key"], "severity": severity or p["severity"],
               "device": p.get("device") or "", "zone": p.get("zone") or "", "subject": p.get("subject") or "",
               "point_id": "" if p.get("point_id") is None else str(p["point_id"]), "instance": self.instance,
               "source": "gridwatch"}
        return {k: str(v) for k, v in raw.items() if v}

    def alert(self, p: dict[str, Any], now: datetime) -> list[dict[str, Any]]:
        """The Alertmanager alert objects for one payload."""
        ann = {"summary": p.get("summary") or p["key"]}
        if p.get("recommendation"):
            ann["recommendation"] = p["recommendation"]
        if p.get("evidence"):
            ann["evidence"] = json.dumps(p["evidence"], sort_keys=True, default=str)[:2000]
        base = {"annotations": ann, "startsAt": p["started_at"].replace("+00:00", "Z"),
                "generatorURL": f"{self.generator_url}/api/v1/alerts?key={quote(p['key'], safe='')}"}
        out: list[dict[str, Any]] = []
        if p["state"] == "resolved" or p.get("kind") == "resolved":
            ends = p.get("resolved_at") or now.isoformat()
            out.append({**base, "labels": self.labels(p), "endsAt": ends.replace("+00:00", "Z")})
            return out
        prev = p.get("previous_severity")
        if prev and prev != p["severity"]:  # the old label set must end, or it would fire on
            out.append({**base, "labels": self.labels(p, prev), "endsAt": _iso(now)})
        out.append({**base, "labels": self.labels(p),
                    "endsAt": _iso(now + timedelta(seconds=4 * self.cfg.resend_s))})
        return out

    async def post(self, alerts: list[dict[str, Any]]) -> None:
        """POST a list of alert objects."""
        if alerts:
            await self._http.post(f"{self.cfg.url}/api/v2/alerts", json.dumps(alerts).encode(),
                                  {"Content-Type": "application/json"})

    async def send(self, rows: Sequence[OutboxRow]) -> None:
        """Deliver rows; escalations are not sent (Alertmanager routes repeats itself)."""
        now = utcnow()
        alerts = [a for r in rows if r.kind != "escalation" for a in self.alert(dict(r.payload, kind=r.kind), now)]
        await self.post(alerts)

    async def resend(self, rows: Sequence[AlertRow], snapshot: Any) -> None:
        """Re-send the alerts Alertmanager was told are firing (keeps them from expiring)."""
        now = utcnow()
        await self.post([a for r in rows for a in self.alert(snapshot(r), now)])

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The webhook signature: `sha256=` + hex HMAC-SHA256 of `<timestamp>.<body>`."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


class WebhookSender:
    """POSTs one JSON document per group, signed in `X-GridWatch-Signature`."""

    grouped = True

    def __init__(self, cfg: WebhookReceiver) -> None:
        self.cfg = cfg
        self.name = cfg.name
        self._http = _Http(cfg.name, cfg.timeout_s)
        assert cfg.secret is not None
        self._secret = cfg.secret.get_secret_value().encode()

    def body(self, rows: Sequence[OutboxRow]) -> bytes:
        """The JSON document for a group of rows."""
        doc = {"version": 1, "source": "gridwatch", "group": rows[0].group_key,
               "notifications": [{"id": r.id, "kind": r.kind, "created_at": _iso(r.created_at),
                                  "alert": r.payload} for r in rows]}
        return json.dumps(doc, sort_keys=True, default=str).encode()

    async def send(self, rows: Sequence[OutboxRow]) -> None:
        """Deliver one group."""
        body = self.body(rows)
        ts = str(int(time.time()))
        headers = {"Content-Type": "application/json", "X-GridWatch-Timestamp": ts,
                   self.cfg.signature_header: sign(self._secret, ts, body),
                   "Idempotency-Key": f"gridwatch-outbox-{rows[0].id}-{rows[-1].id}"}
        await self._http.post(self.cfg.url, body, headers)

    async def close(self) -> None:
        """Close the HTTP session."""
        await self._http.close()


class EmailSender:
    """Sends one e-mail per group through SMTP (STARTTLS unless disabled), in a thread."""

    grouped = True

    def __init__(self, cfg: EmailReceiver) -> None:
        self.cfg = cfg
        self.name = cfg.name

    def message(self, rows: Sequence[OutboxRow]) -> EmailMessage:
        """The e-mail for a group of rows."""
        worst = max(rows, key=lambda r: _SEV.get(r.payload.get("severity", "info"), 0))
        p = worst.payload
        kinds = sorted({r.kind for r in rows})
        what = "ESCALATED" if "escalation" in kinds else ("FIRING" if "firing" in kinds else "RESOLVED")
        more = f" (+{len(rows) - 1} more)" if len(rows) > 1 else ""
        msg = EmailMessage()
        msg["Subject"] = f"[GridWatch {what} {p['severity'].upper()}] {rows[0].group_key}: {p['summary']}{more}"
        msg["From"] = self.cfg.from_addr
        msg["To"] = ", ".join(self.cfg.to)
        msg["Date"] = format_datetime(utcnow())
        msg["Message-ID"] = make_msgid(idstring=f"gridwatch-outbox-{rows[0].id}-{rows[-1].id}",
                                       domain="gridwatch.local")
        msg["X-GridWatch-Notifications"] = ",".join(str(r.id) for r in rows)
        lines = []
        for r in rows[:MAX_EMAIL_ITEMS]:
            a = r.payload
            lines.append(f"[{r.kind.upper()}] {a['severity'].upper()} {a['key']}\n"
                         f"  {a['summary']}\n"
                         f"  rule {a['rule']}, device {a.get('device') or '-'}, zone {a.get('zone') or '-'}, "
                         f"since {a['started_at']}" + (f", resolved {a['resolved_at']}" if a.get("resolved_at") else "")
                         + (f"\n  recommendation: {a['recommendation']}" if a.get("recommendation") else "")
                         + f"\n  {a.get('url', '')}\n")
        if len(rows) > MAX_EMAIL_ITEMS:
            lines.append(f"... and {len(rows) - MAX_EMAIL_ITEMS} more; see GET /api/v1/alerts")
        msg.set_content("\n".join(lines))
        return msg

    def _send_sync(self, msg: EmailMessage) -> None:
        c = self.cfg
        with smtplib.SMTP(c.host, c.port, timeout=c.timeout_s) as smtp:
            smtp.ehlo()
            if c.starttls:
                ctx = ssl.create_default_context(cafile=str(c.ca_file) if c.ca_file else None)
                if not c.tls_verify:
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                smtp.starttls(context=ctx)
                smtp.ehlo()
            if c.user is not None and c.password is not None:
                smtp.login(c.user, c.password.get_secret_value())
            smtp.send_message(msg)

    async def send(self, rows: Sequence[OutboxRow]) -> None:
        """Deliver one group."""
        msg = self.message(rows)
        where = f"{self.cfg.host}:{self.cfg.port}"
        try:
            await asyncio.to_thread(self._send_sync, msg)
        except smtplib.SMTPResponseException as e:
            raise DeliveryError(self.name, f"SMTP {e.smtp_code} from {where}",
                                retryable=e.smtp_code < 500 or e.smtp_code == 535) from None
        except smtplib.SMTPRecipientsRefused:
            raise DeliveryError(self.name, f"{where} refused the recipients", retryable=False) from None
        except ssl.SSLError as e:
            raise DeliveryError(self.name, f"TLS with {where} failed: {e.reason}") from None
        except (smtplib.SMTPException, OSError) as e:
            raise DeliveryError(self.name, f"cannot send through {where}: {type(e).__name__}") from None

    async def close(self) -> None:
        """Nothing to close (one connection per message)."""


MAX_EMAIL_ITEMS = 50
"""At most this many notifications are written out in one e-mail (all are counted)."""

_SEV = {"info": 0, "warning": 1, "minor": 2, "major": 3, "critical": 4}
