"""First start of a pool: mint the admin token once, and keep it where the local CLI finds it."""

from __future__ import annotations

import os
from pathlib import Path

from commonpool.scheduler.domain.principal import Scope
from commonpool.scheduler.services.accounts import BOOTSTRAP_ADMIN, bootstrap_admin, create_token
from commonpool.scheduler.store.uow import Database


def write_secret_file(path: Path, secret: str) -> None:
    """Write `secret` readable by this user only, never briefly world-readable."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    os.replace(tmp, path)


def bootstrap(db: Database, token_file: Path) -> str | None:
    """Create the admin and its token on a pool that has no admin; None if one exists.

    The secret goes to `token_file` (mode 0600), which the CLI on this
    machine reads when no COMMONPOOL_TOKEN is set.
    """
    with db.unit_of_work() as session:
        secret = bootstrap_admin(session)
    if secret is not None:
        write_secret_file(token_file, secret)
    return secret


def local_admin_token(db: Database, token_file: Path) -> str:
    """An admin token for an all-in-one pool on this machine (`up`, `demo`, tests).

    Uses the bootstrap token when this start created it or its file is
    still there; otherwise mints a fresh admin token (the process owns the
    database, so it is the pool's operator).
    """
    secret = bootstrap(db, token_file)
    if secret is not None:
        return secret
    if token_file.is_file():
        return token_file.read_text().strip()
    with db.unit_of_work() as session:
        secret, _ = create_token(
            session, BOOTSTRAP_ADMIN, scopes=list(Scope), name="local pool", actor="local-pool"
        )
    write_secret_file(token_file, secret)
    return secret
