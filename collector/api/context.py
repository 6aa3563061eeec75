"""What every API route module receives: configuration, database, metrics, journal, features.

Feature route modules (`collector/api/alerts.py`, `schedule.py`, `archive.py`) expose
`setup(app: web.Application, ctx: ApiContext) -> None` and call `require_role` on every
mutating route.
"""

from __future__ import annotations

import hmac
import json
from dataclasses import dataclass, field
from typing import Any, Literal, overload

from aiohttp import web
from prometheus_client import CollectorRegistry

from core.config import GridWatchConfig
from core.interfaces import Journal
from storage.db import Database

Role = Literal["viewer", "operator", "admin"]
_RANK = {"viewer": 0, "operator": 1, "admin": 2}

CTX_KEY: web.AppKey[ApiContext] = web.AppKey("gridwatch_ctx")


@dataclass
class ApiContext:
    """Shared state of the API; `features` holds feature services by name ('alerting', ...)."""

    config: GridWatchConfig
    db: Database
    registry: CollectorRegistry
    journal: Journal
    tokens: dict[str, tuple[str, Role]] = field(default_factory=dict)  # secret -> (user, role)
    features: dict[str, Any] = field(default_factory=dict)


def get_ctx(request: web.Request) -> ApiContext:
    """The ApiContext of the running app."""
    return request.app[CTX_KEY]


def require_role(request: web.Request, role: Role) -> str:
    """Check the bearer token's role; return the user name. 401 without, 403 below `role`.

    The token is compared in constant time and never echoed in errors or logs.
    """
    ctx = get_ctx(request)
    if role == "viewer" and ctx.config.api.public_read and not ctx.tokens:
        return "anonymous"
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        raise web.HTTPUnauthorized(text='{"error": "a bearer token is required"}', content_type="application/json")
    given = header[7:].strip().encode()
    for secret, (user, user_role) in ctx.tokens.items():
        if hmac.compare_digest(secret.encode(), given):
            if _RANK[user_role] < _RANK[role]:
                raise web.HTTPForbidden(text=f'{{"error": "role {role} required, {user} has {user_role}"}}',
                                        content_type="application/json")
            return user
    raise web.HTTPUnauthorized(text='{"error": "unknown token"}', content_type="application/json")


class JsonError(web.HTTPException):
    """An HTTP error answered as JSON `{"error": message}` with the given status."""

    def __init__(self, status: int, message: str) -> None:
        self.status_code = status
        super().__init__(text=json.dumps({"error": message}), content_type="application/json")


@overload
def query_int(request: web.Request, name: str, default: int, lo: int, hi: int) -> int: ...
@overload
def query_int(request: web.Request, name: str, default: None, lo: int, hi: int) -> int | None: ...
def query_int(request: web.Request, name: str, default: int | None, lo: int, hi: int) -> int | None:
    """An integer query parameter within [lo, hi]; `default` when absent or empty; 400 otherwise."""
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        raise JsonError(400, f"parameter {name!r}: {raw!r} is not an integer") from None
    if not lo <= v <= hi:
        raise JsonError(400, f"parameter {name!r}: {v} is outside {lo}..{hi}")
    return v


async def json_object_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object body ({} when there is none); 400 for anything else."""
    if not request.can_read_body:
        return {}
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise JsonError(400, "request body must be a JSON object") from None
    if not isinstance(data, dict):
        raise JsonError(400, "request body must be a JSON object")
    return data
