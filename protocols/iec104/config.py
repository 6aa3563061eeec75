"""Configuration models of the IEC 60870-5-104 driver (validated by core.config.load_config).

Source options hold the link and housekeeping settings; a source is either one RTU
(`endpoints` + `common_addresses` in the source options) or several RTUs as devices (each
device's options: `endpoints`, `common_addresses`). Point options name the common address
and IOA (`ca`, `ioa`); when absent they are read from the point key `"<ca>/<ioa>"`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from protocols.iec104.decode import MONITORING_TYPES, TYPE_IDS


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Endpoint(_Model):
    """One channel of an RTU (main, reserve): host and port."""

    host: str
    port: int = Field(2404, ge=1, le=65535)
    name: str = ""

    @property
    def label(self) -> str:
        return self.name or f"{self.host}:{self.port}"


class TlsOptions(_Model):
    """TLS (IEC 62351-3 profile): own certificate and key, CA, allowed peer certificates."""

    certificate: Path
    key: Path
    passphrase: str = ""
    ca: Path | None = None
    allowed_peers: list[Path] = Field(default_factory=list)
    validate_chain: bool = True
    only_known_peers: bool = False
    min_version: Literal["1.2", "1.3"] = "1.2"


class RtuOptions(_Model):
    """An RTU: its endpoints in priority order (first = main) and its common addresses."""

    endpoints: list[Endpoint] = Field(min_length=1)
    common_addresses: list[int] = Field(min_length=1)

    @field_validator("common_addresses")
    @classmethod
    def _ca_range(cls, v: list[int]) -> list[int]:
        for ca in v:
            if not 1 <= ca <= 65534:
                raise ValueError(f"common address {ca} out of range 1..65534 (65535 is broadcast)")
        if len(set(v)) != len(v):
            raise ValueError("common addresses must be unique")
        return v


class SourceOptions(_Model):
    """Options of an `iec104` source (every key documented in protocols/iec104/README.md)."""

    endpoints: list[Endpoint] = Field(default_factory=list)
    common_addresses: list[int] = Field(default_factory=list)
    # link behaviour
    switch_back: bool = True
    switch_back_delay_s: float = Field(30.0, ge=0)
    connect_timeout_s: float = Field(15.0, gt=0)
    down_grace_s: float = Field(10.0, ge=0)
    muted_watchdog_s: float = Field(1.0, gt=0)
    tick_rate_ms: int = Field(50, ge=50)
    command_timeout_ms: int = Field(5000, ge=100)
    k: int = Field(600, ge=1, le=32767)
    w: int = Field(400, ge=1, le=32767)
    t1_s: int = Field(15, ge=1)
    t2_s: int = Field(5, ge=1)
    t3_s: int = Field(20, ge=1)
    # housekeeping
    clock_sync: bool = True
    clock_sync_min: float = Field(60.0, ge=0)
    gi_interval_min: float = Field(15.0, ge=0)
    gi_timeout_s: float = Field(30.0, gt=0)
    counter_mode: Literal["off", "read", "freeze_read", "freeze_reset_read"] = "read"
    counter_interval_min: int = Field(15, ge=1, le=1440)
    check_gi_complete: bool = True
    # data path
    auto_register: bool = False
    batch_ms: float = Field(5.0, gt=0)
    max_pending: int = Field(200_000, ge=1000)
    dedup_window_s: float = Field(30.0, ge=0)
    tls: TlsOptions | None = None

    @model_validator(mode="after")
    def _windows(self) -> SourceOptions:
        if self.t2_s >= self.t1_s:
            raise ValueError("t2_s must be below t1_s (acknowledge before the peer times out)")
        if self.w > self.k:
            raise ValueError("w must not exceed k (acknowledge before the peer's window is full)")
        if bool(self.endpoints) != bool(self.common_addresses):
            raise ValueError("give both endpoints and common_addresses (one RTU), or neither (RTUs as devices)")
        return self


class PointOptions(_Model):
    """Where a point lives: common address and IOA, and optionally its expected type id."""

    ca: int | None = Field(None, ge=1, le=65534)
    ioa: int | None = Field(None, ge=0, le=16_777_215)
    type: str | None = None

    @field_validator("type")
    @classmethod
    def _known_type(cls, v: str | None) -> str | None:
        if v is not None and TYPE_IDS.get(v) not in MONITORING_TYPES:
            raise ValueError(f"unknown monitoring type {v!r}")
        return v
