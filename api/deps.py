"""Typed dependencies of the routes: the database session and the settings.

Who the caller is and what they may do is `authz`'s job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from commonpool.scheduler.config import Settings
from commonpool.scheduler.store.uow import Database


def get_db(request: Request) -> Database:
    return request.app.state.db


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def write_session(db: Annotated[Database, Depends(get_db)]) -> Iterator[Session]:
    """One transaction per request, committed after the route returns."""
    with db.unit_of_work() as session:
        yield session


def read_session(db: Annotated[Database, Depends(get_db)]) -> Iterator[Session]:
    with db.unit_of_work(write=False) as session:
        yield session


# scope="function": commit before the response is sent, so a 2xx means it is stored.
WriteSession = Annotated[Session, Depends(write_session, scope="function")]
ReadSession = Annotated[Session, Depends(read_session, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]


async def in_write_unit(
    request: Request, use_case: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """Run `use_case(session, ...)` in one write unit of work, in one thread-pool hop.

    The result is converted to its API model inside the transaction's thread,
    so the event loop never touches the session. Used on the hottest routes;
    the others take a `WriteSession` dependency (three hops, simpler code).
    """
    db = get_db(request)
    endpoint = request.scope["route"].response_model

    def run() -> Any:
        with db.unit_of_work(exclusive=True) as session:
            return endpoint.model_validate(use_case(session, *args, **kwargs))

    return await run_in_threadpool(run)
