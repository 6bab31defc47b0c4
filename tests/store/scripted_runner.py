"""A runner that runs nothing, for tests of the loop and launcher on a real database:
launches are recorded, and a run ends when the test says so, exactly as a real run's end
is polled and recorded. Ray and processes are tested elsewhere (tests/integration)."""

from __future__ import annotations

from collections.abc import Sequence

from commonpool.scheduler.ports import LaunchRequest, RunReport, RunStatus, launch_each, run_ref


class ScriptedRunner:
    """Runs nothing: launches are recorded; each run ends when the test calls `end`."""

    def __init__(self, *, chains: bool = False) -> None:
        """`chains`: queue chained launches (as a node's executor does), else refuse them."""
        self.launched: dict[str, LaunchRequest] = {}
        self.outcomes: dict[str, RunReport] = {}
        self.can_chain = chains

    def chains(self, request: LaunchRequest) -> bool:
        return self.can_chain

    def launch_many(self, requests: list[LaunchRequest]) -> list[str | Exception]:
        return launch_each(self, requests)

    def ref_for(self, request: LaunchRequest) -> str:
        return run_ref(request.job_id, request.attempt)

    def launch(self, request: LaunchRequest) -> str:
        ref = self.ref_for(request)
        self.launched.setdefault(ref, request)
        return ref

    def ended_refs(self) -> set[str]:
        return set()

    def checkpoint_location(self, request: LaunchRequest) -> str | None:
        return None

    def forget(self, refs: Sequence[str]) -> None:
        pass

    def poll(self, ref: str) -> RunReport:
        return self.outcomes.get(ref, RunReport(RunStatus.RUNNING))

    def new_log_lines(self, ref: str) -> list[str]:
        return []

    def withdraw(self, ref: str) -> bool:
        if ref in self.launched and self.poll(ref).status is not RunStatus.PENDING:
            return False  # started (or ended): it stays
        self.outcomes[ref] = RunReport(RunStatus.STOPPED)
        return True

    def stop(self, ref: str) -> None:
        self.outcomes[ref] = RunReport(RunStatus.STOPPED)

    def live_nodes(self) -> set[str] | None:
        return None

    def end(self, job_id: str, status: RunStatus = RunStatus.SUCCEEDED) -> None:
        self.outcomes[run_ref(job_id, 1)] = RunReport(status, "exit 1")
