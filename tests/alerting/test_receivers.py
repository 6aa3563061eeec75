"""Delivery to real receivers: Prometheus Alertmanager, an aiohttp webhook checking the HMAC
signature, and an aiosmtpd SMTP server with STARTTLS and AUTH. Each receiver is taken down for
a while and brought back: nothing is lost and nothing is delivered twice."""

from __future__ import annotations

import asyncio
import contextlib
import email
import hashlib
import hmac
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from alerting.config import AlertingConfig
from alerting.service import AlertingService
from core.records import Alert, Severity, utcnow
from storage.alerts import AlertStore
from storage.db import Database
from tests.conftest import free_port, wait_port

from .conftest import eventually

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SECRET = "hook-secret-4711"
SMTP_PASSWORD = "smtp-pass-0815"


def mk(key: str, firing: bool = True, device: str = "rtu1", severity: Severity = Severity.MAJOR) -> Alert:
    return Alert(key=key, rule=key.split(":")[0], severity=severity, firing=firing, ts=utcnow(),
                 summary=f"{key} {'on' if firing else 'off'}", device=device, zone="north", point_id=42,
                 evidence={"value": 251.3, "limit": 250.0}, recommendation="check the tap changer")


def make_config(receiver: dict[str, Any], **extra: Any) -> AlertingConfig:
    raw: dict[str, Any] = {"receivers": [receiver], "poll_interval_s": 0.2,
                           "retry": {"initial_s": 0.2, "max_s": 1.0}, "escalation": {"after_s": {}}}
    raw.update(extra)
    return AlertingConfig.model_validate(raw)


@contextlib.asynccontextmanager
async def running(svc: AlertingService) -> AsyncIterator[AlertingService]:
    task = asyncio.create_task(svc.run(), name="alerting")
    try:
        yield svc
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def idle(svc: AlertingService, receiver: str) -> bool:
    d = await svc.deliveries()
    r = next(x for x in d["receivers"] if x["name"] == receiver)
    return bool(r["pending"] == 0 and r["failed"] == 0)


# -- webhook ----------------------------------------------------------------------------------

