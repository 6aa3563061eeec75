"""The MQTT streaming driver: one broker connection per source, aiomqtt 2.x underneath.

Flow: paho (inside aiomqtt) parses PUBLISH packets on the event loop's reader callback; our
client subclass appends `(topic, payload, qos, mid)` to a deque instead of creating a task per
message; `samples()` drains the deque in chunks, decodes each message with its mapping's
decoder (JSON or Sparkplug B) and yields one `SampleBatch` per chunk. QoS 1 messages are
acknowledged (PUBACK) only when the collector calls the batch's `ack` — paho's `manual_ack`
mode, reached through aiomqtt's wrapped paho client. An `ack` that arrives after the
connection it belongs to was lost does nothing: the broker redelivers those messages.

Bad messages never stop the subscriber: each one is dead-lettered once with every reason
(naming the field), counted as `decode_errors` and `decode_errors:<code>` in the source
health, and acknowledged with its chunk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any, Self, cast

import aiomqtt
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from core.config import ResolvedSource
from core.errors import ConnectError
from core.interfaces import DriverContext, SampleBatch
from core.records import Event, RawSample
from protocols.mqtt.config import SourceOptions
from protocols.mqtt.json import JsonDecoder, Problem
from protocols.mqtt.sparkplug import SparkplugDecoder, rebirth_payload
from protocols.mqtt.topics import TopicPattern

QUIET_LOGGER = logging.getLogger("gridwatch.mqtt.client")
QUIET_LOGGER.setLevel(logging.ERROR)
QUIET_LOGGER.propagate = True

_Inbound = tuple[str | None, bytes, int, int]  # topic (None when not UTF-8), payload, qos, mid
_TOPIC_CACHE_MAX = 200_000
DEAD_LETTER_MAX_BYTES = 64 * 1024  # a dead letter keeps at most this much of a payload


class _Client(aiomqtt.Client):
    """aiomqtt client with a cheap inbox and manual QoS 1 acknowledgements.

    aiomqtt 2.x has no manual-ack option; paho (its `_client`) has `manual_ack_set` and
    `ack(mid, qos)`. All private access to aiomqtt is kept in this class.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.paho: paho.Client = self._client
        self.paho.manual_ack_set(True)
        self.paho.disable_logger()  # paho formats a debug line per packet otherwise (aiomqtt keeps its logger)
        self.inbox: deque[_Inbound] = deque()
        self.wakeup = asyncio.Event()
        self.alive = False
        self.max_pending_qos0 = 0  # 0: unbounded; else QoS 0 messages beyond it are dropped (counted)
        self.dropped = 0

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        try:
            topic: str | None = message.topic
        except UnicodeDecodeError:
            topic = None
        if message.qos == 0 and self.max_pending_qos0 and len(self.inbox) >= self.max_pending_qos0:
            self.dropped += 1  # QoS 0 has no redelivery: a consumer this far behind loses them (counted)
            return
        self.inbox.append((topic, cast(bytes, message.payload), message.qos, message.mid))
        if not self.wakeup.is_set():
            self.wakeup.set()

    def watch_disconnect(self) -> None:
        """Wake the reader when the connection drops."""
        self._disconnected.add_done_callback(lambda _f: self.wakeup.set())

    def disconnect_error(self) -> BaseException | None:
        """None while connected; else the reason (an exception) the link dropped."""
        fut = self._disconnected
        if not fut.done():
            return None
        if fut.cancelled():
            return ConnectionError("disconnected")
        return fut.exception() or ConnectionError("disconnected by the client")

    def ack(self, mid: int) -> None:
        """Send the PUBACK of a QoS 1 message."""
        self.paho.ack(mid, 1)


class _Route:
    __slots__ = ("decoder", "kind", "pattern")

    def __init__(self, pattern: TopicPattern, kind: str, decoder: JsonDecoder | SparkplugDecoder) -> None:
        self.pattern = pattern
        self.kind = kind
        self.decoder = decoder


