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
from sqlalchemy.exc import DBAPIError, IntegrityError
from starlette.exceptions import HTTPException as StarletteHTTPException

from commonpool.scheduler.domain import errors as e

PROBLEM_JSON = "application/problem+json"
RETRY_AFTER_S = 5

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
        headers = {"Retry-After": str(RETRY_AFTER_S)} if status == 503 else None
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
