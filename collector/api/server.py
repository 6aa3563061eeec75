"""The HTTP API: health, readiness, metrics, points, readings, dead letters, feature routes.

`build_app(ctx)` returns the aiohttp application; feature modules (alerts, schedule, archive)
add their routes through `setup(app, ctx)` and are skipped when not installed. Errors are JSON
objects `{"error": "<message naming the parameter>"}` with a 4xx/5xx status.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import importlib
import io
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from collector import store
from collector.api.context import CTX_KEY, ApiContext, JsonError, get_ctx, query_int, require_role
from core.errors import GridWatchError, SinkError

log = logging.getLogger(__name__)

FEATURE_MODULES = ("collector.api.alerts", "collector.api.schedule", "collector.api.archive")
STEPS = ("raw", "15m", "1h", "1d", "auto")
MAX_LIMIT = 10_000
READY_TIMEOUT_S = 3.0


def bad_request(message: str) -> JsonError:
    """400 with a message naming the parameter."""
    return JsonError(400, message)


def load_tokens(ctx: ApiContext) -> None:
    """Fill `ctx.tokens` (secret -> (name, role)) from the config's tokens or their env vars."""
    for t in ctx.config.api.tokens:
        secret = t.token if t.token is not None else os.environ.get(t.token_env or "")
        if not secret:
            log.warning("API token %r: environment variable %s is not set; token disabled", t.name, t.token_env)
            continue
        ctx.tokens[secret] = (t.name, t.role)


def parse_time(name: str, text: str | None, default: datetime) -> datetime:
    """An ISO 8601 time (naive means UTC), epoch seconds, or `now[-<n><s|m|h|d>]`."""
    if text is None or text == "":
        return default
    t = text.strip()
    try:
        if t.startswith("now"):
            rest = t[3:]
            if not rest:
                return datetime.now(UTC)
            sign = -1 if rest[0] == "-" else 1
            unit = rest[-1]
            n = float(rest[1:-1])
            secs = {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit] * n
            return datetime.now(UTC) + sign * timedelta(seconds=secs)
        if t.replace(".", "", 1).isdigit():
            return datetime.fromtimestamp(float(t), UTC)
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
        return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)
    except (ValueError, KeyError, IndexError):
        raise bad_request(f"parameter {name!r}: {text!r} is not a time (ISO 8601, epoch seconds or now-1h)") from None


# ---------------------------------------------------------------- handlers
async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database answers, and the state of every source."""
    ctx = get_ctx(request)
    db_ok = True
    db_error = ""
    try:
        async with asyncio.timeout(READY_TIMEOUT_S):
            await store.ping(ctx.db)
    except (SinkError, TimeoutError, OSError) as e:
        db_ok = False
        db_error = str(e) or type(e).__name__
    agent = ctx.features.get("agent")
    status: dict[str, Any] = agent.status() if agent is not None else {"sources": {}}
    status.setdefault("database", {})
    status["database"]["reachable"] = db_ok
    if db_error:
        status["database"]["error"] = db_error
    status["ready"] = db_ok
    return web.json_response(status, status=200 if db_ok else 503)


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of the injected registry."""
    ctx = get_ctx(request)
    body = generate_latest(ctx.registry)
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return resp


async def points(request: web.Request) -> web.Response:
    """Points, filtered by zone/subject/device/source, paged by limit/offset."""
    require_role(request, "viewer")
    ctx = get_ctx(request)
    limit = query_int(request, "limit", 1000, 1, MAX_LIMIT)
    offset = query_int(request, "offset", 0, 0, 1 << 40)
    filters = {k: request.query.get(k) for k in ("zone", "subject", "device", "source")}
    for k in request.query:
        if k not in {"zone", "subject", "device", "source", "limit", "offset"}:
            raise bad_request(f"parameter {k!r} is not known (use zone, subject, device, source, limit, offset)")
    total, rows = await store.list_points(ctx, limit=limit, offset=offset,
                                          **{k: v for k, v in filters.items() if v})
    return web.json_response({"total": total, "limit": limit, "offset": offset, "points": rows})


async def _resolve_points(ctx: ApiContext, refs: Sequence[str]) -> list[tuple[int, str]]:
    names = await store.point_index(ctx)
    by_id = {v: k for k, v in names.items()}
    out: list[tuple[int, str]] = []
    for ref in refs:
        if ref in names:
            out.append((names[ref], ref))
        elif ref.isdigit() and int(ref) in by_id:
            out.append((int(ref), by_id[int(ref)]))
        else:
            raise JsonError(404, f"parameter 'point': no point named or numbered {ref!r}")
    return out


