"""Turns placements into runs and runs' ends into job states.

Three phases per step, each with Runner I/O outside any transaction and
each registry write guarded (compare-and-set), so a crash between phases
only repeats idempotent work:
1. stop runs of jobs that were cancelled or preempted (any recorded ref that
   is not the current attempt's run of a PLACED/STARTING/RUNNING job);
2. launch PLACED jobs: record the run's ref (`Runner.ref_for`, derived from
   `ports.run_ref`) first, then launch (or adopt), then PLACED -> STARTING for
   the whole batch in one transaction. A scheduler killed between the launch
   and the transition leaves a recorded ref: the run is adopted if the job is
   still PLACED, stopped if it was cancelled meanwhile - never orphaned;
3. poll STARTING/RUNNING runs (each at most every `poll_interval_s`, and at
   once when the runner reports it ended: `Runner.ended_refs`): forward new
   log lines, and record the ends (SUCCEEDED/FAILED) with the allocations
   released, the whole batch's output and successes in one transaction.
RUNNING itself is set when a ddp job reports its first step (see
`services.jobs.record_metrics`), which is when training really runs. A
command job reports no steps: it is RUNNING once a poll finds its run
running or ended, with the time its process started when the runner knows it.
A failed command's exit reason starts with its runner's headline (`exit code N`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .domain.errors import InvalidTransition
from .domain.states import JobState
from .policy import Preemption
from .ports import (
    InputArtifact,
    LaunchInDoubt,
    LaunchRequest,
    Runner,
    RunnerUnavailable,
    RunReport,
    RunStatus,
    WorkerPlacement,
    is_run_of,
)
from .services.accounts import mint_job_token
from .services.artifacts import job_inputs
from .services.jobs import (
    append_logs,
    list_allocations,
    release_allocations,
    release_allocations_where,
)
from .services.nodes import lose_node
from .services.preemption import RequeueBackoff, preempt_job
from .store.engine import id_batches
from .store.models import Allocation, Job, utcnow
from .store.transitions import JobMove, transition_each, transition_job
from .store.uow import Database

EXIT_REASON_CHARS = 4000
# What Ray says when a run lost a worker's node (not when the job's code raised).
NODE_LOSS_MARKERS = (
    "WorkerHealthCheckFailedError",
    "ActorDiedError",
    "ActorUnavailableError",
    "NodeDiedError",
    "Connection closed by peer",
    "marked dead",
)
# States in which a job has no run of its own, yet may still hold the ref of an old one:
# cancelled, preempted or requeued (even already re-placed), or failed out of attempts.
_STOPPABLE = (
    JobState.CANCELLED,
    JobState.PREEMPTED,
    JobState.QUEUED,
    JobState.PLACED,
    JobState.FAILED,
)


def exit_reason(message: str) -> str:
    """The runner's message cut to EXIT_REASON_CHARS: its first line (`exit code 3`,
    Ray's verdict) and as much of the end (the traceback or stderr) as fits."""
    if len(message) <= EXIT_REASON_CHARS:
        return message
    headline, _, rest = message.partition("\n")
    headline = headline[: EXIT_REASON_CHARS // 4]
    keep = EXIT_REASON_CHARS - len(headline) - len("\n...")
    return f"{headline}\n...{rest[-keep:]}"


@dataclass
class LaunchReport:
    launched: list[str] = field(default_factory=list)
    in_doubt: dict[str, str] = field(default_factory=dict)  # kept PLACED, launched again
    ended: dict[str, str] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)


