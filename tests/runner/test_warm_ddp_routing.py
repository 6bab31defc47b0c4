"""Which runs start warm (on the nodes' executors) and how a warm run's ranks add up to
one report: the runner's own rules, without a cluster (the real path runs in
tests/integration/shared_pool/test_warm_start.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from commonpool.scheduler.ports import (
    InputArtifact,
    LaunchRequest,
    RunStatus,
    WorkerPlacement,
    run_ref,
)
from commonpool.workers.runner.executor import RunEnd
from commonpool.workers.runner.ray_pool import RayPoolRunner, rank_runs, warm_ref


class RayJobsStandIn:
    """What routing asks of the Ray Jobs runner: its checkpoint storage and its refs."""

    def __init__(self, storage_path: Path | str) -> None:
        self.storage_path = storage_path

    @staticmethod
    def ref_for(request: LaunchRequest) -> str:
        return run_ref(request.job_id, request.attempt)


def _runner(storage: Path | str = Path("/tmp/cp-checkpoints")) -> RayPoolRunner:
    runner = RayPoolRunner(RayJobsStandIn(storage), "127.0.0.1:1", warm_ddp=True)  # type: ignore[arg-type]
    runner._connected = True  # as if joined to the cluster: routing only
    return runner


DDP = LaunchRequest(
    job_id="job_1", attempt=2, entrypoint="m:train", args={},
    workers=(WorkerPlacement(1, "node_b", 1.0, 0, 0), WorkerPlacement(0, "node_a", 1.0, 0, 0)),
)  # fmt: skip


def test_a_ddp_run_that_ships_nothing_starts_warm_with_its_ranks_in_order() -> None:
    assert _runner().ref_for(DDP) == "job_1-a2@ddp:node_a,node_b"
    assert rank_runs(warm_ref(DDP)) == [
        ("node_a", "job_1-a2@ddp:node_a,node_b#0"),
        ("node_b", "job_1-a2@ddp:node_a,node_b#1"),
    ]


@pytest.mark.parametrize(
    "change",
    [
        {"working_dir": "/code"},
        {"inputs": (InputArtifact("digits", 1, "dataset", "0" * 64, 100),)},
        {"publish": "model"},
        {"framework": "tensorflow"},
        {"kind": "service"},
    ],
)
def test_what_the_warm_path_cannot_do_goes_to_ray(change: dict[str, object]) -> None:
    assert _runner().ref_for(replace(DDP, **change)) == "job_1-a2"  # type: ignore[arg-type]


def test_no_warm_ddp_with_an_object_store_or_when_the_pool_says_trainer() -> None:
    assert _runner("s3://bucket/pool").ref_for(DDP) == "job_1-a2"
    runner = _runner()
    runner.warm_ddp = False
    assert runner.ref_for(DDP) == "job_1-a2"


def test_a_warm_command_keeps_its_one_node_ref() -> None:
    command = replace(DDP, kind="command", command=("true",), workers=DDP.workers[:1])
    assert _runner().ref_for(command) == "job_1-a2@node_b"
    assert rank_runs("job_1-a2@node_b") == [("node_b", "job_1-a2@node_b")]
    assert rank_runs("job_1-a2") == []


def _end(code: int | None, at: float, *, stopped: bool = False, tail: str = "") -> RunEnd:
    return RunEnd(code, started_at=1.0, ended_at=at, stopped=stopped, tail=tail)


def test_the_earliest_failing_rank_names_the_failure() -> None:
    runner, ref = _runner(), warm_ref(DDP)
    keys = [key for _, key in rank_runs(ref)]
    report = runner._combined(ref, keys, {
        0: _end(1, at=9.0, tail="RuntimeError: Connection closed by peer"),
        1: _end(1, at=5.0, tail="ValueError: bad input"),
    })  # fmt: skip
    assert report.status is RunStatus.FAILED
    assert report.message == "rank 1: exit code 1\nValueError: bad input"


def test_ranks_that_all_succeed_succeed_and_a_stopped_rank_stops_the_run() -> None:
    runner, ref = _runner(), warm_ref(DDP)
    keys = [key for _, key in rank_runs(ref)]
    ok = runner._combined(ref, keys, {0: _end(0, 3.0), 1: _end(0, 3.1)})
    assert ok.status is RunStatus.SUCCEEDED
    stopped = runner._combined(ref, keys, {0: _end(-15, 3.0, stopped=True), 1: _end(0, 3.1)})
    assert stopped.status is RunStatus.STOPPED
    running = runner._combined(ref, keys, {1: _end(0, 3.1)})
    assert running.status is RunStatus.RUNNING


def test_a_warm_run_keeps_its_checkpoints_in_the_jobs_warm_folder() -> None:
    assert _runner(Path("/srv/cp")).checkpoint_location(DDP) == "/srv/cp/job_1/warm"
