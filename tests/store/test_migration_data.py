"""A pool created at the first migration keeps its data when upgraded to head.

On each backend, a fresh database is taken back to the first revision, filled
with realistic rows through the schema of that revision (nodes, jobs,
allocations, events, log lines, metrics, users, projects, enrollment tokens),
then upgraded one revision at a time to head. Every row and every value must
survive, the columns added since must hold their server defaults, and the
current services must read (and write) the old rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, Table, func, select

from commonpool.migrations import alembic_config, downgrade, upgrade
from commonpool.scheduler.domain.states import JobState
from commonpool.scheduler.services import jobs as job_services
from commonpool.scheduler.store.engine import make_engine
from commonpool.scheduler.store.uow import Database

T0 = datetime(2026, 3, 14, 9, 26, 53, 589_793, tzinfo=UTC)
GIB = 2**30


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def credential(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def revision_chain(url: str) -> list[str]:
    """Every revision from the first to head, in upgrade order (one branch)."""
    script = ScriptDirectory.from_config(alembic_config(url))
    assert len(script.get_heads()) == 1, "the migrations must form one branch"
    return [rev.revision for rev in reversed(list(script.walk_revisions("base", "heads")))]


# Rows written at the first revision, in insertion order (parents first). Primary keys
# of integer tables are left to the database, as the app does, so that sequences stay
# where a real pool leaves them.
NODES = [
    dict(
        id="node_gpu_lab3", name="lab3-ws07", state="ONLINE", cpus=16.0,
        memory_bytes=64 * GIB, gpus=2, gpu_model="NVIDIA A100-SXM4-40GB",
        gpu_memory_bytes=40 * GIB, gpu_type="a100", labels={"site": "lab-3", "rack": "r7"},
        region="GB", donor_project="vision", pue=1.25, credential_hash=credential("cpn_a"),
        lease_epoch=3, last_heartbeat_at=at(30), lease_expires_at=at(30.5),
        utilization={"cpu": 0.42, "gpus": [0.91, 0.07], "memory_bytes": 12 * GIB},
        created_at=at(-600), updated_at=at(30),
    ),
    dict(
        id="node_laptop", name="ada-laptop", state="OFFLINE", cpus=4.0, memory_bytes=8 * GIB,
        gpus=0, gpu_model=None, gpu_memory_bytes=0, gpu_type=None, labels={},
        region=None, donor_project=None, pue=1.0, credential_hash=credential("cpn_b"),
        lease_epoch=1, last_heartbeat_at=None, lease_expires_at=None, utilization={},
        created_at=at(-300), updated_at=at(-10),
    ),
    dict(
        id="node_lost", name="café-box", state="LOST", cpus=2.5, memory_bytes=3 * GIB,
        gpus=0, gpu_model=None, gpu_memory_bytes=0, gpu_type=None, labels={"zone": "ß"},
        region="FR", donor_project=None, pue=1.1, credential_hash=credential("cpn_c"),
        lease_epoch=7, last_heartbeat_at=at(-5), lease_expires_at=at(-4.5),
        utilization={"cpu": 0.0}, created_at=at(-200), updated_at=at(-4),
    ),
]
USERS = [
    dict(id="usr_admin", name="admin", created_at=at(-1000)),
    dict(id="usr_ada", name="ada", created_at=at(-900)),
]
PROJECTS = [
    dict(id="prj_default", name="default", weight=1.0, created_at=at(-1000)),
    dict(id="prj_vision", name="vision", weight=2.5, created_at=at(-800)),
]


def job(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(
        owner="ada", project="vision", priority=0, entrypoint="commonpool.workers.examples."
        "digits_mlp:train", args={}, working_dir=None, env={}, workers_min=1, workers_max=1,
        cpus_per_worker=1.0, memory_bytes_per_worker=GIB, gpus_per_worker=0, gpu_type=None,
        label_selector={}, max_runtime_s=None, deadline_at=None, max_attempts=3, attempt=1,
        submitted_at=at(0), placed_at=None, started_at=None, ended_at=None, updated_at=at(0),
        pending_reason=None, exit_reason=None, runner_ref=None, checkpoint_uri=None, metrics={},
    )
    return {**base, **fields}


JOBS = [
    job(
        id="job_done", name="digits", state="SUCCEEDED", priority=5,
        args={"epochs": 5, "lr": 0.05, "layers": [64, 32]}, env={"PYTHONHASHSEED": "0"},
        workers_min=2, workers_max=2, cpus_per_worker=1.5, memory_bytes_per_worker=2 * GIB,
        gpus_per_worker=1, gpu_type="a100", label_selector={"site": "lab-3"},
        max_runtime_s=3600, attempt=2, placed_at=at(1), started_at=at(2), ended_at=at(20),
        updated_at=at(20), runner_ref="job_done-a2",
        checkpoint_uri="/srv/commonpool/checkpoints/job_done/checkpoint_000004",
        metrics={"epoch": 5, "loss": 0.1234, "accuracy": 0.9731, "samples_per_s": 1520.5},
    ),
    job(
        id="job_running", name="resnet-elastic", state="RUNNING", workers_min=1, workers_max=4,
        cpus_per_worker=2.0, placed_at=at(5), started_at=at(6), updated_at=at(6),
        runner_ref="job_running-a1", metrics={"epoch": 1, "loss": 2.3},
    ),
    job(
        id="job_waiting", name="llm-finetune", state="QUEUED", owner="admin", project="default",
        priority=-3, working_dir="/home/ada/code", gpus_per_worker=4, gpu_type="h100",
        deadline_at=at(60 * 24), max_runtime_s=7200, submitted_at=at(7), updated_at=at(7.5),
        pending_reason="waiting for 4 GPUs of type h100 on one node",
    ),
    job(
        id="job_failed", name="bad-λ", state="FAILED", placed_at=at(8), started_at=at(9),
        ended_at=at(9.25), updated_at=at(9.25), max_attempts=1, runner_ref="job_failed-a1",
        exit_reason='Traceback (most recent call last):\n  File "train.py", line 3\n'
        "ValueError: bad λ — 'quoted' \"twice\"",
    ),
]
ALLOCATIONS = [
    dict(job_id="job_done", node_id="node_gpu_lab3", attempt=1, rank=0, cpus=1.5,
         memory_bytes=2 * GIB, gpus=1, created_at=at(1), released_at=at(3)),
    dict(job_id="job_done", node_id="node_lost", attempt=1, rank=1, cpus=1.5,
         memory_bytes=2 * GIB, gpus=0, created_at=at(1), released_at=at(3)),
    dict(job_id="job_done", node_id="node_gpu_lab3", attempt=2, rank=0, cpus=1.5,
         memory_bytes=2 * GIB, gpus=1, created_at=at(4), released_at=at(20)),
    dict(job_id="job_done", node_id="node_gpu_lab3", attempt=2, rank=1, cpus=1.5,
         memory_bytes=2 * GIB, gpus=1, created_at=at(4), released_at=at(20)),
    dict(job_id="job_running", node_id="node_gpu_lab3", attempt=1, rank=0, cpus=2.0,
         memory_bytes=GIB, gpus=0, created_at=at(5), released_at=None),
]
ENROLLMENT_TOKENS = [
    dict(id="enr_used", token_hash=credential("cpe_used"), expires_at=at(-540),
         used_at=at(-599), node_id="node_gpu_lab3", created_at=at(-601)),
    dict(id="enr_spare", token_hash=credential("cpe_spare"), expires_at=at(60),
         used_at=None, node_id=None, created_at=at(0)),
]


def events(job_id: str, *steps: tuple[str | None, str, str, str | None]) -> list[dict[str, Any]]:
    return [
        dict(job_id=job_id, from_state=src, to_state=dst, actor=actor, reason=reason,
             created_at=at(i))
        for i, (src, dst, actor, reason) in enumerate(steps)
    ]


JOB_EVENTS = [
    *events(
        "job_done",
        (None, "QUEUED", "ada", None),
        ("QUEUED", "PLACED", "scheduler", "fifo"),
        ("PLACED", "STARTING", "launcher", None),
        ("STARTING", "RUNNING", "job", None),
        ("RUNNING", "PREEMPTED", "scheduler", "node node_lost LOST"),
        ("PREEMPTED", "QUEUED", "scheduler", "attempt 2"),
        ("QUEUED", "PLACED", "scheduler", "fifo"),
        ("PLACED", "STARTING", "launcher", None),
        ("STARTING", "RUNNING", "job", None),
        ("RUNNING", "SUCCEEDED", "launcher", "exit 0"),
    ),
    *events("job_running", (None, "QUEUED", "ada", None), ("QUEUED", "PLACED", "scheduler", None),
            ("PLACED", "STARTING", "launcher", None), ("STARTING", "RUNNING", "job", None)),
    *events("job_waiting", (None, "QUEUED", "admin", "submitted by admin for ada")),
    *events("job_failed", (None, "QUEUED", "ada", None), ("QUEUED", "PLACED", "scheduler", None),
            ("PLACED", "STARTING", "launcher", None), ("STARTING", "FAILED", "launcher",
                                                      "ValueError: bad λ")),
]
JOB_LOG_LINES = [
    dict(job_id="job_done", stream="stdout", line=f"epoch {e} loss {1 / e:.4f} ✓",
         created_at=at(10 + e))
    for e in range(1, 6)
] + [
    dict(job_id="job_failed", stream="stderr", line="ValueError: bad λ", created_at=at(9.2)),
    dict(job_id="job_failed", stream="stderr", line="", created_at=at(9.21)),
    dict(job_id="job_running", stream="stdout", line="x" * 9_999, created_at=at(6.5)),
]
JOB_METRICS = [
    dict(job_id="job_done", attempt=2, step=e, values={"loss": 1 / e, "accuracy": 0.9 + e / 100},
         created_at=at(10 + e))
    for e in range(1, 6)
] + [dict(job_id="job_running", attempt=1, step=1, values={"loss": 2.3}, created_at=at(6.6))]
NODE_EVENTS = [
    dict(node_id="node_gpu_lab3", from_state=None, to_state="ENROLLED", actor="enroll",
         reason=None, created_at=at(-600)),
    dict(node_id="node_gpu_lab3", from_state="ENROLLED", to_state="ONLINE", actor="agent",
         reason="first heartbeat", created_at=at(-599)),
    dict(node_id="node_lost", from_state="ONLINE", to_state="LOST", actor="scheduler",
         reason="lease expired at epoch 7", created_at=at(-4)),
    dict(node_id="node_laptop", from_state="ONLINE", to_state="OFFLINE", actor="agent",
         reason="agent left the pool", created_at=at(-10)),
]

ROWS_AT_FIRST: dict[str, list[dict[str, Any]]] = {
    "nodes": NODES,
    "users": USERS,
    "projects": PROJECTS,
    "jobs": JOBS,
    "allocations": ALLOCATIONS,
    "enrollment_tokens": ENROLLMENT_TOKENS,
    "job_events": JOB_EVENTS,
    "job_log_lines": JOB_LOG_LINES,
    "job_metrics": JOB_METRICS,
    "node_events": NODE_EVENTS,
}

# Columns added after the first revision to tables that had rows, and the value every
# old row must get (the column's server default). A new migration that adds a NOT NULL
# column to one of these tables adds its expected default here.
ADDED_DEFAULTS: dict[str, dict[str, Any]] = {
    "jobs": {
        "framework": "torch",
        "carbon": "ignore",
        "carbon_suspensions": 0,
        "log_bytes": 0,
        "regrows": 0,
        "policy_preemptions": 0,
        "job_type": None,
        "eligible_at": None,
        "kind": "ddp",
        "command": None,
        "array_id": None,
        "array_index": None,
        "array_limit": None,
        "publish": None,
        "carbon_baseline_g_per_kwh": None,
    },
    "users": {"is_admin": False},
    "allocations": {"after_id": None, "standby": False},
    "projects": {
        "max_cpus": None,
        "max_gpus": None,
        "max_queued_jobs": None,
        "max_artifact_bytes": None,
    },
}


def normalized(value: Any) -> Any:
    """Compare datetimes as UTC instants (SQLite hands back naive UTC text)."""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return value


def reflect(engine: Engine) -> MetaData:
    metadata = MetaData()
    metadata.reflect(engine)
    return metadata


def snapshot(engine: Engine, tables: dict[str, Table]) -> dict[str, dict[tuple, dict]]:
    """Every row of `tables` (as they stood at the first revision), keyed by primary key,
    read through the schema the database has now (same column names)."""
    now = reflect(engine)
    out: dict[str, dict[tuple, dict]] = {}
    with engine.connect() as conn:
        for name, old in tables.items():
            table = now.tables[name]
            columns = [table.c[c.name] for c in old.columns]
            key = [c.name for c in old.primary_key.columns]
            out[name] = {
                tuple(row[k] for k in key): {c: normalized(v) for c, v in row.items()}
                for row in (r._asdict() for r in conn.execute(select(*columns)))
            }
    return out


@pytest.fixture
def first_revision_db(database_url: str) -> Iterator[str]:
    """The fresh database taken back to nothing, then migrated to the first revision."""
    chain = revision_chain(database_url)
    downgrade(database_url, "base")
    upgrade(database_url, chain[0])
    yield database_url


def test_data_written_at_the_first_revision_survives_every_upgrade_to_head(
    first_revision_db: str,
) -> None:
    url = first_revision_db
    chain = revision_chain(url)
    assert len(chain) >= 2, "nothing to upgrade through"

    engine = make_engine(url)
    try:
        first = reflect(engine)
        assert set(ROWS_AT_FIRST) <= set(first.tables), "the first revision lacks a table"
        with engine.begin() as conn:
            for name, rows in ROWS_AT_FIRST.items():
                conn.execute(first.tables[name].insert(), rows)
        tables = {name: first.tables[name] for name in ROWS_AT_FIRST}
        before = snapshot(engine, tables)
    finally:
        engine.dispose()
    assert {name: len(rows) for name, rows in before.items()} == {
        name: len(rows) for name, rows in ROWS_AT_FIRST.items()
    }
    for name, rows in ROWS_AT_FIRST.items():  # what was read is what was written
        stored = list(before[name].values())
        for row in rows:
            written = {k: normalized(v) for k, v in row.items()}
            assert any(written.items() <= s.items() for s in stored), (name, row)

    for revision in chain[1:]:  # one step at a time, as a pool upgraded release by release
        upgrade(url, revision)
        engine = make_engine(url)
        try:
            after = snapshot(engine, tables)
        finally:
            engine.dispose()
        for name in ROWS_AT_FIRST:
            assert after[name] == before[name], f"{name} changed by migration {revision}"

    engine = make_engine(url)
    try:
        head = reflect(engine)
        added = {
            name: {c.name for c in head.tables[name].columns} - {c.name for c in table.columns}
            for name, table in tables.items()
        }
        assert {k: v for k, v in added.items() if v} == {
            k: set(v) for k, v in ADDED_DEFAULTS.items()
        }, "a migration added columns to tables with old rows: say what old rows must hold"
        with engine.connect() as conn:
            for name, defaults in ADDED_DEFAULTS.items():
                table = head.tables[name]
                rows = conn.execute(select(*(table.c[c] for c in defaults))).all()
                assert len(rows) == len(ROWS_AT_FIRST[name])
                for row in rows:
                    assert row._asdict() == defaults, name
    finally:
        engine.dispose()


def test_a_job_from_the_first_revision_is_served_by_the_current_services(
    first_revision_db: str,
) -> None:
    url = first_revision_db
    engine = make_engine(url)
    try:
        first = reflect(engine)
        with engine.begin() as conn:
            for name, rows in ROWS_AT_FIRST.items():
                conn.execute(first.tables[name].insert(), rows)
            last_event = conn.execute(select(func.max(first.tables["job_events"].c.id))).scalar()
    finally:
        engine.dispose()
    upgrade(url)

    db = Database(make_engine(url))
    try:
        with db.unit_of_work(write=False) as session:
            done = job_services.get_job(session, "job_done")
            assert done.state == JobState.SUCCEEDED.value
            assert done.args == {"epochs": 5, "lr": 0.05, "layers": [64, 32]}
            assert done.metrics["accuracy"] == pytest.approx(0.9731)
            assert (done.attempt, done.workers_min, done.gpus_per_worker) == (2, 2, 1)
            assert (done.submitted_at, done.ended_at) == (at(0), at(20))
            assert (done.framework, done.carbon, done.log_bytes) == ("torch", "ignore", 0)
            assert [e.to_state for e in job_services.list_events(session, "job_done")][-1] == (
                "SUCCEEDED"
            )
            allocations = job_services.list_allocations(session, "job_done")
            assert [(a.attempt, a.rank) for a in allocations] == [(1, 0), (1, 1), (2, 0), (2, 1)]
            assert [a.rank for a in job_services.list_allocations(
                session, "job_running", active_only=True)] == [0]
            failed = job_services.get_job(session, "job_failed")
            assert failed.exit_reason is not None and failed.exit_reason.endswith('"twice"')
        # A write through today's code on yesterday's rows: the event gets a fresh id
        # (sequences survived), and the queued job's old event is still first.
        with db.unit_of_work() as session:
            cancelled = job_services.cancel_job(session, "job_waiting", actor="admin")
            assert cancelled.state == JobState.CANCELLED.value
        with db.unit_of_work(write=False) as session:
            history = job_services.list_events(session, "job_waiting")
            assert [e.to_state for e in history] == ["QUEUED", "CANCELLED"]
            assert history[0].reason == "submitted by admin for ada"
            assert history[-1].id > last_event
    finally:
        db.dispose()