class Launcher:
    def __init__(
        self,
        db: Database,
        runner: Runner,
        *,
        server_url: str,
        poll_interval_s: float = 2.0,
        node_loss_grace_s: float = 30.0,
        log_max_bytes: int = 0,
        ca_pem: str | None = None,
        backoff: RequeueBackoff = RequeueBackoff(),
        clock: Callable[[], float] = time.monotonic,
        max_launch_retries: int = 3,
    ) -> None:
        """`poll_interval_s` bounds how often one run is polled: polling costs the
        Ray head and this process CPU that the training on a small node needs.
        `log_max_bytes` caps the log stored per job (0: no cap). `ca_pem`, the pool's
        private CA, is handed to jobs so they can report to an https API.
        `max_launch_retries`: launches in doubt (`LaunchInDoubt`) of one job in a row before
        it is requeued instead of launched again."""
        self.db = db
        self.runner = runner
        self.server_url = server_url
        self.poll_interval_s = poll_interval_s
        self.clock = clock
        self._last_poll: dict[str, float] = {}
        self._failed_at: dict[str, float] = {}
        self.node_loss_grace_s = node_loss_grace_s
        self.log_max_bytes = log_max_bytes
        self.ca_pem = ca_pem
        self.backoff = backoff
        self._forget: list[str] = []
        self.max_launch_retries = max_launch_retries
        self._in_doubt: dict[str, int] = {}  # job id -> launches in doubt in a row

    def wake_on_run_end(self, wake: Callable[[], None]) -> None:
        """Have the runner call `wake` when it learns that a run ended (runners that push
        ends expose `on_run_end`; the others are polled)."""
        if hasattr(self.runner, "on_run_end"):
            self.runner.on_run_end = wake

    def step(self) -> LaunchReport:
        """All three phases (the loop calls `settle` before it places and `launch` after)."""
        report = self.settle()
        return self.launch(report)

    def settle(self, report: LaunchReport | None = None) -> LaunchReport:
        """Stop abandoned runs and record ended ones: what frees resources for placing."""
        report = report or LaunchReport()
        self.stop_abandoned(report)
        self._poll_running(report)
        return report

    def launch(self, report: LaunchReport | None = None) -> LaunchReport:
        """Start the runs of PLACED jobs."""
        report = report or LaunchReport()
        self._launch_placed(report)
        return report

    # -- 1. stop ------------------------------------------------------------
    def stop_abandoned(self, report: LaunchReport) -> LaunchReport:
        """Stop the runs of jobs that no longer own them (cancelled, preempted, requeued).
        The loop also calls it between a plan that preempts and the launches of that plan,
        so a job placed on a victim's GPUs never starts beside the victim's run."""
        with self.db.unit_of_work(write=False) as session:
            rows = session.execute(
                select(Job.id, Job.runner_ref, Job.state, Job.attempt).where(
                    Job.state.in_([s.value for s in _STOPPABLE]), Job.runner_ref.is_not(None)
                )
            ).all()
        for job_id, ref, state, attempt in rows:
            if state == JobState.PLACED.value and is_run_of(ref, job_id, attempt):
                continue  # this attempt's own run, recorded just before its launch

            self.runner.stop(ref)
            with self.db.unit_of_work(exclusive=True) as session:
                session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.runner_ref == ref)
                    .values(runner_ref=None)
                )
            report.stopped.append(job_id)
        return report

    def withdraw(
        self, session: Session, withdrawals: tuple[Preemption, ...]
    ) -> tuple[Preemption, ...]:
        """The withdrawals (`policy.chain.withdrawals`) whose chained runs have not started:
        their nodes' executors dropped them. A run that did start meanwhile (the run ahead
        ended) stays: its job must not run twice."""
        refs = dict(
            session.execute(
                select(Job.id, Job.runner_ref).where(Job.id.in_([w.job_id for w in withdrawals]))
            ).all()
        )
        return tuple(
            w
            for w in withdrawals
            if refs.get(w.job_id) is None or self.runner.withdraw(refs[w.job_id])
        )

    # -- 2. launch ----------------------------------------------------------
    def _launch_placed(self, report: LaunchReport) -> None:
        # A write unit: each launch mints the attempt's job token.
        with self.db.unit_of_work(exclusive=True) as session:
            jobs = list(
                session.scalars(
                    select(Job).where(Job.state == JobState.PLACED.value).order_by(Job.placed_at)
                )
            )
            workers, behind = _attempt_workers(session, jobs)
            requests = [self._request(job, workers.get(job.id, ()), session) for job in jobs]
            for job, request in zip(jobs, requests, strict=True):
                # recorded before the run exists (see the module docstring)
                job.runner_ref = self.runner.ref_for(request)
                job.checkpoint_uri = self.runner.checkpoint_location(request)
            ahead = _runs_ahead(session, behind)
        placed = {request.job_id for request in requests}
        self._in_doubt = {k: n for k, n in self._in_doubt.items() if k in placed}
        # Chained jobs after the run each waits behind, in one batch with it or after it.
        level = _chain_levels(behind, ahead)
        batch: list[LaunchRequest] = []
        batched: set[str] = set()  # the jobs of `batch`
        for request in sorted(requests, key=lambda r: level.get(r.job_id, 0)):
            if request.job_id in behind:
                ahead_job, ahead_ref = ahead.get(request.job_id, (None, None))
                if ahead_ref is None or (ahead_job in placed and ahead_job not in batched):
                    continue  # the run ahead is not launched: the next step decides
                request = replace(request, after=ahead_ref)
                if not self.runner.chains(request):
                    continue  # launched as usual once the run ahead has ended
            batch.append(request)
            batched.add(request.job_id)
        launched: list[tuple[str, str]] = []
        outcomes = self.runner.launch_many(batch) if batch else []
        for request, outcome in zip(batch, outcomes, strict=True):
            try:
                ref = self._launched_unless_in_doubt(request, outcome, report)
                if ref is not None:
                    launched.append((request.job_id, ref))
                    if request.after is not None:  # queued: nothing to poll before its end
                        self._last_poll[ref] = self.clock()
            except RunnerUnavailable as exc:  # the pool's fault: try again, elsewhere or later
                state = self._requeue(request.job_id, f"launch failed: {exc}")
                if state is not None:
                    report.ended[request.job_id] = state.value
            except Exception as exc:  # the runner refused: the job cannot run as placed
                self._end(
                    request.job_id, JobState.FAILED, f"launch failed: {exc}", expect=JobState.PLACED
                )
                report.ended[request.job_id] = JobState.FAILED.value
        if not launched:
            return
        # every launch of this step: one transaction
        with self.db.unit_of_work(exclusive=True) as session:
            moves = [
                JobMove(job_id, f"launched as {ref}", {"runner_ref": ref})
                for job_id, ref in launched
            ]
            if transition_each(
                session, moves, JobState.PLACED, JobState.STARTING, actor="launcher"
            ):
                report.launched.extend(job_id for job_id, _ in launched)
                return
            for job_id, ref in launched:  # some job was cancelled meanwhile: one by one
                try:
                    transition_job(
                        session,
                        job_id,
                        JobState.STARTING,
                        actor="launcher",
                        reason=f"launched as {ref}",
                        runner_ref=ref,
                        expect=frozenset({JobState.PLACED}),
                    )
                    report.launched.append(job_id)
                except InvalidTransition:  # cancelled meanwhile: phase 1 stops it next step
                    # (the refused compare-and-set wrote nothing, so the unit goes on)
                    session.execute(update(Job).where(Job.id == job_id).values(runner_ref=ref))

    def _launched_unless_in_doubt(
        self, request: LaunchRequest, outcome: str | Exception, report: LaunchReport
    ) -> str | None:
        """The run's ref, or None when the runner could not tell whether it started: the
        job stays PLACED and the next step launches the same ref again (adopted if it did
        start), until `max_launch_retries` doubts in a row make it `RunnerUnavailable`.
        Any other failure of the launch is raised."""
        if isinstance(outcome, LaunchInDoubt):
            doubts = self._in_doubt.pop(request.job_id, 0) + 1
            if doubts >= self.max_launch_retries:
                raise RunnerUnavailable(f"{outcome} ({doubts} times in a row)") from outcome
            self._in_doubt[request.job_id] = doubts
            report.in_doubt[request.job_id] = str(outcome)
            return None
        if isinstance(outcome, Exception):
            raise outcome
        self._in_doubt.pop(request.job_id, None)
        return outcome

    def _requeue(self, job_id: str, reason: str) -> JobState | None:
        """PLACED -> PREEMPTED -> QUEUED (attempt + 1, backoff), or FAILED out of attempts;
        PREEMPTED or FAILED for the report, None if the job was cancelled meanwhile."""
        with self.db.unit_of_work(exclusive=True) as session:
            try:
                state = preempt_job(
                    session, job_id, actor="launcher", reason=reason, backoff=self.backoff
                )
            except InvalidTransition:
                return None
        return JobState.PREEMPTED if state is JobState.QUEUED else state

    def _request(
        self, job: Job, workers: tuple[WorkerPlacement, ...], session: Session
    ) -> LaunchRequest:
        """`workers`: the current attempt's allocations, in rank order."""
        env = {
            **(job.env or {}),
            "COMMONPOOL_SERVER_URL": self.server_url,
            "COMMONPOOL_JOB_ID": job.id,
            "COMMONPOOL_JOB_ATTEMPT": str(job.attempt),
            # Lets the job's workers report metrics for this attempt, and nothing else.
            "COMMONPOOL_JOB_TOKEN": mint_job_token(session, job.id, job.attempt),
        }
        if self.ca_pem:
            env["COMMONPOOL_CA_PEM"] = self.ca_pem
        return LaunchRequest(
            job_id=job.id,
            attempt=job.attempt,
            entrypoint=job.entrypoint,
            args=dict(job.args),
            workers=workers,
            working_dir=job.working_dir,
            env=env,
            max_runtime_s=job.max_runtime_s,
            framework=job.framework,
            kind=job.kind,
            command=tuple(job.command) if job.command is not None else None,
            inputs=_inputs(session, job),
            publish=job.publish,
        )

    # -- 3. poll --------------------------------------------------------------
    def _poll_running(self, report: LaunchReport) -> None:
        with self.db.unit_of_work(write=False) as session:
            rows = session.execute(
                select(Job.id, Job.runner_ref, Job.kind, Job.state).where(
                    Job.state.in_([JobState.STARTING.value, JobState.RUNNING.value]),
                    Job.runner_ref.is_not(None),
                )
            ).all()
        now = self.clock()
        live = {ref for _, ref, _, _ in rows}
        self._last_poll = {ref: t for ref, t in self._last_poll.items() if ref in live}
        ended_now = self.runner.ended_refs()
        polled: list[_Polled] = []
        for job_id, ref, kind, state in rows:
            due = now - self._last_poll.get(ref, -float("inf")) >= self.poll_interval_s
            if not due and ref not in ended_now:
                continue
            self._last_poll[ref] = now
            # Poll first: once a run has ended its output is complete, so no line is lost.
            outcome = self.runner.poll(ref)
            lines = self.runner.new_log_lines(ref)
            polled.append(_Polled(job_id, ref, kind, state, outcome, lines))
        if not polled:
            return
        # Output, RUNNING and successful ends of every polled run: one transaction.
        with self.db.unit_of_work(exclusive=True) as session:
            for run in polled:
                if run.lines:
                    append_logs(
                        session,
                        run.job_id,
                        (("stdout", line) for line in run.lines),
                        max_bytes=self.log_max_bytes,
                    )
            _commands_running(
                session,
                [
                    run
                    for run in polled
                    if run.kind == "command"
                    and run.state == JobState.STARTING.value
                    and (run.outcome.status is RunStatus.RUNNING or run.outcome.status.ended)
                ],
            )
            succeeded = [run for run in polled if run.outcome.status is RunStatus.SUCCEEDED]
            ended = set(_end_succeeded(session, succeeded))
            for run in succeeded:
                if run.job_id in ended:
                    report.ended[run.job_id] = JobState.SUCCEEDED.value
                    self._forget.append(run.ref)
            failed = [
                run
                for run in polled
                if run.outcome.status.ended and run.outcome.status is not RunStatus.SUCCEEDED
            ]
        for run in failed:
            verdict = self._judge_failure(run.job_id, run.ref, run.outcome.message, now)
            if verdict == "failed":
                message = run.outcome.message
                reason = exit_reason(message) or f"run {run.outcome.status.value.lower()}"
                if self._end(run.job_id, JobState.FAILED, reason):
                    report.ended[run.job_id] = JobState.FAILED.value
                    self._forget.append(run.ref)
            elif verdict == "node lost":
                report.ended[run.job_id] = JobState.PREEMPTED.value
        if self._forget:
            self.runner.forget(self._forget)
            self._forget = []

    def _judge_failure(self, job_id: str, ref: str, message: str, now: float) -> str:
        """ "failed" (the job's fault), "node lost" (requeued), or "wait" (not sure yet).

        A run also fails when one of its nodes dies, and then the job must move,
        not fail. Ray fails the run (peer connection lost) seconds before it marks
        the node dead, so a failure that looks like a lost peer is held for up to
        `node_loss_grace_s` while the cluster's view of the job's nodes is checked.
        """
        lost = self._lost_nodes(job_id)
        if lost:
            self._failed_at.pop(ref, None)
            with self.db.unit_of_work(exclusive=True) as session:
                for node_id in sorted(lost):
                    try:
                        lose_node(
                            session,
                            node_id,
                            reason="Ray reports its node dead",
                            backoff=self.backoff,
                        )
                    except InvalidTransition:
                        continue  # already lost or offline
            return "node lost"
        if any(marker in message for marker in NODE_LOSS_MARKERS):
            first = self._failed_at.setdefault(ref, now)
            if now - first < self.node_loss_grace_s:
                return "wait"
        self._failed_at.pop(ref, None)
        return "failed"

    def _lost_nodes(self, job_id: str) -> set[str]:
        live = self.runner.live_nodes()
        if live is None:
            return set()
        with self.db.unit_of_work(write=False) as session:
            held = {a.node_id for a in list_allocations(session, job_id, active_only=True)}
        return held - live

    def _end(
        self, job_id: str, target: JobState, reason: str, expect: JobState | None = None
    ) -> bool:
        with self.db.unit_of_work(exclusive=True) as session:
            return _end_in(session, job_id, target, reason, expect)


