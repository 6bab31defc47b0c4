"""Node use cases: enrollment, heartbeats (leases), drain and cordon."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..domain.errors import Forbidden, NotFound, StaleLease
from ..domain.ids import new_id
from ..domain.states import NodeState
from ..store.models import Allocation, EnrollmentToken, Node, utcnow
from ..store.transitions import transition_node
from . import audit
from .preemption import RequeueBackoff, jobs_on_node, preempt_job
from .secrets import hash_secret, new_secret


@dataclass(frozen=True, slots=True)
class NodeRegistration:
    """What an agent declares at enrollment: only the resources its donor shares."""

    name: str
    cpus: float
    memory_bytes: int
    gpus: int = 0
    gpu_model: str | None = None
    gpu_memory_bytes: int = 0
    gpu_type: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    region: str | None = None
    donor_project: str | None = None
    pue: float = 1.0


def create_enrollment_token(
    session: Session, *, ttl: timedelta, actor: str = "admin"
) -> tuple[str, EnrollmentToken]:
    """A single-use token; the clear value is returned once and never stored."""
    secret = new_secret("cpe")
    row = EnrollmentToken(
        id=new_id("enr"), token_hash=hash_secret(secret), expires_at=utcnow() + ttl
    )
    session.add(row)
    session.flush()
    audit.record(
        session, actor, "enrollment-token.create", row.id, expires_at=row.expires_at.isoformat()
    )
    return secret, row


def enroll_node(session: Session, token: str, reg: NodeRegistration) -> tuple[Node, str]:
    """Exchange an enrollment token for a node identity and its credential.

    The token is spent by a conditional UPDATE, so two agents presenting the
    same token cannot both enroll.
    """
    now = utcnow()
    node_id = new_id("node")
    spent = session.execute(
        update(EnrollmentToken)
        .where(
            EnrollmentToken.token_hash == hash_secret(token),
            EnrollmentToken.used_at.is_(None),
            EnrollmentToken.expires_at > now,
        )
        .values(used_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    if spent != 1:
        raise Forbidden("enrollment token is unknown, expired or already used")
    credential = new_secret("cpn")
    node = Node(
        id=node_id,
        name=reg.name,
        state=NodeState.ENROLLED.value,
        cpus=reg.cpus,
        memory_bytes=reg.memory_bytes,
        gpus=reg.gpus,
        gpu_model=reg.gpu_model,
        gpu_memory_bytes=reg.gpu_memory_bytes,
        gpu_type=reg.gpu_type,
        labels=dict(reg.labels),
        region=reg.region,
        donor_project=reg.donor_project,
        pue=reg.pue,
        credential_hash=hash_secret(credential),
        lease_epoch=1,
        utilization={},
    )
    session.add(node)
    session.flush()
    session.execute(
        update(EnrollmentToken)
        .where(EnrollmentToken.token_hash == hash_secret(token))
        .values(node_id=node_id)
        .execution_options(synchronize_session=False)
    )
    audit.record(
        session,
        f"agent:{node_id}",
        "node.enroll",
        node_id,
        project=reg.donor_project,
        name=reg.name,
        cpus=reg.cpus,
        gpus=reg.gpus,
    )
    return node, credential


def heartbeat(
    session: Session, node: Node, *, epoch: int, utilization: dict[str, Any], lease: timedelta
) -> Node:
    """Renew the node's lease; a node that was away comes back ONLINE.

    A heartbeat with an old epoch is fenced: the agent was cut off, its
    jobs have moved, and it must drop its local work before rejoining.
    """
    if epoch != node.lease_epoch:
        raise StaleLease(
            f"node {node.id} reported epoch {epoch}, current is {node.lease_epoch}",
            node_id=node.id,
            epoch=epoch,
            current_epoch=node.lease_epoch,
        )
    now = utcnow()
    values = {"last_heartbeat_at": now, "lease_expires_at": now + lease, "utilization": utilization}
    if NodeState(node.state) in (NodeState.ENROLLED, NodeState.OFFLINE, NodeState.LOST):
        transition_node(
            session,
            node.id,
            NodeState.ONLINE,
            actor=f"agent:{node.id}",
            reason="heartbeat",
            **values,
        )
    else:
        session.execute(
            update(Node)
            .where(Node.id == node.id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )
    session.refresh(node)
    return node


def get_node(session: Session, node_id: str) -> Node:
    node = session.get(Node, node_id)
    if node is None:
        raise NotFound(f"node {node_id} not found", entity="node", id=node_id)
    return node


def list_nodes(session: Session, *, states: tuple[NodeState, ...] = ()) -> list[Node]:
    stmt = select(Node).order_by(Node.id)
    if states:
        stmt = stmt.where(Node.state.in_([s.value for s in states]))
    return list(session.scalars(stmt))


def drain_node(session: Session, node_id: str, *, actor: str, reason: str | None = None) -> Node:
    """No new work; running jobs finish (or, per the reliability issue, checkpoint and move)."""
    transition_node(session, node_id, NodeState.DRAINING, actor=actor, reason=reason or "drain")
    audit.record(session, actor, "node.drain", node_id, reason=reason)
    return get_node(session, node_id)


def cordon_node(session: Session, node_id: str, *, actor: str, reason: str | None = None) -> Node:
    transition_node(session, node_id, NodeState.CORDONED, actor=actor, reason=reason or "cordon")
    audit.record(session, actor, "node.cordon", node_id, reason=reason)
    return get_node(session, node_id)


def uncordon_node(session: Session, node_id: str, *, actor: str) -> Node:
    transition_node(session, node_id, NodeState.ONLINE, actor=actor, reason="uncordon")
    audit.record(session, actor, "node.uncordon", node_id)
    return get_node(session, node_id)


def revoke_node(
    session: Session,
    node_id: str,
    *,
    actor: str,
    reason: str,
    backoff: RequeueBackoff = RequeueBackoff(),
) -> Node:
    """Refuse the node's credential from now on; its jobs are preempted and requeued.

    The epoch moves too, so anything its agent still sends is fenced even
    before the credential check.
    """
    transition_node(
        session,
        node_id,
        NodeState.REVOKED,
        actor=actor,
        reason=reason,
        lease_epoch=Node.lease_epoch + 1,
    )
    requeued = preempt_jobs_on_node(
        session, node_id, reason=f"node revoked ({reason})", backoff=backoff
    )
    audit.record(session, actor, "node.revoke", node_id, reason=reason, requeued=requeued)
    return get_node(session, node_id)


def expire_leases(
    session: Session, *, now: datetime | None = None, backoff: RequeueBackoff = RequeueBackoff()
) -> list[str]:
    """Mark nodes whose lease ran out LOST (epoch + 1) and preempt their jobs."""
    now = now or utcnow()
    expired = list(
        session.scalars(
            select(Node.id)
            .where(
                Node.state.in_(
                    [NodeState.ONLINE.value, NodeState.DRAINING.value, NodeState.CORDONED.value]
                ),
                Node.lease_expires_at < now,
            )
            # Node rows are always locked in id order (placements do the same), so
            # two schedulers never deadlock on them.
            .order_by(Node.id)
        )
    )
    for node_id in expired:
        lose_node(session, node_id, reason="lease expired", backoff=backoff)
    return expired


def lose_node(
    session: Session, node_id: str, *, reason: str, backoff: RequeueBackoff = RequeueBackoff()
) -> list[str]:
    """LOST with a new lease epoch (fencing the old agent), its jobs preempted; their ids."""
    transition_node(
        session,
        node_id,
        NodeState.LOST,
        actor="scheduler",
        reason=reason,
        lease_epoch=Node.lease_epoch + 1,
    )
    return preempt_jobs_on_node(session, node_id, reason=f"node lost ({reason})", backoff=backoff)


def preempt_jobs_on_node(
    session: Session, node_id: str, *, reason: str, backoff: RequeueBackoff = RequeueBackoff()
) -> list[str]:
    """Every job holding allocations on the node: preempted, requeued (or failed)."""
    job_ids = jobs_on_node(session, node_id)
    for job_id in job_ids:
        preempt_job(session, job_id, reason=reason, backoff=backoff)
    return job_ids


def active_allocations(session: Session, node_id: str) -> list[Allocation]:
    """What the node holds now: the agent's view of its work (sync in one call)."""
    return list(
        session.scalars(
            select(Allocation)
            .where(Allocation.node_id == node_id, Allocation.released_at.is_(None))
            .order_by(Allocation.job_id, Allocation.rank)
        )
    )


def leave_pool(
    session: Session, node: Node, *, reason: str, backoff: RequeueBackoff = RequeueBackoff()
) -> Node:
    """The agent leaves: jobs still on the node are preempted (requeued), the node goes OFFLINE."""
    preempt_jobs_on_node(session, node.id, reason=reason, backoff=backoff)
    transition_node(session, node.id, NodeState.OFFLINE, actor=f"agent:{node.id}", reason=reason)
    session.refresh(node)
    return node
