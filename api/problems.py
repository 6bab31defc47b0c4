"""Every error becomes an RFC 9457 problem+json response, here and nowhere else.

Routes never build error responses: they (or the services below them)
raise a `CommonpoolError`, and the mapping below picks the status along the
class hierarchy.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from commonpool.scheduler.domain import errors as e

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = 5


class Problem(BaseModel):
    """The body of every error response (RFC 9457), plus the fields its error carries."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str
    code: str


PROBLEM_DESCRIPTIONS: dict[int, str] = {
    400: "The body is not valid JSON or not UTF-8.",
    401: "No credential, or an unknown, expired or revoked one.",
    403: "The credential may not do this (policy, scope, quota).",
    404: "A named object does not exist, or the caller may not see it.",
    409: "The request conflicts with the current state.",
    413: "The body is larger than the server accepts.",
    416: "The byte range starts past the end of the content.",
    422: "The request is malformed, or makes no sense.",
    429: "Too many requests, or the queue quota is reached; see Retry-After.",
    503: "The database is unreachable, or the service is not configured; see Retry-After.",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these statuses: each an application/problem+json `Problem`."""
    schema = {"$ref": "#/components/schemas/Problem"}
    return {
        status: {
            "description": PROBLEM_DESCRIPTIONS[status],
            "content": {PROBLEM_JSON: {"schema": schema}},
        }
        for status in statuses
    }


API_PROBLEMS = problem_responses(400, 401, 403, 404, 409, 413, 422, 429, 503)


def document_problems(app: FastAPI) -> None:
    """Put `Problem` in the OpenAPI components, where the problem responses refer to it."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schemas = build().setdefault("components", {}).setdefault("schemas", {})
            schemas["Problem"] = Problem.model_json_schema()
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


STATUS: dict[type[e.CommonpoolError], int] = {
    e.CommonpoolError: 500,
    e.NotFound: 404,
    e.Conflict: 409,
    e.InvalidTransition: 409,
    e.StaleLease: 409,
    e.Invalid: 422,
    e.Unauthorized: 401,
    e.Forbidden: 403,
    e.QuotaExceeded: 403,
    e.PayloadTooLarge: 413,
    e.RangeNotSatisfiable: 416,
    e.QueueQuotaExceeded: 429,
    e.RateLimited: 429,
    e.Unavailable: 503,
}


def status_for(exc: e.CommonpoolError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def problem(
    request: Request,
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **fields: Any,
) -> JSONResponse:
    body = {
        "type": f"/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "code": code,
        **fields,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(e.CommonpoolError)
    async def _domain(request: Request, exc: e.CommonpoolError) -> JSONResponse:
        status = status_for(exc)
        headers = None
        if status == 503:
            headers = {"Retry-After": str(RETRY_AFTER_S)}
        elif status == 429:
            headers = {"Retry-After": str(exc.fields.get("retry_after_s", RETRY_AFTER_S))}
        return problem(request, status, exc.code, exc.title, exc.detail, headers, **exc.fields)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                "loc": list(err.get("loc", ())),
                "msg": err.get("msg", ""),
                "type": err.get("type", ""),
            }
            for err in exc.errors()
        ]
        first = errors[0] if errors else {"loc": [], "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"])
        return problem(
            request, 422, "validation", "Invalid request", f"{where}: {first['msg']}", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(
            request, exc.status_code, f"http-{exc.status_code}", str(exc.detail), str(exc.detail)
        )

    @app.exception_handler(IntegrityError)
    async def _integrity(request: Request, exc: IntegrityError) -> JSONResponse:
        return problem(
            request,
            409,
            e.Conflict.code,
            e.Conflict.title,
            "the change conflicts with the registry's constraints",
        )

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> JSONResponse:
        # The database refused a value the request carried: a NUL character, an out-of-range int.
        return problem(
            request,
            422,
            e.Invalid.code,
            e.Invalid.title,
            "a value cannot be stored (a NUL character, or a number out of range)",
        )

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        return problem(
            request,
            503,
            e.Unavailable.code,
            e.Unavailable.title,
            "database unavailable",
            {"Retry-After": str(RETRY_AFTER_S)},
        )