@dataclass(frozen=True, slots=True)
class _Polled:
    """One run's poll: what the runner said and the output it had."""

    job_id: str
    ref: str
    kind: str
    state: str
    outcome: RunReport
    lines: list[str]


def _commands_running(session: Session, runs: list[_Polled]) -> None:
    """STARTING -> RUNNING for command jobs (they have no step to report), at the time
    each process started when the runner knows it (also for runs that ended between
    polls): all in one statement, or one by one when some job moved meanwhile."""
    moves = [
        JobMove(
            run.job_id,
            f"command running ({run.ref})",
            {"started_at": _started_at(run.outcome.started_at)},
        )
        for run in runs
    ]
    if transition_each(session, moves, JobState.STARTING, JobState.RUNNING, actor="launcher"):
        return
    for move in moves:
        try:
            transition_job(
                session,
                move.job_id,
                JobState.RUNNING,
                actor="launcher",
                reason=move.reason,
                expect=frozenset({JobState.STARTING}),
                **move.values,
            )
        except InvalidTransition:
            pass  # cancelled or preempted meanwhile (the refused compare-and-set wrote nothing)


def _started_at(epoch_s: float | None) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC) if epoch_s else utcnow()


def _end_succeeded(session: Session, runs: list[_Polled]) -> list[str]:
    """SUCCEEDED, with allocations released, for the jobs of these successful runs that
    had not ended otherwise meanwhile (e.g. cancelled); returns their ids.

    Grouped by the state each job is most likely in (a command job was just made RUNNING,
    a ddp job is as it was polled), each group in one statement when no job of it moved.
    """
    by_source: dict[JobState, list[str]] = {}
    for run in runs:
        likely = JobState.RUNNING if run.kind == "command" else JobState(run.state)
        by_source.setdefault(likely, []).append(run.job_id)
    ended: list[str] = []
    values = {"ended_at": utcnow(), "exit_reason": "finished"}
    for source, job_ids in by_source.items():
        moves = [JobMove(job_id, "finished", values) for job_id in job_ids]
        if transition_each(session, moves, source, JobState.SUCCEEDED, actor="launcher"):
            ended.extend(job_ids)
            continue
        ended.extend(
            job_id
            for job_id in job_ids
            if _end_in(
                session, job_id, JobState.SUCCEEDED, "finished", likely=source, release=False
            )
        )
    for batch in id_batches(ended):
        release_allocations_where(session, Allocation.job_id.in_(batch))
    return ended


