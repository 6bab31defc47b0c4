"""Typed dependencies of the routes: the database session and the calling node."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session

from commonpool.scheduler.config import Settings
from commonpool.scheduler.domain.errors import Unauthorized
from commonpool.scheduler.services.nodes import authenticate_node
from commonpool.scheduler.store.models import Node
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


def _bearer(authorization: str | None) -> str:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("missing bearer credential")
    return authorization.split(" ", 1)[1].strip()


def calling_node(
    session: WriteSession, authorization: Annotated[str | None, Header()] = None
) -> Node:
    """The node whose agent credential is presented; agents may act only for it."""
    return authenticate_node(session, _bearer(authorization))


NodeDep = Annotated[Node, Depends(calling_node)]
