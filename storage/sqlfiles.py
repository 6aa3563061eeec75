"""Named queries from `storage/sql/*.sql`.

A file holds blocks introduced by a line `-- name: <query_name>`; everything up to the next
such line is the query. Queries are `LiteralString`s as far as the type checker is concerned:
they come from files shipped with the package, never from input.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any, LiteralString, cast

import psycopg

from storage.db import read_sql

_NAME_RE = re.compile(r"^--\s*name:\s*([a-z0-9_]+)\s*$", re.MULTILINE)


@cache
def queries(file: str) -> dict[str, LiteralString]:
    """Every named query of `storage/sql/<file>`."""
    text = read_sql(file)
    out: dict[str, LiteralString] = {}
    parts = _NAME_RE.split(text)
    # parts = [preamble, name1, body1, name2, body2, ...]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in out:
            raise ValueError(f"storage/sql/{file}: query {name!r} is defined twice")
        out[name] = cast(LiteralString, body.strip())
    return out


def query(file: str, name: str) -> LiteralString:
    """The named query `name` of `storage/sql/<file>`."""
    try:
        return queries(file)[name]
    except KeyError:
        raise KeyError(f"storage/sql/{file} has no query named {name!r}") from None


def as_literal(text: str) -> LiteralString:
    """Treat SQL text read from the package's own files as a literal (for migrations)."""
    return text  # mypy treats LiteralString as str; the cast is for other checkers' sake


async def fetch_all(cur: psycopg.AsyncCursor[Any]) -> list[Any]:
    """All remaining rows of `cur`, typed loosely (columns are known from the query text)."""
    return await cur.fetchall()


async def fetch_one(cur: psycopg.AsyncCursor[Any]) -> Any:
    """The next row of `cur` or None."""
    return await cur.fetchone()