async def readings(request: web.Request) -> web.StreamResponse:
    """Readings of one or more points, raw or aggregated, as JSON or CSV."""
    require_role(request, "viewer")
    ctx = get_ctx(request)
    q = request.query
    refs = q.getall("point", [])
    if not refs:
        raise bad_request("parameter 'point' is required (a point name or id; repeat it for several)")
    now = datetime.now(UTC)
    end = parse_time("to", q.get("to"), now)
    start = parse_time("from", q.get("from"), end - timedelta(hours=1))
    if start >= end:
        raise bad_request("parameter 'from' must be before 'to'")
    step = q.get("step", "auto")
    if step not in STEPS:
        raise bad_request(f"parameter 'step': {step!r} is not one of {', '.join(STEPS)}")
    fmt = q.get("format", "json")
    if fmt not in ("json", "csv"):
        raise bad_request(f"parameter 'format': {fmt!r} is not json or csv")
    limit = query_int(request, "limit", 100_000, 1, 1_000_000)
    pts = await _resolve_points(ctx, refs)
    chosen, rows = await store.readings(ctx.db, [p for p, _ in pts], start, end, step, limit)
    names = dict(pts)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.writer(buf)
        cols = [k for k in (rows[0] if rows else {"point_id": 0, "ts": 0, "value": 0}) if k != "point_id"]
        w.writerow(["point", "point_id", *cols])
        for r in rows:
            w.writerow([names.get(r["point_id"], ""), r["point_id"], *("" if r[c] is None else r[c] for c in cols)])
        return web.Response(text=buf.getvalue(), content_type="text/csv")
    series: dict[int, list[dict[str, Any]]] = {p: [] for p, _ in pts}
    for r in rows:
        item = {k: v for k, v in r.items() if k != "point_id"}
        series.setdefault(r["point_id"], []).append(item)
    return web.json_response({
        "from": start.isoformat(), "to": end.isoformat(), "step": chosen,
        "series": [{"point": names[p], "point_id": p, "data": series.get(p, [])} for p, _ in pts],
    })


async def dead_letters(request: web.Request) -> web.Response:
    """Dead letters, newest first (viewer)."""
    require_role(request, "viewer")
    ctx = get_ctx(request)
    limit = query_int(request, "limit", 100, 1, 1000)
    offset = query_int(request, "offset", 0, 0, 1 << 40)
    from storage.dead_letters import list_dead_letters

    total, rows = await list_dead_letters(ctx.db, source=request.query.get("source") or None, limit=limit,
                                          offset=offset)
    out = []
    for r in rows:
        try:
            payload: Any = r.payload.decode()
        except UnicodeDecodeError:
            payload = r.payload.hex()
        out.append({"id": r.id, "ts": r.ts.isoformat(), "source": r.source, "reason": r.reason, "payload": payload})
    return web.json_response({"total": total, "limit": limit, "offset": offset, "dead_letters": out})


@web.middleware
async def json_errors(request: web.Request,
                      handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Turn every error into a JSON body; database trouble is 503."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        if e.content_type == "application/json":
            raise
        raise JsonError(e.status, e.reason or "error") from None
    except SinkError as e:
        raise JsonError(503, f"database unavailable: {e}") from None
    except GridWatchError as e:
        raise JsonError(500, str(e)) from None


def build_app(ctx: ApiContext, feature_modules: Sequence[str] = FEATURE_MODULES) -> web.Application:
    """The API application for `ctx` with every importable feature module's routes."""
    if not ctx.tokens:
        load_tokens(ctx)
    app = web.Application(middlewares=[json_errors])
    app[CTX_KEY] = ctx
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/v1/points", points)
    app.router.add_get("/api/v1/readings", readings)
    app.router.add_get("/api/v1/dead-letters", dead_letters)
    for name in feature_modules:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and (name == e.name or name.startswith(e.name + ".")):
                continue
            raise
        mod.setup(app, ctx)
    return app


class ApiService:
    """Runs the API on host:port as a background service of the agent."""

    def __init__(self, ctx: ApiContext, host: str | None = None, port: int | None = None) -> None:
        self.ctx = ctx
        self.host = host or ctx.config.api.host
        self.port = ctx.config.api.port if port is None else port
        self.bound_port: int | None = None
        self.ready = asyncio.Event()

    async def run(self) -> None:
        """Serve until cancelled."""
        app = build_app(self.ctx)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            server: Any = site._server
            if server is not None and getattr(server, "sockets", None):
                self.bound_port = int(server.sockets[0].getsockname()[1])
            else:
                self.bound_port = self.port
            log.info("API on http://%s:%s/", self.host, self.bound_port)
            self.ready.set()
            await asyncio.Event().wait()
        finally:
            with contextlib.suppress(Exception):
                await runner.cleanup()
