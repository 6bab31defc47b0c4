"""/api/v1/nodes: enrollment, heartbeats, list, drain, cordon, revoke."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Request, status

from commonpool.scheduler.domain.errors import Unavailable
from commonpool.scheduler.domain.principal import Principal
from commonpool.scheduler.services import nodes as svc
from commonpool.scheduler.services.energy import SeriesPolicy, record_energy
from commonpool.scheduler.services.preemption import RequeueBackoff

from ..authz import (
    ADMIN,
    ADMIN_OR_AGENT,
    AGENT,
    AGENT_HEARTBEAT,
    ENROLL,
    JOBS_READ,
    PUBLIC,
    authorize,
)
from ..deps import ReadSession, SettingsDep, WriteSession
from ..schemas import (
    EnrollmentTokenCreate,
    EnrollmentTokenRead,
    Heartbeat,
    HeartbeatReply,
    HeldAllocation,
    NodeAction,
    NodeEnroll,
    NodeEnrolled,
    NodeRead,
    RayClusterInfo,
)

router = APIRouter(tags=["nodes"])


@router.post(
    "/enrollment-tokens", status_code=status.HTTP_201_CREATED, response_model=EnrollmentTokenRead
)
def create_enrollment_token(
    body: EnrollmentTokenCreate,
    session: WriteSession,
    caller: Annotated[Principal, authorize(ENROLL)],
) -> EnrollmentTokenRead:
    token, row = svc.create_enrollment_token(
        session, ttl=timedelta(seconds=body.ttl_s), actor=caller.subject
    )
    return EnrollmentTokenRead(id=row.id, token=token, expires_at=row.expires_at)


@router.post(
    "/nodes/enroll",
    status_code=status.HTTP_201_CREATED,
    response_model=NodeEnrolled,
    dependencies=[authorize(PUBLIC)],
)
def enroll(body: NodeEnroll, session: WriteSession) -> NodeEnrolled:
    reg = svc.NodeRegistration(**body.model_dump(exclude={"token"}))
    node, credential = svc.enroll_node(session, body.token, reg)
    return NodeEnrolled(node=NodeRead.model_validate(node), credential=credential)


@router.post("/nodes/{node_id}/heartbeat", response_model=HeartbeatReply)
def heartbeat(
    node_id: str,
    body: Heartbeat,
    caller: Annotated[Principal, authorize(AGENT_HEARTBEAT)],
    session: WriteSession,
    settings: SettingsDep,
    request: Request,
) -> HeartbeatReply:
    """Renew the lease and store the energy batch; the reply lists the node's allocations.

    The energy is written in the heartbeat's transaction only after the epoch
    check passed: a fenced agent's figures are refused with its heartbeat,
    and the agent keeps them buffered for the next accepted one.
    """
    node = svc.heartbeat(
        session,
        svc.get_node(session, node_id),
        epoch=body.epoch,
        utilization=body.utilization,
        lease=timedelta(seconds=settings.node_lease_s),
    )
    if body.energy is not None and body.energy.intervals:
        record_energy(
            session,
            node,
            body.energy,
            carbon=request.app.state.carbon,
            series=SeriesPolicy(settings.energy_bucket_s, settings.energy_retention_s),
        )
    held = [HeldAllocation.model_validate(a) for a in svc.active_allocations(session, node.id)]
    return HeartbeatReply(node=NodeRead.model_validate(node), allocations=held)


@router.post("/nodes/{node_id}/leave", response_model=NodeRead)
def leave(
    node_id: str,
    session: WriteSession,
    settings: SettingsDep,
    caller: Annotated[Principal, authorize(AGENT)],
    body: NodeAction | None = None,
) -> NodeRead:
    """The agent leaves the pool: remaining jobs are requeued, the node goes OFFLINE."""
    reason = (body.reason if body else None) or "agent left the pool"
    node = svc.get_node(session, node_id)
    left = svc.leave_pool(session, node, reason=reason, backoff=RequeueBackoff.of(settings))
    return NodeRead.model_validate(left)


@router.get("/pool/ray", response_model=RayClusterInfo, dependencies=[authorize(AGENT)])
def ray_cluster(settings: SettingsDep) -> RayClusterInfo:
    """Where an enrolled agent's Ray worker node joins (only for enrolled nodes)."""
    if not settings.ray_address:
        raise Unavailable("this pool runs no Ray cluster (ray_address is not configured)")
    return RayClusterInfo(
        address=settings.ray_address,
        dashboard_url=settings.ray_dashboard_url or None,
        auth_token=settings.ray_auth_token,
    )


@router.get("/nodes", response_model=list[NodeRead], dependencies=[authorize(JOBS_READ)])
def list_nodes(session: ReadSession) -> list[NodeRead]:
    return [NodeRead.model_validate(n) for n in svc.list_nodes(session)]


@router.get("/nodes/{node_id}", response_model=NodeRead, dependencies=[authorize(JOBS_READ)])
def get_node(node_id: str, session: ReadSession) -> NodeRead:
    return NodeRead.model_validate(svc.get_node(session, node_id))


AdminCaller = Annotated[Principal, authorize(ADMIN)]


@router.post("/nodes/{node_id}/drain", response_model=NodeRead)
def drain(
    node_id: str,
    session: WriteSession,
    caller: Annotated[Principal, authorize(ADMIN_OR_AGENT)],
    body: NodeAction | None = None,
) -> NodeRead:
    """No new work on the node; an admin, or its own agent when the donor stops it."""
    reason = body.reason if body else None
    node = svc.drain_node(session, node_id, actor=caller.subject, reason=reason)
    return NodeRead.model_validate(node)


@router.post("/nodes/{node_id}/cordon", response_model=NodeRead)
def cordon(
    node_id: str, session: WriteSession, caller: AdminCaller, body: NodeAction | None = None
) -> NodeRead:
    reason = body.reason if body else None
    node = svc.cordon_node(session, node_id, actor=caller.subject, reason=reason)
    return NodeRead.model_validate(node)


@router.post("/nodes/{node_id}/uncordon", response_model=NodeRead)
def uncordon(node_id: str, session: WriteSession, caller: AdminCaller) -> NodeRead:
    return NodeRead.model_validate(svc.uncordon_node(session, node_id, actor=caller.subject))


@router.post("/nodes/{node_id}/revoke", response_model=NodeRead)
def revoke(
    node_id: str,
    session: WriteSession,
    request: Request,
    caller: AdminCaller,
    body: NodeAction | None = None,
) -> NodeRead:
    """Revoke the node's identity for good: its credential is refused, its jobs requeued.

    The agent learns it at its next heartbeat (401) and stops its Ray worker node.
    """
    reason = (body.reason if body else None) or "revoked by an admin"
    node = svc.revoke_node(
        session,
        node_id,
        actor=caller.subject,
        reason=reason,
        backoff=RequeueBackoff.of(request.app.state.settings),
    )
    request.app.state.auth.forget()
    request.app.state.wake_scheduler()
    return NodeRead.model_validate(node)
