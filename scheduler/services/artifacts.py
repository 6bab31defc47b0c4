"""Artifact use cases: publish a version, find and read what the caller may see, lineage.

Visibility is decided here, by a `Viewer` (who asks, which projects they
belong to), for both one artifact and a listing, so the API and a job's
submit apply one rule: an artifact the caller may not see is "not found"
(404), so its name does not reveal that it exists.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, false, func, or_, select, update
from sqlalchemy.orm import Session

from ..blobs import BlobInfo
from ..domain.artifacts import ArtifactKind, ArtifactRef, InputRole, Visibility
from ..domain.errors import Conflict, Forbidden, Invalid, NotFound, QuotaExceeded
from ..domain.ids import new_id
from ..domain.states import JobState
from ..spec import JobSpec
from ..store.models import Artifact, Job, JobInput, Project
from . import audit
from .pagination import Page


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who reads artifacts: a user name and their projects (None: a pool admin, sees all)."""

    subject: str
    projects: frozenset[str] | None

    def can_see(self, artifact: Artifact) -> bool:
        if self.projects is None or artifact.visibility == Visibility.PUBLIC:
            return True
        if artifact.visibility == Visibility.PROJECT:
            return artifact.project in self.projects
        return artifact.owner == self.subject

    def clause(self) -> ColumnElement[bool]:
        """The same rule as `can_see`, as a SQL condition."""
        if self.projects is None:
            return ~false()
        return or_(
            Artifact.visibility == Visibility.PUBLIC.value,
            and_(
                Artifact.visibility == Visibility.PROJECT.value,
                Artifact.project.in_(sorted(self.projects)),
            ),
            and_(Artifact.visibility == Visibility.PRIVATE.value, Artifact.owner == self.subject),
        )


@dataclass(frozen=True, slots=True)
class NewArtifact:
    """What an upload says about itself; the bytes are already in the blob store."""

    name: str
    kind: ArtifactKind
    format: str
    project: str
    owner: str
    visibility: Visibility = Visibility.PROJECT
    licence: str | None = None
    description: str | None = None
    produced_by_job: str | None = None


def check_new_version(session: Session, new: NewArtifact, size_bytes: int) -> int:
    """The version `new` would get, or why it may not be published (nothing is written).

    A name belongs to the project that published its first version, and
    keeps its kind; the project's artifacts must stay within its quota.
    The route calls this before reading an upload (with the declared size)
    and `publish` again, under the project's lock, with the real one.
    """
    project = session.scalar(
        select(Project).where(Project.name == new.project).with_for_update()
    )
    if project is None:
        raise NotFound(f"project {new.project!r} not found", entity="project", id=new.project)
    first = session.execute(
        select(Artifact.project, Artifact.kind)
        .where(Artifact.name == new.name)
        .order_by(Artifact.version)
        .limit(1)
    ).first()
    if first is not None and first.project != new.project:
        raise Conflict(
            f"artifact name {new.name!r} belongs to project {first.project!r}; "
            "publish under another name",
            entity="artifact",
            id=new.name,
        )
    if first is not None and first.kind != new.kind.value:
        raise Conflict(
            f"artifact {new.name!r} is a {first.kind}, not a {new.kind.value}",
            entity="artifact",
            id=new.name,
        )
    if project.max_artifact_bytes is not None:
        stored = session.scalar(
            select(func.coalesce(func.sum(Artifact.size_bytes), 0)).where(
                Artifact.project == new.project
            )
        )
        if stored + size_bytes > project.max_artifact_bytes:
            raise QuotaExceeded(
                f"project {new.project!r} stores {stored:,} bytes of artifacts; "
                f"{size_bytes:,} more would pass its quota of {project.max_artifact_bytes:,}",
                project=new.project,
            )
    latest = session.scalar(select(func.max(Artifact.version)).where(Artifact.name == new.name))
    return 1 + (latest or 0)


def publish(session: Session, new: NewArtifact, blob: BlobInfo, *, actor: str) -> Artifact:
    """Record the next version of `new.name` for bytes already in the blob store."""
    version = check_new_version(session, new, blob.size_bytes)
    artifact = Artifact(
        id=new_id("art"),
        name=new.name,
        version=version,
        kind=new.kind.value,
        sha256=blob.sha256,
        size_bytes=blob.size_bytes,
        format=new.format,
        project=new.project,
        owner=new.owner,
        visibility=new.visibility.value,
        licence=new.licence,
        description=new.description,
        produced_by_job=new.produced_by_job,
        downloads=0,
    )
    session.add(artifact)
    session.flush()
    audit.record(
        session, actor, "artifact.publish", f"{new.name}@{version}",
        project=new.project, sha256=blob.sha256, size_bytes=blob.size_bytes,
    )
    return artifact


def blob_in_use(session: Session, sha256: str) -> bool:
    """Whether any artifact names these bytes (an unused upload's blob may be deleted)."""
    return session.scalar(select(Artifact.id).where(Artifact.sha256 == sha256).limit(1)) is not None


def update_artifact(
    session: Session,
    viewer: Viewer,
    ref: ArtifactRef,
    changes: dict[str, Any],
    *,
    may_manage: bool,
    actor: str,
) -> Artifact:
    """Change visibility, licence or description: the owner, or a manager of its project."""
    artifact = get_artifact(session, viewer, ref)
    if artifact.owner != viewer.subject and not may_manage:
        raise Forbidden(
            f"only {artifact.owner} or an admin of project {artifact.project!r} may change "
            f"{artifact.name}@{artifact.version}"
        )
    for field, value in changes.items():
        setattr(artifact, field, value.value if isinstance(value, Visibility) else value)
    session.flush()
    audit.record(
        session, actor, "artifact.update", f"{artifact.name}@{artifact.version}",
        project=artifact.project, **{k: str(v) for k, v in changes.items()},
    )
    return artifact


