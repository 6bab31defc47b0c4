"""`commonpool admin ...`: users, projects, quotas, members, tokens and the audit log."""

from __future__ import annotations

import typer

from commonpool.scheduler.domain.principal import USER_SCOPES, Role, Scope
from commonpool.scheduler.spec import parse_memory

from ..schemas import ProjectCreate, QuotaFields, TokenCreate
from . import render
from .context import JsonOption, state

admin_app = typer.Typer(help="Pool administration (needs an admin token).", no_args_is_help=True)

SCOPES_HELP = ", ".join(s.value for s in Scope)
ArtifactQuotaOption = typer.Option(
    None, "--max-artifacts", help="Bytes its artifacts may store in all, e.g. 50GiB."
)


@admin_app.command("create-user")
def create_user(
    name: str = typer.Argument(..., help="User name."),
    admin: bool = typer.Option(False, "--admin", help="Make the user a pool admin."),
    as_json: bool = JsonOption,
) -> None:
    """Create a user (then give them a project and a token)."""
    with state.client() as client:
        user = client.create_user(name, admin=admin)
    render.print_json(user) if as_json else render.console.print(
        f"user {user.name} ({user.id}){' admin' if user.is_admin else ''}"
    )


@admin_app.command("users")
def users(as_json: bool = JsonOption) -> None:
    """List users."""
    with state.client() as client:
        items = client.list_users()
    if as_json:
        render.print_json(items)
        return
    rows = [(u.name, u.id, "yes" if u.is_admin else "", render.age(u.created_at)) for u in items]
    render.console.print(render.table("users", ["NAME", "ID", "ADMIN", "CREATED"], rows))


@admin_app.command("create-project")
def create_project(
    name: str = typer.Argument(..., help="Project name."),
    weight: float = typer.Option(1.0, min=0.001, help="Fair-share weight."),
    max_cpus: float | None = typer.Option(None, min=0, help="CPUs its jobs may hold at once."),
    max_gpus: int | None = typer.Option(None, min=0, help="GPUs its jobs may hold at once."),
    max_queued: int | None = typer.Option(None, min=0, help="Jobs it may have waiting."),
    max_artifacts: str | None = ArtifactQuotaOption,
    as_json: bool = JsonOption,
) -> None:
    """Create a project, optionally with quotas (unset = unlimited)."""
    body = ProjectCreate(
        name=name,
        weight=weight,
        max_cpus=max_cpus,
        max_gpus=max_gpus,
        max_queued_jobs=max_queued,
        max_artifact_bytes=_bytes(max_artifacts),
    )
    with state.client() as client:
        project = client.create_project(body)
    render.print_json(project) if as_json else render.console.print(f"project {project.name}")


@admin_app.command("set-quota")
def set_quota(
    project: str = typer.Argument(..., help="Project name."),
    max_cpus: float | None = typer.Option(None, min=0, help="CPUs (unset = unlimited)."),
    max_gpus: int | None = typer.Option(None, min=0, help="GPUs (unset = unlimited)."),
    max_queued: int | None = typer.Option(None, min=0, help="Queued jobs (unset = unlimited)."),
    max_artifacts: str | None = ArtifactQuotaOption,
    as_json: bool = JsonOption,
) -> None:
    """Replace a project's quotas (each limit not given becomes unlimited)."""
    quota = QuotaFields(
        max_cpus=max_cpus,
        max_gpus=max_gpus,
        max_queued_jobs=max_queued,
        max_artifact_bytes=_bytes(max_artifacts),
    )
    with state.client() as client:
        row = client.set_quota(project, quota)
    render.print_json(row) if as_json else render.console.print(
        f"project {row.name}: cpus {_limit(row.max_cpus)}, gpus {_limit(row.max_gpus)}, "
        f"queued {_limit(row.max_queued_jobs)}, artifacts {_size_limit(row.max_artifact_bytes)}"
    )


def _limit(value: float | None) -> str:
    return "unlimited" if value is None else f"{value:g}"


def _size_limit(value: int | None) -> str:
    return "unlimited" if value is None else render.size(value)


