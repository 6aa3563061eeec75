"""The shipped `gridwatch simulate` file for the MQTT head-end loads and runs."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest

from collector.commands.simulate import load_plan, simulate
from tests.conftest import Broker
from tests.protocols.mqtt.support import Consumer, make_driver, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

SAMPLE = Path(__file__).resolve().parents[3] / "simulators" / "mqtt" / "sample.toml"


async def test_sample_file_runs_against_a_broker(mqtt_broker: Broker, tmp_path: Path) -> None:
    args = argparse.Namespace(start=None, until=None, speed=None, only=[])
    section, tables = load_plan(SAMPLE, args)
    (table,) = tables
    table.update(port=mqtt_broker.port, meters=5, labels=str(tmp_path / "labels.jsonl"))
    topics = [{"pattern": "amr/+meter/readings"}, {"pattern": "spBv1.0/amr/#", "format": "sparkplug"}]
    async with Consumer(make_driver(mqtt_broker.port, topics, name="amr-sim")) as c:
        rc = await simulate(section, tables, duration=4.0, out=io.StringIO())
        assert rc == 0

        def both() -> bool:
            keys = {s.key for s in c.samples}
            return any(k.startswith("m00001/") for k in keys) and any(k.startswith("amr/headend1/m00001/")
                                                                       for k in keys)

        await wait_until(both, what="JSON and Sparkplug readings of m00001")
    assert (tmp_path / "labels.jsonl").exists()
