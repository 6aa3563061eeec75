"""One Modbus TCP connection (pymodbus), with its exceptions translated into ours.

The only module of the driver that touches pymodbus' client. pymodbus' own reconnect and
retries are switched off: the driver decides when to reconnect (after a timeout streak or
any framing/transaction-id mismatch, the lesson of Telegraf #14317) and never retries a
request inside one cycle.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from core.errors import ConnectError, DriverError

_READERS = {
    "holding": "read_holding_registers",
    "input": "read_input_registers",
    "coil": "read_coils",
    "discrete": "read_discrete_inputs",
}

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


class RequestTimeout(DriverError):
    """A device did not answer one request within its timeout."""


class ExceptionAnswer(DriverError):
    """The device answered a request with a Modbus exception (`code`)."""

    def __init__(self, source: str, message: str, code: int) -> None:
        self.code = code
        super().__init__(source, message)


class Desync(DriverError):
    """The answer did not match the request (transaction id, unit id, framing): reconnect."""


def quiet_library_logs() -> None:
    """pymodbus logs an ERROR line per skipped stale frame and per timeout; we count those."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class Connection:
    """A TCP connection to one endpoint (gateway or meter); one request in flight at a time.

    `read()` raises `RequestTimeout`, `ExceptionAnswer`, `Desync` or `ConnectError`; after
    `Desync` or `ConnectError` the connection is closed and must be reopened.
    """

    def __init__(self, source: str, host: str, port: int, *, connect_timeout_s: float) -> None:
        self.source = source
        self.host = host
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self._client: AsyncModbusTcpClient | None = None
        self.timeouts_in_a_row = 0

    @property
    def endpoint(self) -> str:
        """host:port."""
        return f"{self.host}:{self.port}"

    @property
    def is_open(self) -> bool:
        """True while the TCP connection is up."""
        return self._client is not None and self._client.connected

    async def open(self) -> None:
        """Connect (closing any previous connection); raise `ConnectError` on failure."""
        self.close()
        # `timeout` also bounds pymodbus' wait for an answer: keep it large, the driver
        # enforces its own per-request timeout around each call.
        client = AsyncModbusTcpClient(self.host, port=self.port, timeout=self.connect_timeout_s,
                                      retries=0, reconnect_delay=0, name=f"gw-{self.endpoint}")
        try:
            async with asyncio.timeout(self.connect_timeout_s + 0.5):
                ok = await client.connect()
        except (TimeoutError, OSError, ModbusException) as e:
            client.close()
            raise ConnectError(self.source, f"cannot connect to {self.endpoint}: {e or type(e).__name__}") from e
        if not ok:
            client.close()
            raise ConnectError(self.source, f"cannot connect to {self.endpoint}")
        client.set_max_no_responses(1 << 30)  # we decide when to disconnect
        self._client = client
        self.timeouts_in_a_row = 0

    def close(self) -> None:
        """Close the connection (idempotent)."""
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # closing must never fail the caller
                pass
            self._client = None

    async def read(self, table: str, address: int, count: int, unit: int, timeout_s: float) -> list[int]:
        """Read `count` registers or bits of `table` at PDU `address` from unit `unit`."""
        client = self._client
        if client is None or not client.connected:
            self.close()
            raise ConnectError(self.source, f"not connected to {self.endpoint}")
        where = f"unit {unit} at {self.endpoint}: {table} {address}..{address + count - 1}"
        # pymodbus' own timeout (connect_timeout_s) must not fire first
        client.ctx.comm_params.timeout_connect = timeout_s + 5.0
        reader = getattr(client, _READERS[table])
        try:
            async with asyncio.timeout(timeout_s):
                rr = await reader(address, count=count, device_id=unit)
        except TimeoutError:
            self.timeouts_in_a_row += 1
            raise RequestTimeout(self.source, f"timeout after {timeout_s:g} s ({where})") from None
        except ConnectionException as e:
            self.close()
            raise ConnectError(self.source, f"connection lost ({where}): {e}") from e
        except ModbusIOException as e:
            self.close()
            raise Desync(self.source, f"bad answer ({where}): {e}") from e
        except ModbusException as e:
            self.close()
            raise Desync(self.source, f"bad answer ({where}): {e}") from e
        except OSError as e:
            self.close()
            raise ConnectError(self.source, f"connection error ({where}): {e}") from e
        self.timeouts_in_a_row = 0
        if rr.isError():
            code = int(getattr(rr, "exception_code", 0) or 0)
            name = EXCEPTION_NAMES.get(code, "unknown exception")
            raise ExceptionAnswer(self.source, f"exception {code} ({name}) ({where})", code)
        values: Sequence[int] | Sequence[bool]
        if table in ("coil", "discrete"):
            values = rr.bits
            if len(values) < count:
                self.close()
                raise Desync(self.source, f"short answer: {len(values)} of {count} bits ({where})")
            return [1 if b else 0 for b in values[:count]]
        values = rr.registers
        if len(values) != count:
            self.close()
            raise Desync(self.source, f"wrong answer length: {len(values)} of {count} registers ({where})")
        return list(values)