def _bytes(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return parse_memory(text)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--max-artifacts") from None


@admin_app.command("projects")
def projects(as_json: bool = JsonOption) -> None:
    """List projects (yours; all for an admin) with their quotas."""
    with state.client() as client:
        items = client.list_projects()
    if as_json:
        render.print_json(items)
        return
    rows = [
        (p.name, f"{p.weight:g}", _limit(p.max_cpus), _limit(p.max_gpus), _limit(p.max_queued_jobs))
        for p in items
    ]
    render.console.print(
        render.table("projects", ["NAME", "WEIGHT", "MAX CPUS", "MAX GPUS", "MAX QUEUED"], rows)
    )


@admin_app.command("add-member")
def add_member(
    project: str = typer.Argument(..., help="Project name."),
    user: str = typer.Argument(..., help="User name."),
    role: Role = typer.Option(Role.MEMBER, help="member or project-admin."),
) -> None:
    """Add a user to a project (or change their role there)."""
    with state.client() as client:
        member = client.set_member(project, user, role.value)
    render.console.print(f"{member.user} is {member.role.value} of {project}")


@admin_app.command("remove-member")
def remove_member(
    project: str = typer.Argument(..., help="Project name."),
    user: str = typer.Argument(..., help="User name."),
) -> None:
    """Remove a user from a project."""
    with state.client() as client:
        client.remove_member(project, user)
    render.console.print(f"{user} removed from {project}")


@admin_app.command("create-token")
def create_token(
    user: str = typer.Argument(..., help="Whose token."),
    scope: list[Scope] = typer.Option(
        list(USER_SCOPES), "--scope", help=f"Repeat for each scope: {SCOPES_HELP}."
    ),
    ttl: int | None = typer.Option(None, min=1, help="Seconds until it expires (default never)."),
    name: str = typer.Option("", help="A label, e.g. where the token is used."),
    as_json: bool = JsonOption,
) -> None:
    """Create an API token; its secret is printed once and stored only as a hash."""
    body = TokenCreate(user=user, scopes=scope, ttl_s=ttl, name=name)
    with state.client() as client:
        token = client.create_token(body)
    if as_json:
        render.print_json(token)
        return
    render.err_console.print(
        f"token {token.id} for {token.user} ({', '.join(token.scopes)}; expires "
        f"{token.expires_at or 'never'}), shown once:"
    )
    print(token.token)


@admin_app.command("tokens")
def tokens(
    user: str | None = typer.Option(None, help="Only this user's tokens."),
    as_json: bool = JsonOption,
) -> None:
    """List tokens (never their secrets)."""
    with state.client() as client:
        items = client.list_tokens(user)
    if as_json:
        render.print_json(items)
        return
    rows = [
        (
            t.id,
            t.user,
            t.name,
            ",".join(t.scopes),
            str(t.expires_at or "never"),
            "revoked" if t.revoked_at else "active",
        )
        for t in items
    ]
    render.console.print(
        render.table("tokens", ["ID", "USER", "NAME", "SCOPES", "EXPIRES", "STATUS"], rows)
    )


@admin_app.command("revoke-token")
def revoke_token(token_id: str = typer.Argument(..., help="Token id (tok_...).")) -> None:
    """Revoke a token: it is refused from now on (within auth_cache_s on other servers)."""
    with state.client() as client:
        token = client.revoke_token(token_id)
    render.console.print(f"token {token.id} of {token.user} revoked")


@admin_app.command("audit")
def audit(
    actor: str | None = typer.Option(None, help="Only this actor."),
    action: str | None = typer.Option(None, help="Only this action, e.g. job.cancel."),
    target: str | None = typer.Option(None, help="Only this target id."),
    limit: int = typer.Option(50, min=1, max=10_000, help="How many, newest first."),
    as_json: bool = JsonOption,
) -> None:
    """Who did what: submits, cancels, drains, enrollments, tokens, quotas."""
    with state.client() as client:
        page = client.audit_page(actor=actor, action=action, target=target, limit=limit)
    if as_json:
        render.print_json(page.items)
        return
    rows = [
        (
            f"{e.at:%Y-%m-%d %H:%M:%S}",
            e.actor,
            e.action,
            e.target or "-",
            e.project or "-",
            ", ".join(f"{k}={v}" for k, v in e.detail.items() if v is not None),
        )
        for e in page.items
    ]
    render.console.print(
        render.table("audit", ["AT", "ACTOR", "ACTION", "TARGET", "PROJECT", "DETAIL"], rows)
    )


def whoami(as_json: bool = JsonOption) -> None:
    """Who the server thinks you are: user, scopes, projects."""
    with state.client() as client:
        me = client.whoami()
    if as_json:
        render.print_json(me)
        return
    projects = ", ".join(f"{p} ({r})" for p, r in me.projects.items()) or "none"
    render.console.print(
        f"{me.subject} [{me.kind}]{' admin' if me.is_admin else ''}; scopes: "
        f"{', '.join(me.scopes) or '-'}; projects: {projects}"
    )