def _end_in(
    session: Session,
    job_id: str,
    target: JobState,
    reason: str,
    expect: JobState | None = None,
    likely: JobState | None = None,
    *,
    release: bool = True,
) -> bool:
    """The job's final state and (unless the caller releases a batch's at once) the
    release of its allocations, in the caller's unit."""
    try:
        transition_job(
            session,
            job_id,
            target,
            actor="launcher",
            reason=reason,
            ended_at=utcnow(),
            exit_reason=reason,
            expect=frozenset({expect}) if expect else None,
            likely=likely,
        )
    except InvalidTransition:
        return False  # already ended (e.g. cancelled meanwhile)
    if release:
        release_allocations(session, job_id)
    return True


def _attempt_workers(
    session: Session, jobs: list[Job]
) -> tuple[dict[str, tuple[WorkerPlacement, ...]], dict[str, int]]:
    """Each job's active allocations of its current attempt, in rank order, and for each
    chained job the allocation it waits behind: one query a batch of jobs, not one per job.
    """
    attempt = {job.id: job.attempt for job in jobs}
    workers: dict[str, list[WorkerPlacement]] = {}
    behind: dict[str, int] = {}
    for batch in id_batches(list(attempt)):
        for a in session.scalars(
            select(Allocation)
            .where(Allocation.job_id.in_(batch), Allocation.released_at.is_(None))
            .order_by(Allocation.job_id, Allocation.rank)
        ):
            if a.attempt == attempt[a.job_id]:
                workers.setdefault(a.job_id, []).append(
                    WorkerPlacement(a.rank, a.node_id, a.cpus, a.gpus, a.memory_bytes)
                )
                if a.standby and a.after_id is not None:
                    behind[a.job_id] = a.after_id
    return {job_id: tuple(placements) for job_id, placements in workers.items()}, behind


