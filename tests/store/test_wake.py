"""A submit through one process wakes the scheduler in another (SQLite FIFO, PostgreSQL
NOTIFY), and sending never fails when no scheduler listens."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from commonpool.scheduler.domain.errors import Conflict
from commonpool.scheduler.store.engine import make_engine, sqlite_file
from commonpool.scheduler.store.wake import WakeListener, fifo_path, wake_sender

SEND = """
import sys
from commonpool.scheduler.store.engine import make_engine
from commonpool.scheduler.store.wake import wake_sender
engine = make_engine(sys.argv[1])
wake_sender(engine)()
engine.dispose()
"""


class Wakes:
    """Counts the listener's wakes; `wait_for(n)` until there were `n`."""

    def __init__(self) -> None:
        self.count = 0
        self._changed = threading.Condition()

    def __call__(self) -> None:
        with self._changed:
            self.count += 1
            self._changed.notify_all()

    def wait_for(self, count: int, timeout_s: float = 10.0) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.count >= count, timeout_s)


@pytest.fixture
def listening(database_url: str) -> Iterator[tuple[WakeListener, Wakes]]:
    engine = make_engine(database_url)
    wakes = Wakes()
    listener = WakeListener(engine, wakes)
    listener.start()
    yield listener, wakes
    listener.stop()
    engine.dispose()


def _send_from_another_process(database_url: str) -> None:
    subprocess.run([sys.executable, "-c", SEND, database_url], check=True, timeout=60)


def test_a_wake_sent_by_another_process_reaches_the_listener(
    database_url: str, listening: tuple[WakeListener, Wakes]
) -> None:
    _, wakes = listening
    assert wakes.wait_for(1), "a listener wakes once when it starts (for earlier submits)"
    for sent in (2, 3):
        _send_from_another_process(database_url)
        assert wakes.wait_for(sent), f"wake {sent - 1} was not delivered"


def test_sending_without_a_listener_is_silent_and_quick(database_url: str) -> None:
    engine = make_engine(database_url)
    send = wake_sender(engine)
    started = time.monotonic()
    send()  # nobody ever listened
    wakes = Wakes()
    listener = WakeListener(engine, wakes)
    listener.start()
    listener.stop()
    send()  # a listener came and went (its FIFO stays behind)
    assert time.monotonic() - started < 10
    engine.dispose()


def test_a_file_in_the_way_of_the_fifo_fails_the_start_and_is_never_written(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'commonpool.db'}"
    engine = make_engine(url)
    database = sqlite_file(url)
    assert database is not None
    in_the_way = fifo_path(database)
    in_the_way.write_text("")
    with pytest.raises(Conflict, match="in the way"):
        WakeListener(engine, Wakes()).start()
    wake_sender(engine)()
    assert in_the_way.read_text() == ""
    engine.dispose()
