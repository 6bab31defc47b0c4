"""The warm executor's own contract, on its class (the Ray actor wraps it unchanged):
idempotent start, the end with its output, the tail of a long output, stop."""

from __future__ import annotations

import sys

import pytest

from commonpool.workers.runner.executor import (
    END_OUTPUT_MAX_BYTES,
    TAIL_LINES,
    AheadNotStarted,
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


def test_a_run_queued_behind_another_starts_when_that_one_ends() -> None:
    executor = CommandExecutor("node-a")
    ahead, behind = "job_6-a1@node-a", "job_7-a1@node-a"
    executor.start(ahead, ["/bin/sh", "-c", "sleep 0.5; date +%s.%N"], {})
    assert executor.start(behind, ["/bin/sh", "-c", "date +%s.%N"], {}, after=ahead) is None
    assert executor.started(behind) is None  # queued: not forked yet
    first, second = _ended(executor, ahead), _ended(executor, behind)
    assert first.exit_code == second.exit_code == 0
    assert float(second.output or b"0") >= float(first.output or b"0")  # one after the other
    assert second.started_at >= first.ended_at - 0.05
    assert executor.started(behind) == second.started_at
    assert executor.start(behind, ["false"], {}, after=ahead) == second.started_at  # adopted


def test_a_run_queued_behind_an_ended_or_unknown_run_starts_at_once() -> None:
    executor = CommandExecutor("node-a")
    executor.start("job_8-a1@node-a", ["true"], {})
    _ended(executor, "job_8-a1@node-a")
    assert executor.start("job_9-a1@node-a", ["true"], {}, after="job_8-a1@node-a")
    assert executor.start("job_10-a1@node-a", ["true"], {}, after="job_0-a1@node-a")
    assert _ended(executor, "job_9-a1@node-a").exit_code == 0
    assert _ended(executor, "job_10-a1@node-a").exit_code == 0


def test_stopping_a_queued_run_ends_it_unstarted_and_the_slot_stays_free() -> None:
    executor = CommandExecutor("node-a")
    ahead, behind = "job_11-a1@node-a", "job_12-a1@node-a"
    executor.start(ahead, ["sleep", "0.3"], {})
    executor.start(behind, ["/bin/sh", "-c", "echo ran"], {}, after=ahead)
    executor.stop(behind)
    end = _ended(executor, behind)
    assert end.stopped and end.exit_code is None and end.output == b""
    assert _ended(executor, ahead).exit_code == 0
    assert executor.started(behind) is None  # the end of the run ahead started nothing


def test_stopping_the_run_ahead_starts_the_queued_one() -> None:
    executor = CommandExecutor("node-a")
    ahead, behind = "job_13-a1@node-a", "job_14-a1@node-a"
    executor.start(ahead, ["sleep", "30"], {})
    executor.start(behind, ["/bin/sh", "-c", "echo ran"], {}, after=ahead)
    executor.stop(ahead)
    assert _ended(executor, ahead).stopped
    assert _ended(executor, behind).output == b"ran\n"


def test_stopping_a_queued_run_moves_the_one_behind_it_up() -> None:
    executor = CommandExecutor("node-a")
    first, second, third = "job_15-a1@node-a", "job_16-a1@node-a", "job_17-a1@node-a"
    executor.start(first, ["sleep", "0.3"], {})
    executor.start(second, ["/bin/sh", "-c", "echo second"], {}, after=first)
    executor.start(third, ["/bin/sh", "-c", "echo third"], {}, after=second)
    executor.stop(second)
    assert executor.started(third) is None  # still behind the first
    first_end, third_end = _ended(executor, first), _ended(executor, third)
    assert third_end.output == b"third\n" and third_end.started_at >= first_end.ended_at - 0.05
    assert _ended(executor, second).stopped and executor.started(second) is None


def test_start_many_starts_in_order_and_refuses_what_waits_on_a_refused_run() -> None:
    executor = CommandExecutor("node-a", gpu_count=1)
    gpu, behind, other = "job_18-a1@node-a", "job_19-a1@node-a", "job_20-a1@node-a"
    executor.start("job_0-a1@node-a", ["sleep", "0.5"], {}, gpus=1)
    results = executor.start_many(
        [
            (gpu, ["true"], {}, 1, None, None),  # the GPU is held: refused
            (behind, ["true"], {}, 0, None, gpu),  # behind a run that did not start
            (other, ["true"], {}, 0, None, None),
        ]
    )
    assert isinstance(results[0], GpusBusy) and isinstance(results[1], AheadNotStarted)
    assert isinstance(results[2], float)
    assert executor.status(gpu) == (False, None) and executor.status(behind) == (False, None)
    assert _ended(executor, other).exit_code == 0


def test_withdraw_takes_back_only_a_run_that_has_not_started() -> None:
    executor = CommandExecutor("node-a")
    ahead, behind = "job_21-a1@node-a", "job_22-a1@node-a"
    executor.start(ahead, ["sleep", "0.3"], {})
    executor.start(behind, ["/bin/sh", "-c", "echo ran"], {}, after=ahead)
    assert not executor.withdraw(ahead)  # running: it stays
    assert executor.withdraw(behind)
    assert _ended(executor, behind).stopped and executor.started(behind) is None
    assert executor.withdraw("job_0-a1@node-a")  # never seen here: nothing of it runs
    assert _ended(executor, ahead).exit_code == 0
    assert not executor.withdraw(ahead)  # ended: its end stands
