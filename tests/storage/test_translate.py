"""translate(): driver errors into the GridWatch error tree."""

from __future__ import annotations

import psycopg
from psycopg import errors as pgerr

from core.errors import SinkRejected, SinkUnavailable
from storage.db import translate


def test_connection_trouble_is_unavailable() -> None:
    for e in (psycopg.OperationalError("server closed the connection"), psycopg.InterfaceError("closed"),
              pgerr.AdminShutdown("terminating"), pgerr.QueryCanceled("statement timeout")):
        out = translate(e, "write")
        assert isinstance(out, SinkUnavailable), e
        assert str(out).startswith("write: ")


def test_bad_data_is_rejected() -> None:
    for e in (pgerr.UniqueViolation("dup"), pgerr.NumericValueOutOfRange("range"), pgerr.UndefinedTable("x"),
              pgerr.CheckViolation("check"), pgerr.InvalidDatetimeFormat("ts")):
        out = translate(e, "query")
        assert isinstance(out, SinkRejected), e
        assert "rejected by the database" in str(out)


def test_anything_else_is_retryable() -> None:
    assert isinstance(translate(psycopg.errors.InternalError_("boom"), "x"), SinkUnavailable)
