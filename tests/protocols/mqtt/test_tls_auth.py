"""TLS with a verified server certificate and username/password against a real mosquitto."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.errors import ConnectError
from tests.conftest import Broker, mosquitto_binary
from tests.protocols.mqtt.support import Consumer, make_driver, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture
def tls_dir() -> Iterator[Path]:
    """World-readable: mosquitto started as root reads its files as user mosquitto."""
    d = Path(tempfile.mkdtemp(prefix="gw-mqtt-tls-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def tls_broker(tls_dir: Path) -> Iterator[Broker]:
    binary = mosquitto_binary()
    openssl, passwd = shutil.which("openssl"), shutil.which("mosquitto_passwd")
    if binary is None or openssl is None or passwd is None:
        pytest.skip("needs mosquitto, mosquitto_passwd and openssl")
    cert, key, pw = tls_dir / "cert.pem", tls_dir / "key.pem", tls_dir / "passwd"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    subprocess.run([passwd, "-b", "-c", str(pw), "gridwatch", "s3cret"], check=True, capture_output=True, timeout=30)
    for f in (cert, key, pw):
        f.chmod(0o644)
    broker = Broker(binary, tls_dir)
    broker.conf.write_text(
        f"listener {broker.port} 127.0.0.1\n"
        f"cafile {cert}\ncertfile {cert}\nkeyfile {key}\n"
        f"allow_anonymous false\npassword_file {pw}\n"
        "log_dest none\n")
    broker.start()
    yield broker
    broker.stop()


TOPICS = [{"pattern": "amr/+meter/readings"}]


async def test_tls_and_password(tls_broker: Broker, tls_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_MQTT_PW", "s3cret")
    tls = {"ca_file": str(tls_dir / "cert.pem")}
    drv = make_driver(tls_broker.port, TOPICS, username="gridwatch", password_env="GW_TEST_MQTT_PW", tls=tls)
    publisher = make_driver(tls_broker.port, [{"pattern": "unused/+x"}], name="pub", username="gridwatch",
                            password="s3cret", tls=tls)
    async with Consumer(drv) as c:
        client = publisher._new_client()
        async with client:
            await client.publish("amr/m1/readings", b'{"p": 1.5}', qos=1)
        await wait_until(lambda: [(s.key, s.value) for s in c.samples] == [("m1/p", 1.5)], what="reading over TLS")


async def test_wrong_password_and_untrusted_ca_are_connect_errors(tls_broker: Broker, tls_dir: Path) -> None:
    tls = {"ca_file": str(tls_dir / "cert.pem")}
    bad_pw = make_driver(tls_broker.port, TOPICS, username="gridwatch", password="nope", tls=tls)
    async with bad_pw:
        with pytest.raises(ConnectError, match="cannot connect"):
            async for _ in bad_pw.samples():
                pass
    other_ca = make_driver(tls_broker.port, TOPICS, username="gridwatch", password="s3cret", tls={})  # system CAs
    async with other_ca:
        with pytest.raises(ConnectError, match="cannot connect"):
            async for _ in other_ca.samples():
                pass
