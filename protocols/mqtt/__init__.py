"""MQTT source kind: aiomqtt 2.x subscriber with JSON and Sparkplug B decoders.

`SOURCE_KIND` validates `[[sources]] kind = "mqtt"`; `create_driver(source, ctx)` returns a
`StreamingDriver` whose `samples()` yields `SampleBatch`es (QoS 1 messages are acknowledged
when the collector calls the batch's `ack`). See README.md for keys, scaling and options.
"""

from __future__ import annotations

from core.config import SourceKind
from protocols.mqtt.config import DeviceOptions, PointOptions, SourceOptions, TopicMapping
from protocols.mqtt.driver import MqttDriver, create_driver

SOURCE_KIND = SourceKind(options=SourceOptions, device=DeviceOptions, point=PointOptions)

__all__ = ["SOURCE_KIND", "DeviceOptions", "MqttDriver", "PointOptions", "SourceOptions", "TopicMapping",
           "create_driver"]