def _tls_context(opts: SourceOptions) -> ssl.SSLContext | None:
    t = opts.tls
    if t is None or not t.enabled:
        return None
    ctx = ssl.create_default_context(cafile=t.ca_file)
    if t.cert_file:
        ctx.load_cert_chain(t.cert_file, t.key_file)
    if t.insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def derived_keys(source: ResolvedSource) -> dict[str, tuple[str, str]]:
    """Key the driver derives for each configured point -> (key to emit, point unit).

    Source-level points are derived as their `key`; device points as `<device id>/<key>`, where
    the device id is the device's `id` option or its name. The key emitted is one the
    collector's point map knows: the point's `key` for source-level points (its `name` when the
    key repeats) and the point's unique `name` for device points.
    """
    out: dict[str, tuple[str, str]] = {}
    counts = Counter(p.key for p in source.points if not p.device)
    for d in source.devices:
        did = getattr(d.options, "id", None) or d.name
        for p in d.points:
            out[f"{did}/{p.key}"] = (p.name, p.spec.unit)
    for p in source.points:
        if p.device and any(d.name == p.device for d in source.devices):
            continue
        out.setdefault(p.key, (p.key if counts[p.key] == 1 else p.name, p.spec.unit))
    return out


class MqttDriver:
    """Streaming driver for one MQTT source; see the module docstring."""

    def __init__(self, source: ResolvedSource, ctx: DriverContext, *,
                 client_factory: Callable[..., _Client] | None = None,
                 sparkplug_nodes: dict[tuple[str, str], Any] | None = None) -> None:
        opts = source.options
        if not isinstance(opts, SourceOptions):
            opts = SourceOptions.model_validate(opts)
        self.source = source
        self.name = source.name
        self.opts: SourceOptions = opts
        self.ctx = ctx
        self.health = ctx.health
        self._factory = client_factory or _Client
        keys = derived_keys(source)
        self._sparkplug: SparkplugDecoder | None = None
        self._routes: list[_Route] = []
        self._subscriptions: list[tuple[str, int]] = []
        for m in opts.topics:
            pat = TopicPattern.parse(m.pattern)
            dec: JsonDecoder | SparkplugDecoder
            if m.format == "json":
                dec = JsonDecoder(self.name, m, keys)
            else:
                if self._sparkplug is None:
                    self._sparkplug = SparkplugDecoder(
                        self.name, ctx.health, death_marks_points=m.sparkplug.death_marks_points,
                        rebirth=self._request_rebirth if m.sparkplug.request_rebirth else None,
                        points={k: v[0] for k, v in keys.items()}, nodes=sparkplug_nodes)
                dec = self._sparkplug
            self._routes.append(_Route(pat, m.format, dec))
            filt = pat.filter if not opts.shared_group else f"$share/{opts.shared_group}/{pat.filter}"
            self._subscriptions.append((filt, m.qos if m.qos is not None else opts.qos))
        self._topic_cache: dict[str, tuple[_Route, tuple[str, ...]] | None] = {}
        self._client: _Client | None = None
        self._loop_thread = 0
        self._rebirth_at: dict[tuple[str, str], float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._reported_units = 0

    # -- lifecycle ----------------------------------------------------------------------------
    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self._close()

    def _new_client(self) -> _Client:
        o = self.opts
        v5 = o.protocol == "5"
        props: Properties | None = None
        if v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            if o.persistent_session:
                props.SessionExpiryInterval = o.session_expiry_s
        password = o.password
        if o.password_env:
            password = os.environ.get(o.password_env)
            if password is None:
                raise ConnectError(self.name, f"options.password_env: environment variable {o.password_env} is not set")
        try:
            tls = _tls_context(o)
        except (OSError, ssl.SSLError) as e:
            raise ConnectError(self.name, f"options.tls: {e}") from e
        return self._factory(
            o.host, o.port,
            username=o.username, password=password,
            identifier=o.client_id or None,
            protocol=aiomqtt.ProtocolVersion.V5 if v5 else aiomqtt.ProtocolVersion.V311,
            clean_session=None if v5 else not o.persistent_session,
            clean_start=not o.persistent_session if v5 else paho.MQTT_CLEAN_START_FIRST_ONLY,
            properties=props,
            keepalive=o.keepalive_s,
            timeout=o.connect_timeout_s,
            logger=QUIET_LOGGER,
            tls_context=tls,
            tls_insecure=(o.tls.insecure if tls is not None and o.tls is not None else None),
        )

    async def _connect(self) -> _Client:
        self.health.links["broker"] = "connecting"
        client = self._new_client()
        try:
            async with asyncio.timeout(self.opts.connect_timeout_s * 2):
                await client.__aenter__()
        except (aiomqtt.MqttError, OSError, TimeoutError) as e:
            self.health.links["broker"] = "down"
            self.health.count("connect_failures")
            self.health.last_error = f"{self.name}: cannot connect to {self.opts.host}:{self.opts.port}: {e}"
            raise ConnectError(self.name, f"cannot connect to {self.opts.host}:{self.opts.port}: {e}") from e
        client.alive = True
        client.max_pending_qos0 = self.opts.max_pending_qos0
        client.watch_disconnect()
        self._client = client
        self._loop_thread = threading.get_ident()
        try:
            for filt, qos in self._subscriptions:
                async with asyncio.timeout(self.opts.connect_timeout_s * 2):
                    result = await client.subscribe(filt, qos)
                codes = [r.value if isinstance(r, ReasonCode) else int(r) for r in result]
                if any(c >= 0x80 for c in codes):
                    raise ConnectError(self.name, f"broker refused subscription {filt!r} (reason code {codes[0]:#x})")
        except (aiomqtt.MqttError, TimeoutError) as e:
            await self._close()
            raise ConnectError(self.name, f"subscribe failed: {e}") from e
        except ConnectError:
            await self._close()
            raise
        self.health.links["broker"] = "up"
        self.health.count("connects")
        return client

    async def _close(self) -> None:
        client, self._client = self._client, None
        for t in list(self._tasks):
            t.cancel()
        if client is None:
            return
        client.alive = False
        if self.health.links.get("broker") == "up":
            self.health.links["broker"] = "down"
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                await client.__aexit__(None, None, None)

    # -- streaming ----------------------------------------------------------------------------
    async def samples(self) -> AsyncIterator[SampleBatch]:
        """Connect, subscribe and yield batches until the link drops (then raise ConnectError)."""
        if self._client is not None:
            await self._close()
        client = await self._connect()
        inbox = client.inbox
        max_batch = self.opts.max_batch
        try:
            while True:
                if not inbox:
                    client.wakeup.clear()
                    if not inbox:
                        err = client.disconnect_error()
                        if err is not None:
                            break
                        await client.wakeup.wait()
                        continue
                samples: list[RawSample] = []
                mids: list[int] = []
                n = 0
                while inbox and len(samples) < max_batch and n < max_batch:
                    topic, payload, qos, mid = inbox.popleft()
                    n += 1
                    if qos:
                        mids.append(mid)
                    self._decode(topic, payload, samples)
                self.health.count("messages", n)
                if client.dropped:
                    self.health.count("dropped_qos0_overflow", client.dropped)
                    client.dropped = 0
                self.health.last_message_at = self.ctx.clock()
                if samples:
                    yield SampleBatch(samples, self._acker(client, mids) if mids else None)
                elif mids:
                    self._ack_now(client, mids)
            err = client.disconnect_error()
            raise ConnectError(self.name, f"broker link lost: {err}") from err
        finally:
            if self._client is client:
                client.alive = False
                self.health.links["broker"] = "down"
                await self._close()

    def _acker(self, client: _Client, mids: list[int]) -> Callable[[], None]:
        def ack() -> None:
            if threading.get_ident() != self._loop_thread:
                client._loop.call_soon_threadsafe(self._ack_now, client, mids)
            else:
                self._ack_now(client, mids)
        return ack

    def _ack_now(self, client: _Client, mids: Sequence[int]) -> None:
        if not client.alive or client.disconnect_error() is not None:
            self.health.count("acks_after_disconnect", len(mids))  # the broker redelivers these
            return
        for mid in mids:
            client.ack(mid)

    # -- decoding -----------------------------------------------------------------------------
    def _route(self, topic: str) -> tuple[_Route, tuple[str, ...]] | None:
        hit = self._topic_cache.get(topic, False)
        if hit is not False:
            return hit  # type: ignore[return-value]
        found: tuple[_Route, tuple[str, ...]] | None = None
        for r in self._routes:
            cap = r.pattern.match(topic)
            if cap is not None:
                found = (r, cap)
                break
        if len(self._topic_cache) < _TOPIC_CACHE_MAX:
            self._topic_cache[topic] = found
        return found

    def _decode(self, topic: str | None, payload: bytes, out: list[RawSample]) -> None:
        problems: list[Problem] = []
        received_at = self.ctx.clock()
        if topic is None:
            problems.append(Problem("topic", "topic: not valid UTF-8"))
            shown = "<invalid topic>"
        else:
            shown = topic
            route = self._route(topic)
            if route is None:
                problems.append(Problem("topic", f"topic: {topic[:120]!r} matches no mapping"))
            else:
                r, cap = route
                try:
                    if r.kind == "json":
                        r.decoder.decode(cap, payload, received_at, out, problems)  # type: ignore[arg-type]
                    else:
                        r.decoder.decode(topic, payload, received_at, out, problems)  # type: ignore[arg-type]
                        if r.decoder.events:  # type: ignore[union-attr]
                            self._journal(r.decoder.events)  # type: ignore[union-attr]
                except Exception as e:  # a decoder bug must not stop the subscriber either
                    problems.append(Problem("internal", f"payload: decoder failed: {type(e).__name__}: {e}"))
                if r.kind == "json":
                    up = r.decoder.unit_problems  # type: ignore[union-attr]
                    if len(up) > self._reported_units:
                        self.health.last_error = f"{self.name}: unit conversion: {up[-1]}"
                        self.health.count("unit_mismatch", len(up) - self._reported_units)
                        self._reported_units = len(up)
        if problems:
            self._reject(shown, payload, problems)

    def _reject(self, topic: str, payload: bytes, problems: list[Problem]) -> None:
        h = self.health
        h.count("decode_errors")
        for p in problems:
            h.count(f"decode_errors:{p.code}")
        reason = "; ".join(p.reason for p in problems[:5])
        if len(problems) > 5:
            reason += f"; and {len(problems) - 5} more"
        reason = f"{topic}: {reason}"
        h.last_error = f"{self.name}: {reason}"[:500]
        if len(payload) > DEAD_LETTER_MAX_BYTES:
            reason += f" (payload truncated from {len(payload)} bytes)"
            payload = payload[:DEAD_LETTER_MAX_BYTES]
        if self.ctx.dead_letter is not None:
            try:
                self.ctx.dead_letter(self.name, reason, payload)
            except Exception as e:  # the dead-letter store must not stop the subscriber
                h.count("dead_letter_failures")
                h.last_error = f"{self.name}: dead letter failed: {e}"

    def _journal(self, events: list[tuple[str, str]]) -> None:
        """Record Sparkplug births, deaths and sequence gaps in the event journal (async, best effort)."""
        batch = events[:100]
        events.clear()
        journal = self.ctx.journal
        if journal is None:
            return
        when = self.ctx.clock()

        async def record() -> None:
            for kind, message in batch:
                with contextlib.suppress(Exception):
                    await journal.record(Event(kind=kind, source=self.name, message=message, ts=when))

        try:
            t = asyncio.get_running_loop().create_task(record(), name=f"{self.name}-journal")
        except RuntimeError:  # no running loop (decoding outside the driver's loop, e.g. tests)
            return
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    # -- sparkplug rebirth --------------------------------------------------------------------
    def _request_rebirth(self, group: str, edge: str) -> None:
        client = self._client
        now = time.monotonic()
        if client is None or now - self._rebirth_at.get((group, edge), -1e9) < 30.0:
            return
        self._rebirth_at[(group, edge)] = now
        topic = f"spBv1.0/{group}/NCMD/{edge}"
        self.health.count("rebirth_requests")

        async def send() -> None:
            with contextlib.suppress(aiomqtt.MqttError, TimeoutError):
                async with asyncio.timeout(10):
                    await client.publish(topic, rebirth_payload(int(time.time() * 1000)), qos=0)

        t = asyncio.get_running_loop().create_task(send(), name=f"{self.name}-rebirth-{group}/{edge}")
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)


_SPARKPLUG_NODES: dict[str, dict[tuple[str, str], Any]] = {}
"""Sparkplug B edge-node state (births, aliases, seq, last values) per source name.

The collector builds a new driver after every lost link; with a persistent session the DDATA
queued meanwhile still use the aliases of births the previous driver saw, so that state
outlives a driver instance (it is small: one entry per edge node and metric)."""


def create_driver(source: ResolvedSource, ctx: DriverContext) -> MqttDriver:
    """Build the MQTT driver of `source` (its options validated as `SourceOptions`).

    Drivers of the same source share their Sparkplug B node state across re-creation.
    """
    return MqttDriver(source, ctx, sparkplug_nodes=_SPARKPLUG_NODES.setdefault(source.name, {}))