def job_publication(session: Session, job_id: str) -> tuple[str, str, str]:
    """(publish name, project, owner) of a job that may publish; 403 for one that may not."""
    job = session.get(Job, job_id)
    if job is None or job.publish is None:
        raise Forbidden(f"job {job_id} did not ask to publish a model (`publish:`)")
    if job.state not in (JobState.STARTING.value, JobState.RUNNING.value):
        raise Forbidden(f"job {job_id} is {job.state}: only a running job publishes its model")
    return job.publish, job.project, job.owner


def get_artifact(session: Session, viewer: Viewer, ref: ArtifactRef) -> Artifact:
    """The version `ref` names (or the newest the viewer may see); 404 when not visible."""
    stmt = select(Artifact).where(Artifact.name == ref.name, viewer.clause())
    if ref.version is not None:
        stmt = stmt.where(Artifact.version == ref.version)
    artifact = session.scalar(stmt.order_by(Artifact.version.desc()).limit(1))
    if artifact is None:
        raise NotFound(f"artifact {ref} not found", entity="artifact", id=str(ref))
    return artifact


def list_artifacts(
    session: Session,
    viewer: Viewer,
    *,
    kind: ArtifactKind | None = None,
    query: str | None = None,
    project: str | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> Page[Artifact]:
    """Visible artifacts, newest first; `query` matches name or description (case-insensitive)."""
    stmt = select(Artifact).where(viewer.clause())
    if kind is not None:
        stmt = stmt.where(Artifact.kind == kind.value)
    if project is not None:
        stmt = stmt.where(Artifact.project == project)
    if query:
        pattern = f"%{query.lower()}%"
        stmt = stmt.where(
            or_(
                func.lower(Artifact.name).like(pattern),
                func.lower(func.coalesce(Artifact.description, "")).like(pattern),
            )
        )
    if cursor is not None:
        stmt = stmt.where(Artifact.id < cursor)
    rows = list(session.scalars(stmt.order_by(Artifact.id.desc()).limit(limit + 1)))
    return Page(rows[:limit], rows[limit - 1].id if len(rows) > limit else None)


def count_download(session: Session, artifact_id: str) -> None:
    """One more whole download (a resumed one is counted once, at its first byte)."""
    session.execute(
        update(Artifact)
        .where(Artifact.id == artifact_id)
        .values(downloads=Artifact.downloads + 1)
    )


def resolve_inputs(
    session: Session, viewer: Viewer, spec: JobSpec, project: str
) -> list[tuple[Artifact, InputRole]]:
    """The artifacts a job of `project` reads, pinned to versions, and its `publish` name
    checked: 404/409/422 before anything is written."""
    wanted = [(ArtifactRef.parse(d), InputRole.DATASET) for d in spec.datasets]
    model = spec.service.model if spec.service else spec.init_from
    if model is not None:
        wanted.append((ArtifactRef.parse(model), InputRole.INIT))
    inputs = []
    for ref, role in wanted:
        artifact = get_artifact(session, viewer, ref)
        expected = ArtifactKind.MODEL if role is InputRole.INIT else ArtifactKind.DATASET
        if artifact.kind != expected.value:
            field = "datasets" if role is InputRole.DATASET else (
                "service.model" if spec.service else "init_from"
            )
            raise Invalid(
                f"{field} names {artifact.name}@{artifact.version}, a {artifact.kind}; "
                f"it must be a {expected.value}",
                field=field,
            )
        inputs.append((artifact, role))
    if spec.publish is not None:
        check_publishable(session, spec.publish, project)
    return inputs


def check_publishable(session: Session, name: str, project: str) -> None:
    """Refuse at submit a `publish` name another project owns, not at the job's end."""
    owner = session.scalar(
        select(Artifact.project).where(Artifact.name == name).order_by(Artifact.version).limit(1)
    )
    if owner is not None and owner != project:
        raise Conflict(
            f"publish: artifact name {name!r} belongs to project {owner!r}",
            entity="artifact",
            id=name,
            field="publish",
        )


def record_inputs(
    session: Session, job_ids: Sequence[str], inputs: Sequence[tuple[Artifact, InputRole]]
) -> None:
    if inputs:
        session.add_all(
            JobInput(job_id=job_id, artifact_id=artifact.id, role=role.value)
            for job_id in job_ids
            for artifact, role in inputs
        )


def job_inputs(session: Session, job_id: str) -> list[tuple[Artifact, InputRole]]:
    rows = session.execute(
        select(Artifact, JobInput.role)
        .join(JobInput, JobInput.artifact_id == Artifact.id)
        .where(JobInput.job_id == job_id)
        .order_by(JobInput.role, Artifact.name)
    )
    return [(artifact, InputRole(role)) for artifact, role in rows]


def reads_input(session: Session, job_id: str, artifact_id: str) -> bool:
    """Whether the job declared this artifact as an input (a job token may fetch only those)."""
    return (
        session.scalar(
            select(JobInput.artifact_id).where(
                JobInput.job_id == job_id, JobInput.artifact_id == artifact_id
            )
        )
        is not None
    )