def _chain_levels(
    behind: dict[str, int], ahead: dict[str, tuple[str, str | None]]
) -> dict[str, int]:
    """How many jobs of this batch each chained job waits behind, itself included: the
    order in which a batch's chains are launched, each run after the one ahead of it."""
    levels: dict[str, int] = {}

    def level(job_id: str) -> int:
        if job_id not in behind:
            return 0
        if job_id not in levels:
            levels[job_id] = 1 + level(ahead.get(job_id, ("", None))[0])
        return levels[job_id]

    for job_id in behind:
        level(job_id)
    return levels


def _runs_ahead(session: Session, behind: dict[str, int]) -> dict[str, tuple[str, str | None]]:
    """For each chained job, (the job it waits behind, that job's run ref)."""
    if not behind:
        return {}
    rows = {
        allocation_id: (job_id, ref)
        for allocation_id, job_id, ref in session.execute(
            select(Allocation.id, Job.id, Job.runner_ref)
            .join(Job, Job.id == Allocation.job_id)
            .where(Allocation.id.in_(sorted(set(behind.values()))))
        )
    }
    return {job: rows[after] for job, after in behind.items() if after in rows}


def _inputs(session: Session, job: Job) -> tuple[InputArtifact, ...]:
    """The artifacts the job's workers stage; command jobs have none (the spec's rule),
    so their hot path skips the query."""
    if job.kind == "command":
        return ()
    return tuple(
        InputArtifact(a.name, a.version, role.value, a.sha256, a.size_bytes)
        for a, role in job_inputs(session, job.id)
    )
