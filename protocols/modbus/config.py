"""Configuration models of the Modbus TCP source: source, device and point options.

Validated once by `core.config` (frozen, unknown keys are errors). A template's `options`
table is merged into each device's options, so a meter model can set its byte order,
request limits and address base once (see `configs/templates/`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Table = Literal["holding", "input", "coil", "discrete"]
DataType = Literal[
    "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "bitfield", "string", "bool",
]
ByteOrder = Literal["ABCD", "DCBA", "BADC", "CDAB"]

REGISTER_TABLES: frozenset[str] = frozenset({"holding", "input"})
BIT_TABLES: frozenset[str] = frozenset({"coil", "discrete"})

#: registers per data type (strings: computed from `length`)
TYPE_WORDS: dict[str, int] = {
    "int16": 1, "uint16": 1, "bitfield": 1, "bool": 1,
    "int32": 2, "uint32": 2, "float32": 2,
    "int64": 4, "uint64": 4, "float64": 4,
}


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SourceOptions(_Model):
    """Options of a `kind = "modbus"` source; devices inherit host/port/interval/timeouts.

    Connections: every (host, port) endpoint is a gateway or a meter; all unit ids behind it
    share at most `max_connections_per_endpoint` TCP connections with one request in flight
    on each; `max_connections_per_host` caps the connections to one IP address (all its
    ports), `max_connections` the whole source. A device that stopped answering is probed
    with a doubling period (interval, 2x, 4x ...) up to `dead_probe_max_s` (never less often
    than its own interval); the slots in between yield COMM_FAIL samples at once.
    """

    host: str | None = None
    port: int = Field(502, ge=1, le=65535)
    interval_s: float = Field(900.0, gt=0)
    stagger_s: float | None = Field(None, ge=0)
    read_on_start: bool = False
    timeout_s: float = Field(2.0, gt=0)
    connect_timeout_s: float = Field(3.0, gt=0)
    max_registers: int = Field(125, ge=1, le=125)
    max_bits: int = Field(2000, ge=1, le=2000)
    max_gap: int = Field(8, ge=0, le=124)
    max_connections_per_endpoint: int = Field(1, ge=1, le=64)
    max_connections_per_host: int = Field(64, ge=1)
    max_connections: int = Field(4096, ge=1)
    idle_close_s: float = Field(30.0, ge=0)
    reconnect_after_timeouts: int = Field(2, ge=1)
    backoff_initial_s: float = Field(1.0, gt=0)
    backoff_max_s: float = Field(60.0, gt=0)
    bad_address_ttl_s: float = Field(86400.0, gt=0)
    dead_probe_max_s: float = Field(60.0, gt=0)
    queue_batches: int = Field(10_000, ge=1)
    quiet_library_logs: bool = True


class DeviceOptions(_Model):
    """Per-device options (a template's `options` table is merged in first).

    `address_base = 1` lets a register map be written as the vendor documents it
    (register 1 = PDU address 0). `host`/`port`/`interval_s`/`timeout_s` default to the source.
    """

    host: str | None = None
    port: int | None = Field(None, ge=1, le=65535)
    unit_id: int = Field(1, ge=0, le=255)
    interval_s: float | None = Field(None, gt=0)
    timeout_s: float | None = Field(None, gt=0)
    max_registers: int | None = Field(None, ge=1, le=125)
    max_gap: int | None = Field(None, ge=0, le=124)
    byte_order: ByteOrder = "ABCD"
    address_base: Literal[0, 1] = 0
    model: str = ""
    vendor_map: str = ""


class PointOptions(_Model):
    """Where one point lives in the device and how its registers decode.

    `table`: holding / input registers, coils / discrete inputs. `address`: as written in
    the map (see `DeviceOptions.address_base`). `type`: int16 ... float64, `bitfield` (one
    `bit` 0..15 of a register), `string` (`length` characters, two per register; strings are
    not samples: the driver keeps them as device info), `bool` for coils and discrete inputs.
    `byte_order` overrides the device's. `rollover` (counters) is the modulus at which the
    raw counter wraps; default: the type's range (2**16, 2**32, 2**64).
    """

    table: Table = "holding"
    address: int = Field(ge=0, le=65535)
    type: DataType = "uint16"
    byte_order: ByteOrder | None = None
    bit: int | None = Field(None, ge=0, le=15)
    length: int | None = Field(None, ge=1, le=246)
    rollover: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _consistent(self) -> PointOptions:
        if self.table in BIT_TABLES:
            if self.type not in ("bool", "uint16"):
                raise ValueError(f"a {self.table} point is a single bit: type must be 'bool', not {self.type!r}")
        elif self.type == "bool":
            raise ValueError("type 'bool' is only for coil and discrete points; use 'bitfield' with 'bit'")
        if self.type == "bitfield" and self.bit is None:
            raise ValueError("type 'bitfield' needs 'bit' (0..15)")
        if self.type != "bitfield" and self.bit is not None:
            raise ValueError("'bit' is only for type 'bitfield'")
        if self.type == "string" and self.length is None:
            raise ValueError("type 'string' needs 'length' (characters)")
        if self.type != "string" and self.length is not None:
            raise ValueError("'length' is only for type 'string'")
        end = self.address + self.words - 1
        if end > 65535 + 1:  # address_base may shift by one
            raise ValueError(f"point spans past register 65535 (address {self.address} + {self.words} words)")
        return self

    @property
    def words(self) -> int:
        """Registers (or bits, for bit tables) the point occupies."""
        if self.table in BIT_TABLES:
            return 1
        if self.type == "string":
            return ((self.length or 0) + 1) // 2
        return TYPE_WORDS[self.type]

    @property
    def is_bit(self) -> bool:
        """True for coils and discrete inputs."""
        return self.table in BIT_TABLES
