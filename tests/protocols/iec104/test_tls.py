"""TLS (IEC 62351-3 profile): configuration and wiring; the handshake itself is broken in
c104 2.2.1 (upstream issue #64)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from protocols.iec104.config import TlsOptions
from protocols.iec104.driver import _tls
from simulators.iec104 import Outstation, PointDef
from tests.protocols.iec104.conftest import Harness, resolve


def _certs(d: Path) -> dict[str, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=gw-test-ca",
        "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
    for name in ("rtu", "master"):
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.csr"))
        run("x509", "-req", "-in", str(d / f"{name}.csr"), "-CA", str(d / "ca.crt"), "-CAkey", str(d / "ca.key"),
            "-CAcreateserial", "-days", "2", "-copy_extensions", "copy", "-out", str(d / f"{name}.crt"))
    return {n: d / n for n in ("ca.crt", "rtu.crt", "rtu.key", "master.crt", "master.key")}


def test_tls_options_build_transport_security(tmp_path: Path) -> None:
    c = _certs(tmp_path)
    opts = TlsOptions(certificate=c["master.crt"], key=c["master.key"], ca=c["ca.crt"],
                      allowed_peers=[c["rtu.crt"]], only_known_peers=True)
    assert _tls(opts) is not None
    bad = TlsOptions(certificate=tmp_path / "missing.crt", key=c["master.key"])
    with pytest.raises(ValueError):
        _tls(bad)


@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest.mark.xfail(strict=True, reason="c104 2.2.1: TLS client handshake fails (upstream issue #64)")
async def test_tls_link_carries_data(tmp_path: Path, ports: list[int],
                                     outstation_factory: Callable[..., Outstation]) -> None:
    import c104

    c = _certs(tmp_path)

    def server_tls() -> c104.TransportSecurity:
        ts = c104.TransportSecurity(validate=True, only_known=False)
        ts.set_certificate(cert=str(c["rtu.crt"]), key=str(c["rtu.key"]))
        ts.set_ca_certificate(cert=str(c["ca.crt"]))
        return ts

    pts = [PointDef(1, 1, value=3.5)]
    outstation_factory(pts, ports[:1], tls=server_tls)
    tls = {"certificate": str(c["master.crt"]), "key": str(c["master.key"]), "ca": str(c["ca.crt"]),
           "allowed_peers": [str(c["rtu.crt"])]}
    h = Harness(resolve(ports[:1], [1], pts, tls=tls, connect_timeout_s=4))
    h.start()
    try:
        await h.wait(lambda: any(s.value == 3.5 for s in h.samples) or h.error is not None, "data over TLS",
                     timeout=20)
        assert h.error is None
        assert any(s.value == 3.5 for s in h.samples)
    finally:
        await h.stop()


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_outstation_tls_handshakes_with_openssl(tmp_path: Path, ports: list[int],
                                                outstation_factory: Callable[..., Outstation]) -> None:
    """The same certificates work with an independent TLS client: the failure above is c104's client."""
    import c104

    c = _certs(tmp_path)

    def server_tls() -> c104.TransportSecurity:
        ts = c104.TransportSecurity(validate=True, only_known=False)
        ts.set_certificate(cert=str(c["rtu.crt"]), key=str(c["rtu.key"]))
        ts.set_ca_certificate(cert=str(c["ca.crt"]))
        return ts

    outstation_factory([PointDef(1, 1)], ports[:1], tls=server_tls)
    from tests.conftest import wait_port

    wait_port(ports[0])
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{ports[0]}", "-CAfile", str(c["ca.crt"]),
                        "-cert", str(c["master.crt"]), "-key", str(c["master.key"]), "-brief"],
                       input=b"", capture_output=True, timeout=60)
    out = r.stderr.decode() + r.stdout.decode()
    assert "CONNECTION ESTABLISHED" in out and "Verification: OK" in out, out[-1000:]
