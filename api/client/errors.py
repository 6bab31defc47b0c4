"""Problem responses back into the domain's exception classes.

`client.cancel_job()` on a finished job raises `InvalidTransition` with the
same fields the server had, so callers handle one vocabulary end to end.
"""

from __future__ import annotations

from typing import Any

from commonpool.scheduler.domain import errors as e

BY_CODE: dict[str, type[e.CommonpoolError]] = {cls.code: cls for cls in e.ALL_ERRORS}


class ApiError(e.CommonpoolError):
    """A problem whose code this client does not know (or a non-problem error body)."""

    code = "api-error"
    title = "API error"


class ConnectionFailed(e.Unavailable):
    """The server could not be reached at all."""

    code = "connection-failed"
    title = "Cannot reach the commonpool server"


def error_from_problem(status: int, body: dict[str, Any]) -> e.CommonpoolError:
    code = str(body.get("code", ""))
    detail = str(body.get("detail") or body.get("title") or f"HTTP {status}")
    fields = {
        k: v
        for k, v in body.items()
        if k not in {"type", "title", "status", "detail", "instance", "code"}
    }
    cls = BY_CODE.get(code, ApiError)
    err = e.CommonpoolError.__new__(cls)
    e.CommonpoolError.__init__(err, detail, **fields)
    err.status = status  # type: ignore[attr-defined]
    err.problem_code = code or f"http-{status}"  # type: ignore[attr-defined]
    return err
