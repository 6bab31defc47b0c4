"""Turns placements into runs and runs' ends into job states.

Three phases per call, each with Runner I/O outside any transaction and
each registry write guarded (compare-and-set), so a crash between phases
only repeats idempotent work:
1. stop runs of jobs that were cancelled or preempted (any recorded ref that
   is not the current attempt's run of a PLACED/STARTING/RUNNING job);
2. launch PLACED jobs: record the run's ref (`ports.run_ref`) first, then
   launch (or adopt), then PLACED -> STARTING. A scheduler killed between the
   launch and the transition leaves a recorded ref: the run is adopted if the
   job is still PLACED, stopped if it was cancelled meanwhile - never orphaned;
3. poll STARTING/RUNNING runs: forward new log lines, and record the end
   (SUCCEEDED/FAILED) with the allocations released in the same transaction.
RUNNING itself is set when a ddp job reports its first step (see
`services.jobs.record_metrics`), which is when training really runs. A
command job reports no steps: it is RUNNING once a poll finds its run
running (one that ends between two polls goes from STARTING to its end).
A failed command's exit reason starts with its runner's headline (`exit code N`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from .domain.errors import InvalidTransition
from .domain.states import JobState
from .ports import LaunchRequest, Runner, RunStatus, WorkerPlacement, run_ref
from .services.accounts import mint_job_token
from .services.jobs import append_logs, list_allocations, release_allocations
from .services.nodes import lose_node
from .services.preemption import RequeueBackoff
from .store.models import Job, utcnow
from .store.transitions import transition_job
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
    ) -> None:
        """`poll_interval_s` bounds how often one run is polled: polling costs the
        Ray head and this process CPU that the training on a small node needs.
        `log_max_bytes` caps the log stored per job (0: no cap). `ca_pem`, the pool's
        private CA, is handed to jobs so they can report to an https API."""
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

    def step(self) -> LaunchReport:
        report = LaunchReport()
        self._stop_abandoned(report)
        self._launch_placed(report)
        self._poll_running(report)
        return report

    # -- 1. stop ------------------------------------------------------------
    def _stop_abandoned(self, report: LaunchReport) -> None:
        with self.db.unit_of_work(write=False) as session:
            rows = session.execute(
                select(Job.id, Job.runner_ref, Job.state, Job.attempt).where(
                    Job.state.in_([s.value for s in _STOPPABLE]), Job.runner_ref.is_not(None)
                )
            ).all()
        for job_id, ref, state, attempt in rows:
            if state == JobState.PLACED.value and ref == run_ref(job_id, attempt):
                continue  # this attempt's own run, recorded just before its launch

            self.runner.stop(ref)
            with self.db.unit_of_work() as session:
                session.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.runner_ref == ref)
                    .values(runner_ref=None)
                )
            report.stopped.append(job_id)

    # -- 2. launch ----------------------------------------------------------
    def _launch_placed(self, report: LaunchReport) -> None:
        # A write unit: each launch mints the attempt's job token.
        with self.db.unit_of_work() as session:
            jobs = list(
                session.scalars(
                    select(Job).where(Job.state == JobState.PLACED.value).order_by(Job.placed_at)
                )
            )
            requests = [self._request(job, session) for job in jobs]
            for job in jobs:  # recorded before the run exists (see the module docstring)
                job.runner_ref = run_ref(job.id, job.attempt)
        for request in requests:
            try:
                ref = self.runner.launch(request)
            except Exception as exc:  # the runner refused: the job cannot run as placed
                self._end(
                    request.job_id, JobState.FAILED, f"launch failed: {exc}", expect=JobState.PLACED
                )
                report.ended[request.job_id] = JobState.FAILED.value
                continue
            try:
                with self.db.unit_of_work() as session:
                    transition_job(
                        session,
                        request.job_id,
                        JobState.STARTING,
                        actor="launcher",
                        reason=f"launched as {ref}",
                        runner_ref=ref,
                        expect=frozenset({JobState.PLACED}),
                    )
                report.launched.append(request.job_id)
            except InvalidTransition:  # cancelled meanwhile: phase 1 stops it next step
                with self.db.unit_of_work() as session:
                    session.execute(
                        update(Job).where(Job.id == request.job_id).values(runner_ref=ref)
                    )

    def _request(self, job: Job, session: Session) -> LaunchRequest:
        allocations = [
            a
            for a in list_allocations(session, job.id, active_only=True)
            if a.attempt == job.attempt
        ]
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
            workers=tuple(
                WorkerPlacement(a.rank, a.node_id, a.cpus, a.gpus, a.memory_bytes)
                for a in allocations
            ),
            working_dir=job.working_dir,
            env=env,
            max_runtime_s=job.max_runtime_s,
            framework=job.framework,
            kind=job.kind,
            command=tuple(job.command) if job.command is not None else None,
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
        for job_id, ref, kind, state in rows:
            if now - self._last_poll.get(ref, -float("inf")) < self.poll_interval_s:
                continue
            self._last_poll[ref] = now
            # Poll first: once a run has ended its output is complete, so no line is lost.
            outcome = self.runner.poll(ref)
            lines = self.runner.new_log_lines(ref)
            if lines:
                with self.db.unit_of_work() as session:
                    append_logs(
                        session,
                        job_id,
                        (("stdout", line) for line in lines),
                        max_bytes=self.log_max_bytes,
                    )
            if (
                outcome.status is RunStatus.RUNNING
                and kind == "command"
                and state == JobState.STARTING.value
            ):
                self._command_running(job_id, ref)
            if not outcome.status.ended:
                continue
            if outcome.status is RunStatus.SUCCEEDED:
                if self._end(job_id, JobState.SUCCEEDED, "finished"):
                    report.ended[job_id] = JobState.SUCCEEDED.value
                continue
            verdict = self._judge_failure(job_id, ref, outcome.message, now)
            if verdict == "failed":
                reason = exit_reason(outcome.message) or f"run {outcome.status.value.lower()}"
                if self._end(job_id, JobState.FAILED, reason):
                    report.ended[job_id] = JobState.FAILED.value
            elif verdict == "node lost":
                report.ended[job_id] = JobState.PREEMPTED.value

    def _command_running(self, job_id: str, ref: str) -> None:
        """STARTING -> RUNNING for a command job: it has no step to report."""
        try:
            with self.db.unit_of_work() as session:
                transition_job(
                    session,
                    job_id,
                    JobState.RUNNING,
                    actor="launcher",
                    reason=f"command running ({ref})",
                    started_at=utcnow(),
                    expect=frozenset({JobState.STARTING}),
                )
        except InvalidTransition:
            pass  # cancelled or preempted meanwhile

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
            with self.db.unit_of_work() as session:
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
        try:
            with self.db.unit_of_work() as session:
                transition_job(
                    session,
                    job_id,
                    target,
                    actor="launcher",
                    reason=reason,
                    ended_at=utcnow(),
                    exit_reason=reason,
                    expect=frozenset({expect}) if expect else None,
                )
                release_allocations(session, job_id)
        except InvalidTransition:
            return False  # already ended (e.g. cancelled meanwhile)
        return True