class HookReceiver:
    """An aiohttp receiver that checks the signature; stop() and start() keep the port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.got: list[tuple[int, str, str]] = []
        self.bad_signatures = 0
        self.runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        ts = request.headers.get("X-GridWatch-Timestamp", "")
        expected = "sha256=" + hmac.new(SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-GridWatch-Signature", ""), expected):
            self.bad_signatures += 1
            return web.Response(status=401, text="bad signature")
        doc = json.loads(body)
        self.got += [(n["id"], n["kind"], n["alert"]["key"]) for n in doc["notifications"]]
        return web.Response(status=204)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/hook", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port, reuse_address=True).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def hook() -> AsyncIterator[HookReceiver]:
    h = HookReceiver()
    await h.start()
    try:
        yield h
    finally:
        await h.stop()


async def test_webhook_down_and_back_nothing_lost_or_duplicated(db: Database, hook: HookReceiver) -> None:
    cfg = make_config({"kind": "webhook", "name": "hook", "url": f"http://127.0.0.1:{hook.port}/hook",
                       "secret": SECRET})
    svc = AlertingService(cfg, AlertStore(db))
    async with running(svc):
        await svc.submit([mk("hi:a"), mk("hi:b", device="rtu2")])
        await eventually(lambda: _true(len(hook.got) >= 2), what="first webhook deliveries")
        await eventually(lambda: idle(svc, "hook"), what="outbox idle")
        await hook.stop()
        await svc.submit([mk("hi:a", firing=False)])
        await svc.submit([mk("hi:c", device="rtu3")])
        await eventually(lambda: _true(svc.stats.failed["hook"] >= 2), what="failed attempts while down")
        assert len(hook.got) == 2
        await hook.start()
        await eventually(lambda: _true(len(hook.got) >= 4), what="deliveries after the receiver came back")
        await eventually(lambda: idle(svc, "hook"), what="outbox idle")
        await asyncio.sleep(1.0)  # a few more loop passes: nothing may arrive twice
    assert hook.bad_signatures == 0
    assert sorted((k, key) for _, k, key in hook.got) == [("firing", "hi:a"), ("firing", "hi:b"),
                                                          ("firing", "hi:c"), ("resolved", "hi:a")]
    ids = [i for i, _, _ in hook.got]
    assert len(ids) == len(set(ids))
    order = [k for _, k, key in hook.got if key == "hi:a"]
    assert order == ["firing", "resolved"]
    assert svc.stats.delivered["hook"] == 4


async def test_two_daemons_on_one_database_deliver_each_notification_once(db: Database,
                                                                          hook: HookReceiver) -> None:
    cfg = make_config({"kind": "webhook", "name": "hook", "url": f"http://127.0.0.1:{hook.port}/hook",
                       "secret": SECRET}, batch_size=5)
    a, b = AlertingService(cfg, AlertStore(db)), AlertingService(cfg, AlertStore(db))
    async with running(a), running(b):
        for i in range(0, 40, 8):
            await (a if i % 16 else b).submit([mk(f"hi:p{j}", device=f"rtu{j % 10}") for j in range(i, i + 8)])
        await a.submit([mk(f"hi:p{j}", firing=False, device=f"rtu{j % 10}") for j in range(0, 40, 4)])
        await eventually(lambda: _true(len(hook.got) >= 50), what="50 notifications")
        await eventually(lambda: idle(a, "hook"), what="outbox idle")
        await asyncio.sleep(1.0)
    ids = [i for i, _, _ in hook.got]
    assert len(ids) == 50 and len(set(ids)) == 50
    print("delivered by a, b:", a.stats.delivered["hook"], b.stats.delivered["hook"])
    assert a.stats.delivered["hook"] + b.stats.delivered["hook"] == 50
    for j in range(0, 40, 4):
        assert [k for _, k, key in hook.got if key == f"hi:p{j}"] == ["firing", "resolved"]


async def test_webhook_wrong_secret_is_refused_and_secret_never_shown(db: Database, hook: HookReceiver) -> None:
    cfg = make_config({"kind": "webhook", "name": "hook", "url": f"http://127.0.0.1:{hook.port}/hook",
                       "secret": "not-the-secret-9999"})
    svc = AlertingService(cfg, AlertStore(db))
    async with running(svc):
        await svc.submit([mk("hi:a")])
        await eventually(lambda: _true(hook.bad_signatures >= 1 and svc.stats.failed["hook"] >= 1),
                         what="refused delivery")
        d = await svc.deliveries()
    assert hook.got == []
    text = json.dumps(d, default=str) + repr(svc.stats) + repr(cfg)
    assert "HTTP 401" in text
    assert "not-the-secret-9999" not in text
    assert d["receivers"][0]["pending"] == 1  # kept for a later retry, not lost


async def _true(v: bool) -> bool:
    return v


# -- e-mail -----------------------------------------------------------------------------------

def _self_signed(tmp: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed (needed to make a self-signed certificate)")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


class SmtpReceiver:
    """aiosmtpd with STARTTLS required and AUTH; stop() and start() keep the port."""

    def __init__(self, cert: Path, key: Path) -> None:
        self.port = free_port()
        self.cert, self.key = cert, key
        self.messages: list[email.message.Message] = []
        self.logins: list[tuple[str, str]] = []
        self.tls_sessions = 0
        self.lock = threading.Lock()
        self.controller: Any = None

    def start(self) -> None:
        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult, LoginPassword

        outer = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                with outer.lock:
                    if session.ssl:
                        outer.tls_sessions += 1
                    outer.messages.append(email.message_from_bytes(envelope.content))
                return "250 OK"

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
            if isinstance(data, LoginPassword):
                with outer.lock:
                    outer.logins.append((data.login.decode(), data.password.decode()))
                ok = data.login == b"gridwatch" and data.password == SMTP_PASSWORD.encode()
                return AuthResult(success=ok)
            return AuthResult(success=False)

        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.cert), str(self.key))
        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port, tls_context=ctx,
                                     require_starttls=True, authenticator=authenticator, auth_require_tls=True,
                                     ready_timeout=30.0)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def notifications(self) -> list[int]:
        with self.lock:
            return [int(i) for m in self.messages for i in str(m["X-GridWatch-Notifications"]).split(",")]


@pytest.fixture
def smtp(tmp_path: Path) -> Iterator[SmtpReceiver]:
    pytest.importorskip("aiosmtpd")
    cert, key = _self_signed(tmp_path)
    s = SmtpReceiver(cert, key)
    s.start()
    try:
        yield s
    finally:
        s.stop()


async def test_email_starttls_down_and_back(db: Database, smtp: SmtpReceiver,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_SMTP_PASSWORD", SMTP_PASSWORD)
    cfg = make_config({"kind": "email", "name": "mail", "host": "127.0.0.1", "port": smtp.port,
                       "starttls": True, "ca_file": str(smtp.cert), "user": "gridwatch",
                       "password_env": "GW_TEST_SMTP_PASSWORD", "from": "gridwatch@example.org",
                       "to": ["oncall@example.org"], "timeout_s": 20})
    svc = AlertingService(cfg, AlertStore(db))
    async with running(svc):
        await svc.submit([mk("hi:a"), mk("hi:b")])  # same zone and device: one e-mail
        await eventually(lambda: _true(len(smtp.notifications()) >= 2), what="first e-mail")
        await eventually(lambda: idle(svc, "mail"), what="outbox idle")
        assert len(smtp.messages) == 1
        await asyncio.to_thread(smtp.stop)
        await svc.submit([mk("hi:a", firing=False)])
        await eventually(lambda: _true(svc.stats.failed["mail"] >= 2), what="failed attempts while down")
        await asyncio.to_thread(smtp.start)
        await eventually(lambda: _true(len(smtp.notifications()) >= 3), what="e-mail after the server came back")
        await eventually(lambda: idle(svc, "mail"), what="outbox idle")
        await asyncio.sleep(1.0)
    ids = smtp.notifications()
    assert len(ids) == 3 and len(set(ids)) == 3
    assert smtp.tls_sessions == len(smtp.messages) == 2
    assert smtp.logins and all(login == ("gridwatch", SMTP_PASSWORD) for login in smtp.logins)
    first, second = smtp.messages
    assert "FIRING" in str(first["Subject"]) and "(+1 more)" in str(first["Subject"])
    assert "RESOLVED" in str(second["Subject"]) and "north/rtu1" in str(second["Subject"])
    body = second.get_payload(decode=True)
    assert isinstance(body, bytes) and b"check the tap changer" in body
    assert SMTP_PASSWORD not in json.dumps(await svc.deliveries(), default=str) + repr(svc.stats)


async def test_email_without_starttls_is_refused_by_a_server_requiring_it(db: Database, smtp: SmtpReceiver) -> None:
    cfg = make_config({"kind": "email", "name": "mail", "host": "127.0.0.1", "port": smtp.port,
                       "starttls": False, "from": "gridwatch@example.org", "to": ["oncall@example.org"]})
    svc = AlertingService(cfg, AlertStore(db))
    async with running(svc):
        await svc.submit([mk("hi:a")])
        await eventually(lambda: _true(svc.stats.failed["mail"] >= 1), what="refused e-mail")
    assert smtp.messages == []
    assert "SMTP 530" in svc.stats.last_error["mail"]


# -- Alertmanager ------------------------------------------------------------------------------

AM_BINARY = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


class Alertmanager:
    """A real Alertmanager on a free port, clustering off, storage in tmp; restart keeps the port."""

    def __init__(self, workdir: Path) -> None:
        assert AM_BINARY is not None
        self.port = free_port()
        self.workdir = workdir
        self.conf = workdir / "alertmanager.yml"
        self.conf.write_text("route:\n  receiver: blackhole\n  group_wait: 1s\n  group_interval: 1s\n"
                             "receivers:\n  - name: blackhole\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "alertmanager.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        assert AM_BINARY is not None
        (self.workdir / "data").mkdir(exist_ok=True)
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [AM_BINARY, f"--config.file={self.conf}", f"--storage.path={self.workdir / 'data'}",
                 f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address=",
                 "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT)
        wait_port(self.port, timeout=60)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[Alertmanager]:
    if AM_BINARY is None:
        pytest.skip("prometheus-alertmanager not installed (Debian package prometheus-alertmanager)")
    am = Alertmanager(tmp_path)
    am.start()
    try:
        yield am
    finally:
        am.stop()


async def am_alerts(am: Alertmanager) -> dict[str, dict[str, Any]]:
    """Alerts Alertmanager itself considers active (resolved ones are not listed), by key."""
    return {a["labels"]["key"]: a for a in await am_list(am)}


async def am_list(am: Alertmanager) -> list[dict[str, Any]]:
    """Every GridWatch alert Alertmanager lists as not resolved."""
    try:
        async with aiohttp.ClientSession() as s, \
                s.get(f"{am.url}/api/v2/alerts", timeout=aiohttp.ClientTimeout(total=10)) as r:
            if r.status != 200:
                return []
            data = await r.json()
    except (aiohttp.ClientError, TimeoutError):
        return []
    return [a for a in data if a["labels"].get("source") == "gridwatch"]


async def test_alertmanager_firing_resolved_and_restart(db: Database, alertmanager: Alertmanager) -> None:
    cfg = make_config({"kind": "alertmanager", "name": "am", "url": alertmanager.url, "resend_s": 2},
                      generator_url="http://gridwatch.test:8080")
    svc = AlertingService(cfg, AlertStore(db), instance="gw-test")

    async def shows(active: set[str], absent: set[str]) -> bool:
        got = await am_alerts(alertmanager)
        return (all(k in got and got[k]["status"]["state"] == "active" for k in active)
                and not (absent & set(got)))

    async with running(svc):
        await svc.submit([mk("hi:k1"), mk("hi:k2", device="rtu2")])
        await eventually(lambda: shows({"hi:k1", "hi:k2"}, set()), what="k1, k2 firing in Alertmanager")
        got = await am_alerts(alertmanager)
        a = got["hi:k1"]
        assert a["labels"]["alertname"] == "hi" and a["labels"]["severity"] == "major"
        assert a["labels"]["device"] == "rtu1" and a["labels"]["zone"] == "north"
        assert a["labels"]["instance"] == "gw-test" and a["labels"]["point_id"] == "42"
        assert a["annotations"]["summary"] == "hi:k1 on"
        assert a["generatorURL"].startswith("http://gridwatch.test:8080/")
        await svc.submit([mk("hi:k1", firing=False)])
        await eventually(lambda: shows({"hi:k2"}, {"hi:k1"}), what="k1 resolved in Alertmanager")

        # A severity change: the old label set ends, the new one fires (one alert for k2).
        await svc.submit([mk("hi:k2", device="rtu2", severity=Severity.CRITICAL)])

        async def k2_critical_only() -> bool:
            k2 = [a for a in await am_list(alertmanager) if a["labels"]["key"] == "hi:k2"]
            return len(k2) == 1 and k2[0]["labels"]["severity"] == "critical"
        await eventually(k2_critical_only, what="k2 re-labelled critical in Alertmanager")

        await asyncio.to_thread(alertmanager.stop)
        await svc.submit([mk("hi:k3", device="rtu3"),
                          mk("hi:k2", firing=False, device="rtu2", severity=Severity.CRITICAL)])
        await eventually(lambda: _true(svc.stats.failed["am"] >= 2), what="failed attempts while down")
        await asyncio.to_thread(alertmanager.start)  # a fresh process: it remembers no alerts
        await eventually(lambda: shows({"hi:k3"}, {"hi:k1", "hi:k2"}), what="k3 firing after restart")
        await eventually(lambda: idle(svc, "am"), what="outbox idle")
        # Re-sent periodically, so Alertmanager keeps it firing with a fresh endsAt.
        await asyncio.sleep(2.5)
        assert await shows({"hi:k3"}, {"hi:k1", "hi:k2"})
    rows = await svc.store.list_deliveries(receiver="am", limit=100)
    assert sorted((r["alert_key"], r["kind"], r["status"]) for r in rows) == [
        ("hi:k1", "firing", "delivered"), ("hi:k1", "resolved", "delivered"), ("hi:k2", "firing", "delivered"),
        ("hi:k2", "firing", "delivered"), ("hi:k2", "resolved", "delivered"), ("hi:k3", "firing", "delivered")]
    assert svc.stats.delivered["am"] == 6
