"""/api/v1/nodes: enrollment, heartbeats, list, drain, cordon."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, status

from commonpool.scheduler.services import nodes as svc

from ..deps import NodeDep, ReadSession, SettingsDep, WriteSession
from ..schemas import (
    EnrollmentTokenCreate,
    EnrollmentTokenRead,
    Heartbeat,
    NodeAction,
    NodeEnroll,
    NodeEnrolled,
    NodeRead,
)

router = APIRouter(tags=["nodes"])


@router.post(
    "/enrollment-tokens", status_code=status.HTTP_201_CREATED, response_model=EnrollmentTokenRead
)
def create_enrollment_token(
    body: EnrollmentTokenCreate, session: WriteSession
) -> EnrollmentTokenRead:
    token, row = svc.create_enrollment_token(session, ttl=timedelta(seconds=body.ttl_s))
    return EnrollmentTokenRead(id=row.id, token=token, expires_at=row.expires_at)


@router.post("/nodes/enroll", status_code=status.HTTP_201_CREATED, response_model=NodeEnrolled)
def enroll(body: NodeEnroll, session: WriteSession) -> NodeEnrolled:
    reg = svc.NodeRegistration(**body.model_dump(exclude={"token"}))
    node, credential = svc.enroll_node(session, body.token, reg)
    return NodeEnrolled(node=NodeRead.model_validate(node), credential=credential)


@router.post("/nodes/{node_id}/heartbeat", response_model=NodeRead)
def heartbeat(
    node_id: str, body: Heartbeat, node: NodeDep, session: WriteSession, settings: SettingsDep
) -> NodeRead:
    svc.ensure_same_node(node, node_id)
    node = svc.heartbeat(
        session,
        node,
        epoch=body.epoch,
        utilization=body.utilization,
        lease=timedelta(seconds=settings.node_lease_s),
    )
    return NodeRead.model_validate(node)


@router.get("/nodes", response_model=list[NodeRead])
def list_nodes(session: ReadSession) -> list[NodeRead]:
    return [NodeRead.model_validate(n) for n in svc.list_nodes(session)]


@router.get("/nodes/{node_id}", response_model=NodeRead)
def get_node(node_id: str, session: ReadSession) -> NodeRead:
    return NodeRead.model_validate(svc.get_node(session, node_id))


@router.post("/nodes/{node_id}/drain", response_model=NodeRead)
def drain(node_id: str, session: WriteSession, body: NodeAction | None = None) -> NodeRead:
    reason = body.reason if body else None
    return NodeRead.model_validate(svc.drain_node(session, node_id, actor="api", reason=reason))


@router.post("/nodes/{node_id}/cordon", response_model=NodeRead)
def cordon(node_id: str, session: WriteSession, body: NodeAction | None = None) -> NodeRead:
    reason = body.reason if body else None
    return NodeRead.model_validate(svc.cordon_node(session, node_id, actor="api", reason=reason))


@router.post("/nodes/{node_id}/uncordon", response_model=NodeRead)
def uncordon(node_id: str, session: WriteSession) -> NodeRead:
    return NodeRead.model_validate(svc.uncordon_node(session, node_id, actor="api"))
