"""The warm executor's own contract, on its class (the Ray actor wraps it unchanged):
idempotent start, the end with its output, the tail of a long output, stop."""

from __future__ import annotations

import sys

import pytest

from commonpool.workers.runner.executor import (
    END_OUTPUT_MAX_BYTES,
    TAIL_LINES,
    CommandExecutor,
    GpusBusy,
    RunEnd,
)


def _ended(executor: CommandExecutor, ref: str) -> RunEnd:
    end = executor.wait(ref, timeout_s=30)
    assert end is not None, f"{ref} did not end"
    return end


def test_a_short_output_comes_whole_with_the_end() -> None:
    executor = CommandExecutor("node-a")
    executor.start("job_1-a1@node-a", ["/bin/sh", "-c", "echo one; echo two >&2; exit 4"], {})
    end = _ended(executor, "job_1-a1@node-a")
    assert end.exit_code == 4
    assert end.output == b"one\ntwo\n" and end.tail == "one\ntwo"


def test_a_long_output_stays_on_the_node_and_its_tail_comes_with_the_end() -> None:
    executor = CommandExecutor("node-a")
    lines = END_OUTPUT_MAX_BYTES // 10 + 100  # "line 12345\n": over the limit
    code = f"for i in range({lines}): print(f'line {{i:05}}')"
    executor.start("job_2-a1@node-a", [sys.executable, "-c", code], {})
    end = _ended(executor, "job_2-a1@node-a")
    assert end.exit_code == 0 and end.output is None
    assert end.tail.splitlines() == [f"line {i:05}" for i in range(lines - TAIL_LINES, lines)]
    data, offset = executor.read("job_2-a1@node-a", 0)
    assert offset == len(data) > END_OUTPUT_MAX_BYTES  # still readable in full


def test_a_second_start_of_one_ref_adopts_the_run() -> None:
    executor = CommandExecutor("node-a")
    ref = "job_3-a1@node-a"
    first = executor.start(ref, ["/bin/sh", "-c", "echo ran"], {})
    again = executor.start(ref, ["/bin/sh", "-c", "echo ran"], {})
    assert first == again
    assert _ended(executor, ref).output == b"ran\n"


def test_stop_ends_the_run_as_stopped() -> None:
    executor = CommandExecutor("node-a")
    ref = "job_4-a1@node-a"
    executor.start(ref, ["sleep", "30"], {})
    executor.stop(ref)
    end = _ended(executor, ref)
    assert end.stopped and end.exit_code != 0


def test_a_stopped_runs_gpu_is_free_when_stop_returns() -> None:
    """A preempted run's GPU goes to the job placed on it in the same scheduler step: while
    the run holds it a start is refused as busy (a passing state the launcher retries), and
    the start right after `stop` gets it. (`stop` also waits for the reaper's record of the
    end; the window it closes is too short for a test to hit reliably.)"""
    executor = CommandExecutor("node-g", gpu_count=1)
    old, new = "job_5-a1@node-g", "job_6-a1@node-g"
    executor.start(old, ["sleep", "30"], {}, gpus=1)
    with pytest.raises(GpusBusy, match="0 free GPUs"):
        executor.start(new, ["true"], {}, gpus=1)
    executor.stop(old)
    executor.start(new, ["true"], {}, gpus=1)
    assert _ended(executor, new).exit_code == 0


def test_a_missing_program_ends_with_the_reason() -> None:
    executor = CommandExecutor("node-a")
    executor.start("job_5-a1@node-a", ["/no/such/program"], {})
    end = _ended(executor, "job_5-a1@node-a")
    assert end.exit_code is None and "could not start '/no/such/program'" in end.error


def test_rank_0s_rendezvous_is_the_same_for_the_same_run() -> None:
    import ray

    executor = CommandExecutor("node-a")
    first = executor.rendezvous("job_1-a1@ddp:node-a,node-b#0")
    assert executor.rendezvous("job_1-a1@ddp:node-a,node-b#0") == first  # a relaunch
    # Outside an actor Ray answers with this host's address; the port is one it can bind.
    assert first[0] == ray.util.get_node_ip_address() and 0 < first[1] < 65536
    other = executor.rendezvous("job_2-a1@ddp:node-a,node-b#0")
    assert other[0] == first[0]
