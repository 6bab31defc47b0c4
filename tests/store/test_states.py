"""The state machines: the table is honest and the store enforces it."""

from __future__ import annotations

import itertools

import pytest

from commonpool.scheduler.domain.errors import InvalidTransition, NotFound
from commonpool.scheduler.domain.states import (
    ENDED_VALUES,
    JOB_TRANSITIONS,
    NODE_TRANSITIONS,
    JobState,
    NodeState,
)
from commonpool.scheduler.ports import is_run_of, job_of_ref, run_ref
from commonpool.scheduler.services.jobs import list_events, submit_job
from commonpool.scheduler.store.models import Job
from commonpool.scheduler.store.transitions import transition_job
from commonpool.scheduler.store.uow import Database
from tests.builders import job_spec


def test_every_state_has_a_row_and_terminal_states_are_dead_ends() -> None:
    assert set(JOB_TRANSITIONS) == set(JobState)
    assert set(NODE_TRANSITIONS) == set(NodeState)
    for state, targets in JOB_TRANSITIONS.items():
        assert (not targets) == state.terminal
    assert set(ENDED_VALUES) == {s.value for s in JobState if s.terminal}


@pytest.mark.parametrize("suffix", ["", "@node-7"])
def test_a_run_ref_names_its_job_and_attempt(suffix: str) -> None:
    ref = run_ref("job-a1b2-a3", 12) + suffix  # a job id may itself contain "-a"
    assert job_of_ref(ref) == "job-a1b2-a3"
    assert is_run_of(ref, "job-a1b2-a3", 12)
    assert not is_run_of(ref, "job-a1b2-a3", 1)


def test_cancel_is_allowed_from_every_non_final_state() -> None:
    for state in JobState:
        if not state.terminal and state is not JobState.CANCELLED:
            assert JobState.CANCELLED in JOB_TRANSITIONS[state]


def _force_state(db: Database, job_id: str, state: JobState) -> None:
    with db.unit_of_work() as session:
        session.get(Job, job_id).state = state.value  # test setup only


@pytest.mark.parametrize(("source", "target"), list(itertools.product(JobState, JobState)))
def test_store_allows_exactly_the_table(db: Database, source: JobState, target: JobState) -> None:
    with db.unit_of_work() as session:
        job_id = submit_job(session, job_spec(), actor="t").id
    _force_state(db, job_id, source)
    allowed = target in JOB_TRANSITIONS[source]
    if allowed:
        with db.unit_of_work() as session:
            assert transition_job(session, job_id, target, actor="t", reason="r") == source
        with db.unit_of_work(write=False) as session:
            events = list_events(session, job_id)
            assert (events[-1].from_state, events[-1].to_state) == (source.value, target.value)
    else:
        with pytest.raises(InvalidTransition) as info, db.unit_of_work() as session:
            transition_job(session, job_id, target, actor="t")
        assert info.value.fields["current"] == source.value
        with db.unit_of_work(write=False) as session:
            assert session.get(Job, job_id).state == source.value
            assert len(list_events(session, job_id)) == 1  # only "submitted"


def test_unknown_job_is_not_found(db: Database) -> None:
    with pytest.raises(NotFound), db.unit_of_work() as session:
        transition_job(session, "job_nope", JobState.CANCELLED, actor="t")


@pytest.mark.parametrize("likely", [JobState.RUNNING, JobState.STARTING])
def test_a_wrong_likely_source_falls_back_to_the_true_one(db: Database, likely: JobState) -> None:
    """`likely` only saves a read: the event records the state the job really left."""
    with db.unit_of_work() as session:
        job_id = submit_job(session, job_spec(), actor="t").id
    _force_state(db, job_id, JobState.STARTING)
    with db.unit_of_work() as session:
        left = transition_job(session, job_id, JobState.SUCCEEDED, actor="t", likely=likely)
    assert left is JobState.STARTING
    with db.unit_of_work(write=False) as session:
        assert list_events(session, job_id)[-1].from_state == JobState.STARTING.value


def test_a_likely_source_that_is_not_allowed_is_refused(db: Database) -> None:
    with db.unit_of_work() as session:
        job_id = submit_job(session, job_spec(), actor="t").id
    with pytest.raises(InvalidTransition), db.unit_of_work() as session:
        transition_job(session, job_id, JobState.RUNNING, actor="t", likely=JobState.QUEUED)
