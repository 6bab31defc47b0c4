"""/api/v1/artifacts: publish, browse, read and download shared models and datasets.

An upload is the raw body (a tar archive of the artifact's directory, as
`commonpool artifacts upload` and the job runner send), streamed into the
blob store while it is hashed; its metadata rides in the query. A job's own
token may upload only the model its spec names in `publish` and download
only the artifacts it declared as inputs.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from commonpool.scheduler.blobs import LocalBlobStore
from commonpool.scheduler.domain.artifacts import (
    NAME_PATTERN,
    ArtifactKind,
    ArtifactRef,
    Visibility,
)
from commonpool.scheduler.domain.errors import Invalid, NotFound, RangeNotSatisfiable
from commonpool.scheduler.domain.principal import Principal, PrincipalKind
from commonpool.scheduler.services import artifacts as svc
from commonpool.scheduler.services.model_card import model_card
from commonpool.scheduler.store.models import Artifact

from ..authz import (
    ARTIFACT_FETCH,
    ARTIFACT_PUBLISH,
    JOBS_READ,
    authorize,
    submit_project,
    visible_projects,
)
from ..deps import ReadSession, WriteSession, get_db
from ..schemas import ArtifactDetail, ArtifactRead, ArtifactUpdate, Page

router = APIRouter(prefix="/artifacts", tags=["artifacts"])

SHA256_HEADER = "X-Content-SHA256"
_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")
ArtifactName = Annotated[str, Query(pattern=f"^{NAME_PATTERN}$", max_length=100)]


def viewer_of(caller: Principal) -> svc.Viewer:
    return svc.Viewer(caller.subject, visible_projects(caller))


def _ref(text: str) -> ArtifactRef:
    try:
        return ArtifactRef.parse(text)
    except ValueError as exc:
        raise Invalid(str(exc), field="ref") from None


def _blobs(request: Request) -> LocalBlobStore:
    return request.app.state.blobs


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ArtifactRead)
async def upload(
    request: Request,
    caller: Annotated[Principal, authorize(ARTIFACT_PUBLISH)],
    name: ArtifactName,
    kind: ArtifactKind = ArtifactKind.MODEL,
    format: Annotated[str, Query(max_length=40, pattern=r"^[A-Za-z0-9._+-]+$")] = "files",
    visibility: Visibility = Visibility.PROJECT,
    project: Annotated[str | None, Query(max_length=100)] = None,
    licence: Annotated[str | None, Query(max_length=100)] = None,
    description: Annotated[str | None, Query(max_length=2000)] = None,
    expected_sha256: Annotated[str | None, Header(alias=SHA256_HEADER)] = None,
    content_length: Annotated[int | None, Header()] = None,
) -> ArtifactRead:
    """Publish the body as the next version of `name` (201), checksummed on the way in.

    Refused before the body is read when the name, project or quota forbid
    it; a body whose sha256 differs from `X-Content-SHA256` is refused (422)
    and nothing is recorded.
    """
    new = await run_in_threadpool(
        _new_artifact, request, caller, name, kind, format, visibility, project, licence,
        description,
    )
    db = get_db(request)

    def check() -> None:
        with db.unit_of_work(write=False) as session:
            svc.check_new_version(session, new, content_length or 0)

    await run_in_threadpool(check)
    settings = request.app.state.settings
    writer = _blobs(request).writer(settings.artifact_max_bytes, expected_sha256)
    try:
        async for chunk in request.stream():
            writer.write(chunk)
        blob = await run_in_threadpool(writer.commit)
    except BaseException:
        writer.abort()
        raise

    def record() -> ArtifactRead:
        try:
            with db.unit_of_work(exclusive=True) as session:
                return ArtifactRead.model_validate(
                    svc.publish(session, new, blob, actor=caller.subject)
                )
        except BaseException:
            with db.unit_of_work(write=False) as session:
                if not svc.blob_in_use(session, blob.sha256):
                    _blobs(request).delete(blob.sha256)
            raise

    return await run_in_threadpool(record)


def _new_artifact(
    request: Request,
    caller: Principal,
    name: str,
    kind: ArtifactKind,
    format: str,
    visibility: Visibility,
    project: str | None,
    licence: str | None,
    description: str | None,
) -> svc.NewArtifact:
    """Who an upload belongs to: the job's owner and project for a job's own publish."""
    produced_by = None
    if caller.kind is PrincipalKind.JOB:
        assert caller.job_id is not None
        with get_db(request).unit_of_work(write=False) as session:
            publish_name, job_project, owner = svc.job_publication(session, caller.job_id)
        if name != publish_name or kind is not ArtifactKind.MODEL:
            raise Invalid(
                f"job {caller.job_id} may publish only model {publish_name!r}", field="name"
            )
        project, produced_by = job_project, caller.job_id
    else:
        project, owner = submit_project(caller, project), caller.subject
    return svc.NewArtifact(
        name=name,
        kind=kind,
        format=format,
        project=project,
        owner=owner,
        visibility=visibility,
        licence=licence,
        description=description,
        produced_by_job=produced_by,
    )


@router.get("", response_model=Page[ArtifactRead])
def list_artifacts(
    session: ReadSession,
    request: Request,
    caller: Annotated[Principal, authorize(JOBS_READ)],
    kind: ArtifactKind | None = None,
    q: Annotated[str | None, Query(max_length=100, description="Part of a name or description.")]
    = None,
    project: Annotated[str | None, Query(max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
    cursor: Annotated[str | None, Query(max_length=40)] = None,
) -> Page[ArtifactRead]:
    page = svc.list_artifacts(
        session,
        viewer_of(caller),
        kind=kind,
        query=q,
        project=project,
        limit=min(limit, request.app.state.settings.page_size_max),
        cursor=cursor,
    )
    return Page[ArtifactRead](
        items=[ArtifactRead.model_validate(a) for a in page.items], next_cursor=page.next_cursor
    )


@router.get("/{ref}", response_model=ArtifactDetail)
def get_artifact(
    ref: str, session: ReadSession, caller: Annotated[Principal, authorize(JOBS_READ)]
) -> ArtifactDetail:
    """`name@version`, or `name` for the newest version you may see; with its model card."""
    artifact = svc.get_artifact(session, viewer_of(caller), _ref(ref))
    summary = ArtifactRead.model_validate(artifact).model_dump()
    return ArtifactDetail.model_validate({**summary, "card": model_card(session, artifact)})


@router.patch("/{ref}", response_model=ArtifactRead)
def update_artifact(
    ref: str,
    body: ArtifactUpdate,
    session: WriteSession,
    caller: Annotated[Principal, authorize(JOBS_READ)],
) -> ArtifactRead:
    """Change visibility, licence or description (owner, project admin or pool admin)."""
    parsed = _ref(ref)
    target = svc.get_artifact(session, viewer_of(caller), parsed)
    artifact = svc.update_artifact(
        session,
        viewer_of(caller),
        parsed,
        body.model_dump(exclude_unset=True),
        may_manage=caller.can_manage_project(target.project),
        actor=caller.subject,
    )
    return ArtifactRead.model_validate(artifact)


@router.get(
    "/{ref}/content",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/x-tar": {}}},
        206: {"description": "The requested byte range (resuming a download)."},
        416: {"description": "The range starts past the end."},
    },
)
def download(
    ref: str,
    request: Request,
    session: WriteSession,
    caller: Annotated[Principal, authorize(ARTIFACT_FETCH)],
    range_header: Annotated[str | None, Header(alias="Range")] = None,
) -> StreamingResponse:
    """The artifact's bytes; `Range: bytes=N-` resumes. Check them against `X-Content-SHA256`."""
    artifact = _readable(session, caller, _ref(ref))
    size = artifact.size_bytes
    start, end = _byte_range(range_header, size)
    if start == 0:
        svc.count_download(session, artifact.id)
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(end - start),
        "ETag": f'"{artifact.sha256}"',
        SHA256_HEADER: artifact.sha256,
        "Content-Disposition": f'attachment; filename="{artifact.name}-{artifact.version}.tar"',
    }
    code = status.HTTP_200_OK
    if range_header is not None:
        code = status.HTTP_206_PARTIAL_CONTENT
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    chunks = _blobs(request).read(artifact.sha256, start, end)
    return StreamingResponse(
        chunks, status_code=code, headers=headers, media_type="application/x-tar"
    )


def _readable(session: Session, caller: Principal, ref: ArtifactRef) -> Artifact:
    """What the caller may download: by visibility, or, for a job, its declared inputs."""
    if caller.kind is not PrincipalKind.JOB:
        return svc.get_artifact(session, viewer_of(caller), ref)
    artifact = svc.get_artifact(session, svc.Viewer(caller.subject, None), ref)
    assert caller.job_id is not None
    if not svc.reads_input(session, caller.job_id, artifact.id):
        raise NotFound(
            f"artifact {ref} is not an input of job {caller.job_id}", entity="artifact", id=str(ref)
        )
    return artifact


def _byte_range(header: str | None, size: int) -> tuple[int, int]:
    """[start, end) from `bytes=N-` or `bytes=N-M` (one range: what resuming needs)."""
    if header is None:
        return 0, size
    match = _RANGE.match(header.strip())
    if match is None:
        raise Invalid(f"unsupported Range {header!r}: use bytes=N- or bytes=N-M", field="Range")
    start = int(match.group(1))
    end = min(size, int(match.group(2)) + 1) if match.group(2) else size
    if start >= size or end <= start:
        raise RangeNotSatisfiable(f"range {header!r} is outside the {size} bytes", size=size)
    return start, end
