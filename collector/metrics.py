"""Self-metrics of the daemon (namespace `gridwatch_`) in an injected registry.

Counters and histograms are updated by the forwarder and the agent; link state, source
counters and last-message age are read from every source's `SourceHealth` at scrape time by
`HealthCollector`, so drivers only update their `SourceHealth`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from core.interfaces import SourceHealth

NS = "gridwatch"
LINK_STATES = ("up", "down", "muted", "standby", "connecting")


class HealthCollector(Collector):
    """Exports `SourceHealth` of every source: link state, counters, gauges, message age."""

    def __init__(self, healths: Mapping[str, SourceHealth], clock: Callable[[], datetime]) -> None:
        self.healths = healths
        self.clock = clock

    def collect(self) -> Iterable[CounterMetricFamily | GaugeMetricFamily]:
        link = GaugeMetricFamily(f"{NS}_link_state", "1 for the current state of each link or device",
                                 labels=["source", "link", "state"])
        up = GaugeMetricFamily(f"{NS}_link_up", "1 when the link or device is up", labels=["source", "link"])
        events = CounterMetricFamily(f"{NS}_source_events", "Driver counters (messages, errors, ...)",
                                     labels=["source", "counter"])
        gauges = GaugeMetricFamily(f"{NS}_source_gauge", "Driver gauges (clock skew, ...)",
                                   labels=["source", "name"])
        age = GaugeMetricFamily(f"{NS}_source_last_message_age_seconds", "Seconds since the last message",
                                labels=["source"])
        now = self.clock()
        for name, h in list(self.healths.items()):
            for lk, state in list(h.links.items()):
                for s in LINK_STATES:
                    link.add_metric([name, lk, s], 1.0 if state == s else 0.0)
                up.add_metric([name, lk], 1.0 if state == "up" else 0.0)
            for c, v in list(h.counters.items()):
                events.add_metric([name, c], float(v))
            for g, gv in list(h.gauges.items()):
                gauges.add_metric([name, g], float(gv))
            if h.last_message_at is not None:
                age.add_metric([name], max(0.0, (now - h.last_message_at).total_seconds()))
        yield from (link, up, events, gauges, age)


class Metrics:
    """Every self-metric of the collector, registered once in `registry`."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.readings_in = Counter("readings_in", "Readings normalized, per source", ["source"],
                                   namespace=NS, registry=r)
        self.readings_stored = Counter("readings_stored", "Readings written to the database, per source",
                                       ["source"], namespace=NS, registry=r)
        self.readings_spooled = Counter("readings_spooled", "Readings written to the disk spool, per source",
                                        ["source"], namespace=NS, registry=r)
        self.readings_replayed = Counter("readings_replayed", "Readings replayed from the spool into the database",
                                         namespace=NS, registry=r)
        self.readings_rejected = Counter("readings_rejected", "Readings the database rejected (quarantined)",
                                         ["source"], namespace=NS, registry=r)
        self.samples_unmapped = Counter("samples_unmapped", "Samples whose key is not in the point map",
                                        ["source"], namespace=NS, registry=r)
        self.dead_letters = Counter("dead_letters", "Inputs kept as dead letters", ["source"],
                                    namespace=NS, registry=r)
        self.batch_write_seconds = Histogram(
            "batch_write_seconds", "Latency of one batch write to the database", namespace=NS, registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
        self.db_write_seconds = Counter("db_write_seconds", "Total seconds spent writing to the database",
                                        namespace=NS, registry=r)
        self.batch_rows = Histogram("batch_rows", "Readings per written batch", namespace=NS, registry=r,
                                    buckets=(1, 10, 100, 500, 1000, 2500, 5000, 10000, 50000))
        self.spool_depth = Gauge("spool_depth", "Batches waiting in the disk spool", namespace=NS, registry=r)
        self.spool_bytes = Gauge("spool_bytes", "Bytes of the disk spool", namespace=NS, registry=r)
        self.buffer_rows = Gauge("buffer_rows", "Readings held in the in-memory buffer", namespace=NS, registry=r)
        self.observer_errors = Counter("observer_errors", "Exceptions raised by batch observers", ["observer"],
                                       namespace=NS, registry=r)
        self.source_restarts = Counter("source_restarts", "Times a source was restarted after a failure",
                                       ["source"], namespace=NS, registry=r)
        self.source_up = Gauge("source_running", "1 while the source's driver runs", ["source"],
                               namespace=NS, registry=r)
        self.poll_seconds = Histogram("poll_seconds", "Duration of one poll of a polled source", ["source"],
                                      namespace=NS, registry=r,
                                      buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0))
        self.maintenance_errors = Counter("maintenance_errors", "Failed rollup refreshes / partition maintenance",
                                          namespace=NS, registry=r)

    def observe_write(self, seconds: float, rows: int) -> None:
        """Record one successful batch write."""
        self.batch_write_seconds.observe(seconds)
        self.db_write_seconds.inc(seconds)
        self.batch_rows.observe(rows)

    def watch_health(self, healths: Mapping[str, SourceHealth], clock: Callable[[], datetime]) -> None:
        """Export the `SourceHealth` of every source at scrape time."""
        self.registry.register(HealthCollector(healths, clock))
