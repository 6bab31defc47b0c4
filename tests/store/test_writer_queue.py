"""SQLite writers of different processes queue on one OS lock and wake when it is free.

Real processes: one holds the queue, the test's own writer waits for it; the
holder is released by ending normally or by SIGKILL (the kernel drops the lock).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from commonpool.scheduler.store.write_lock import WriterQueue

HOLDER = """
import sys, time
from pathlib import Path
from commonpool.scheduler.store.write_lock import WriterQueue
queue = WriterQueue(Path(sys.argv[1]))
with queue.held():
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
    print("released at", time.monotonic(), flush=True)
"""


def _holder(database: Path, hold_s: float) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(database), str(hold_s)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "held"
    return process


def _acquire_seconds(queue: WriterQueue) -> tuple[float, float]:
    """(monotonic time when this process got the queue, seconds it waited)."""
    started = time.monotonic()
    with queue.held():
        got = time.monotonic()
    return got, got - started


def test_a_writer_waits_for_another_process_and_gets_the_queue_once_it_commits(
    tmp_path: Path,
) -> None:
    database = tmp_path / "commonpool.db"
    holder = _holder(database, 1.0)
    got, waited = _acquire_seconds(WriterQueue(database))
    out, _ = holder.communicate(timeout=30)
    released = float(out.split()[-1])
    assert waited > 0.5, "the queue did not make it wait for the other process"
    assert released <= got < released + 0.5, (released, got)  # woke at once, no busy sleep
    assert oct((tmp_path / "commonpool.db.write.lock").stat().st_mode & 0o777) == "0o600"


def test_a_sigkilled_holder_releases_the_queue(tmp_path: Path) -> None:
    database = tmp_path / "commonpool.db"
    holder = _holder(database, 600)
    killer = threading.Timer(0.5, os.kill, (holder.pid, signal.SIGKILL))
    killer.start()
    _, waited = _acquire_seconds(WriterQueue(database))
    holder.wait(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    assert 0.3 < waited < 30


@pytest.mark.parametrize("database", [None, "commonpool.db"], ids=["memory", "file"])
def test_threads_of_one_process_take_turns(tmp_path: Path, database: str | None) -> None:
    queue = WriterQueue(tmp_path / database if database else None)
    inside, most = [0], [0]
    lock = threading.Lock()

    def write() -> None:
        for _ in range(50):
            with queue.held():
                with lock:
                    inside[0] += 1
                    most[0] = max(most[0], inside[0])
                time.sleep(0.0005)
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=write) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert most[0] == 1
    queue.close()
