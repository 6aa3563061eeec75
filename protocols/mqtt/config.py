"""Configuration models of the MQTT source kind (validated once, frozen, unknown keys rejected).

A source subscribes to one broker; each entry of `topics` maps a topic pattern to a payload
decoder. Patterns are MQTT filters whose wildcards may carry a capture name:
`amr/+meter/readings` subscribes to `amr/+/readings` and captures the second level as `meter`;
`site/#rest` captures the remaining levels (joined by `/`) as `rest`.

Keys (what `RawSample.key` carries, and what `PointSpec.key` must say):

* JSON: by default the captured ids in order (named wildcards only) (topic captures first, then per-reading `ids`)
  joined by `/`, then `/` and the field name: `amr/+meter/readings` with field `p` gives
  `m00001/p`. A mapping's `key` template (`"{meter}.{field}"`) overrides that.
* Sparkplug B: `<group>/<edge node>/<metric name>` for node metrics and
  `<group>/<edge node>/<device>/<metric name>` for device metrics.

Scaling happens once per layer, never twice: a JSON field's `scale`/`offset` (and the
conversion from its `unit` to the configured point's unit) is a payload-level conversion
applied by the driver; the point's own `PointSpec.scale`/`offset` is applied by the collector.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from protocols.mqtt.topics import TopicPattern


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TlsOptions(_Model):
    """TLS towards the broker: CA bundle, optional client certificate, hostname check."""

    enabled: bool = True
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    insecure: bool = False  # skip hostname verification (never in production)


class JsonField(_Model):
    """One value of a JSON reading: where it is and how to convert it (payload level)."""

    path: str = ""  # dotted path inside the reading; defaults to the field name; "$." = from the message root
    unit: str = ""  # the unit the payload uses; converted to the point's unit when both are known
    scale: float = 1.0
    offset: float = 0.0


class JsonOptions(_Model):
    """How to find readings, ids, values and timestamps in a JSON message.

    `readings` is the path of an array of reading objects ("" means the message itself, which
    may be one object or an array). Paths are dotted (`values.p`, `items.0.v`) and relative to
    a reading; a path starting with `$.` is read from the message root (a batch-level `ts`).
    Without `fields`, every numeric top-level member of a reading (other than the timestamp and
    the ids) is a field.
    """

    readings: str = ""
    timestamp: str | None = "ts"
    timestamp_format: Literal["iso8601", "epoch_s", "epoch_ms", "auto"] = "auto"
    ids: dict[str, str] = Field(default_factory=dict)  # capture name -> path inside the reading
    fields: dict[str, JsonField] = Field(default_factory=dict)

    @field_validator("ids")
    @classmethod
    def _ids_named(cls, v: dict[str, str]) -> dict[str, str]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"id name {name!r} must be an identifier")
        return v


class SparkplugOptions(_Model):
    """Sparkplug B handling: death marks points, optional rebirth requests on unknown aliases."""

    death_marks_points: bool = True  # NDEATH/DDEATH emit the last values flagged NOT_TOPICAL|COMM_FAIL
    request_rebirth: bool = False  # publish NCMD "Node Control/Rebirth" when an alias is unknown


class TopicMapping(_Model):
    """One subscription and how to decode what arrives on it."""

    pattern: str
    format: Literal["json", "sparkplug"] = "json"
    qos: Literal[0, 1] | None = None  # defaults to the source's qos
    key: str | None = None  # key template, e.g. "{meter}.{field}" (JSON only)
    json_options: JsonOptions = Field(default_factory=JsonOptions, alias="json")
    sparkplug: SparkplugOptions = Field(default_factory=SparkplugOptions)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @field_validator("pattern")
    @classmethod
    def _valid_pattern(cls, v: str) -> str:
        TopicPattern.parse(v)  # raises ValueError with the reason
        return v

    @model_validator(mode="after")
    def _key_names(self) -> TopicMapping:
        if self.key is not None:
            names = set(TopicPattern.parse(self.pattern).names) | set(self.json_options.ids) | {"field"}
            for used in re.findall(r"\{([^}:]*)", self.key):
                if used not in names:
                    raise ValueError(f"key template uses {{{used}}}, which is not captured (have: {sorted(names)})")
        if self.format == "sparkplug" and not self.pattern.startswith("spBv1.0/"):
            raise ValueError("a sparkplug mapping's pattern must start with spBv1.0/")
        return self


class SourceOptions(_Model):
    """Options of an MQTT source (`[sources.options]` of kind "mqtt")."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    client_id: str = Field("", max_length=200)  # fixed id: required for a persistent session
    protocol: Literal["3.1.1", "5"] = "5"
    username: str | None = None
    password: str | None = None
    password_env: str | None = None
    tls: TlsOptions | None = None
    qos: Literal[0, 1] = 1
    persistent_session: bool = True  # clean_session=False (3.1.1) / clean_start=False + expiry (5)
    session_expiry_s: int = Field(86_400, ge=0)
    keepalive_s: int = Field(30, ge=5, le=65535)
    connect_timeout_s: float = Field(10.0, gt=0)
    shared_group: str | None = Field(None, pattern=r"^[^/+#]+$")  # subscribe as $share/<group>/<filter>
    auto_register: bool = False
    max_batch: int = Field(5000, ge=1)  # most samples handed over in one SampleBatch
    max_pending_qos0: int = Field(200_000, ge=0)  # QoS 0 backlog bound in memory (0 = unbounded)
    topics: list[TopicMapping] = Field(min_length=1)

    @model_validator(mode="after")
    def _checks(self) -> SourceOptions:
        if self.persistent_session and not self.client_id:
            raise ValueError("persistent_session needs a fixed client_id")
        if self.password is not None and self.password_env is not None:
            raise ValueError("give at most one of password and password_env")
        return self


class DeviceOptions(_Model):
    """Options of a device of an MQTT source: its id as the topic/payload carries it.

    Device points' keys are then `<id>/<point key>` (JSON) — e.g. a template point `p` on a
    device with `id = "m00001"` listens to key `m00001/p`. Defaults to the device name.
    """

    id: str | None = None


class PointOptions(_Model):
    """Per-point options (none needed today; present so typos are rejected)."""
