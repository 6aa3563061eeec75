"""Driver logic without a network: malformed APDUs, unmapped and mixed-type accounting."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

from core.interfaces import DriverContext, SourceHealth
from protocols.iec104 import decode as d
from protocols.iec104.driver import Iec104Driver
from simulators.iec104 import PointDef
from tests.protocols.iec104.conftest import resolve


def _apdu(tid: int, ioa: int, element: bytes, cot: int = 3, ca: int = 1) -> bytes:
    body = bytes([tid, 1, cot, 0, ca, 0]) + ioa.to_bytes(3, "little") + element
    return bytes([0x68, 4 + len(body), 0, 0, 0, 0]) + body


def _driver() -> tuple[Iec104Driver, SourceHealth, list[tuple[str, str, bytes]]]:
    health = SourceHealth("rtu")
    dead: list[tuple[str, str, bytes]] = []
    ctx = DriverContext(clock=lambda: datetime.now(UTC), health=health,
                        dead_letter=lambda s, r, p: dead.append((s, r, p)))
    drv = Iec104Driver(resolve([2404], [1], [PointDef(1, 5)]), ctx)
    return drv, health, dead


def test_malformed_apdu_is_counted_and_kept() -> None:
    drv, health, dead = _driver()
    link = drv.rtus[0].links[0]
    bad = _apdu(d.M_ME_NC_1, 5, struct.pack("<fB", 1.0, 0))
    bad = bad[:7] + bytes([3]) + bad[8:]  # claims 3 objects
    drv._on_raw(link, None, bad)  # type: ignore[arg-type]
    assert health.counters["decode_errors"] == 1 and health.counters["errors"] == 1
    assert dead and dead[0][0] == "rtu" and "M_ME_NC_1 with 3 objects" in dead[0][1] and dead[0][2] == bad
    assert health.last_error.startswith("rtu/ep0: asdu: M_ME_NC_1")


def test_unmapped_and_mixed_types_without_network() -> None:
    drv, health, _ = _driver()
    link = drv.rtus[0].links[0]
    drv._on_raw(link, None, _apdu(d.M_ME_NC_1, 5, struct.pack("<fB", 1.0, 0), cot=20))  # type: ignore[arg-type]
    now = datetime.now(UTC).replace(microsecond=0)
    tf = _apdu(d.M_ME_TF_1, 5, struct.pack("<fB", 2.0, 0) + d.encode_cp56(now))
    drv._on_raw(link, None, tf)  # type: ignore[arg-type]
    drv._on_raw(link, None, tf)  # type: ignore[arg-type]  # the same time-tagged value again
    for _ in range(3):
        drv._on_raw(link, None, _apdu(d.M_SP_NA_1, 77, b"\x01"))  # type: ignore[arg-type]
    got = drv._pending
    assert [(s.key, s.value) for s in got] == [("1/5", 1.0), ("1/5", 2.0), ("1/77", 1.0), ("1/77", 1.0),
                                               ("1/77", 1.0)]
    assert got[1].device_ts == now
    assert health.counters["mismatched_type"] == 1
    assert health.counters["unmapped"] == 1
    assert health.counters["duplicates"] == 1
