"""The dashboard in a real browser: Playwright on Debian's Chromium against a real local pool.

One pool for the whole package (Ray head + two agents as processes, the API
serving /dashboard), with real data: a DDP job trained to the end (metrics,
energy, logs), a long job running (to cancel from the page), and a job that
can never be placed (a why-pending reason), submitted by a non-admin user.

The browser is always `/usr/bin/chromium` from Debian (never a downloaded
one). Without it the tests skip with a loud reason, except under CI, where
they fail: CI must run them. Screenshots of every page go to
`$COMMONPOOL_SCREENSHOTS` (default `<repo>/build/screenshots`) for review.
"""

from __future__ import annotations

import io
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from commonpool.api.client.sdk import Client
from commonpool.api.local_pool import LocalPool
from commonpool.api.schemas import JobRead, TokenCreate
from commonpool.scheduler.spec import JobSpec

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("COMMONPOOL_CHROMIUM", "/usr/bin/chromium"))
LAUNCH_ARGS = ["--no-sandbox", "--disable-background-networking"]
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
DIGITS_EPOCHS = 3
DIGITS_ENTRYPOINT = "commonpool.workers.examples.digits_mlp:train"
# Chromium logs every refused fetch; the tests that provoke a 401 or 403 do so on purpose.
REFUSED_CALL = re.compile(r"status of 40[13]")
JOB_CODE = '''
import time
from commonpool.workers import job


def slow(config):
    for step in range(1, config.get("steps", 600) + 1):
        time.sleep(0.5)
        job.report({"loss": 1.0 / step, "samples_per_s": 10.0}, step=step)
'''


def browser_unavailable() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not CHROMIUM.exists():
        return (
            f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`, "
            "which `make test` does when it may)"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (`pip install -e '.[test]'`)"
    return None


@pytest.fixture(scope="package", autouse=True)
def _chromium() -> None:
    """Runs before anything else of the package, so a missing browser costs no pool start."""
    reason = browser_unavailable()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests, but {reason}")
    pytest.skip(f"BROWSER TESTS SKIPPED: {reason}")


def screenshot_dir() -> Path:
    folder = Path(os.environ.get("COMMONPOOL_SCREENSHOTS") or ROOT / "build" / "screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass
class World:
    """The pool and what the tests look at in it."""

    pool: LocalPool
    admin_token: str
    user: str
    user_token: str
    digits: JobRead  # SUCCEEDED, with metrics, energy and logs
    sleeper: JobRead  # RUNNING until a test cancels it
    pending: JobRead  # QUEUED for ever (no node matches its labels), owned by `user`

    @property
    def url(self) -> str:
        return self.pool.url


def _settled_energy(client: Client, job_id: str, timeout: float = 60) -> None:
    """Wait until the agents' post-job heartbeats (every 2 s) have landed the job's energy."""
    deadline = time.monotonic() + timeout
    last = -1.0
    while time.monotonic() < deadline:
        energy = client.job_energy(job_id).energy_j
        if energy > 0 and energy == last:
            return
        last = energy
        time.sleep(3.0)
    raise AssertionError(f"energy of {job_id} never settled ({last} J)")


def _wait_state(client: Client, job_id: str, state: str, timeout: float = 180) -> JobRead:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get_job(job_id)
        if job.state == state:
            return job
        if time.monotonic() > deadline:
            raise AssertionError(f"{job_id} is {job.state}, not {state}: {job.exit_reason}")
        time.sleep(0.5)


@pytest.fixture(scope="package")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    log = io.StringIO()
    state = tmp_path_factory.mktemp("browser-pool")
    code = tmp_path_factory.mktemp("browser-jobcode")
    (code / "dashjobs.py").write_text(JOB_CODE)
    with LocalPool(state, agents=2, cpus_per_agent=1.0, log=log) as pool, pool.client() as admin:
        admin.create_user("ada")
        admin.set_member("default", "ada", "member")
        user_token = admin.create_token(
            TokenCreate(user="ada", scopes=["jobs:read", "jobs:write"], name="dashboard-test")
        ).token
        digits = admin.submit_job(
            JobSpec(
                name="digits-mlp",
                entrypoint=DIGITS_ENTRYPOINT,
                workers=2,
                resources={"cpus": 1},
                args={"epochs": DIGITS_EPOCHS},
                project="default",
            )
        )
        digits = admin.wait(digits.id, timeout_s=300)
        assert digits.state == "SUCCEEDED", f"{digits.exit_reason}\n{log.getvalue()[-3000:]}"
        _settled_energy(admin, digits.id)
        sleeper = admin.submit_job(
            JobSpec(
                name="sleeper",
                entrypoint="dashjobs:slow",
                working_dir=str(code),
                workers=1,
                resources={"cpus": 1},
                project="default",
            )
        )
        sleeper = _wait_state(admin, sleeper.id, "RUNNING")
        with Client(pool.url, token=user_token) as ada:
            pending = ada.submit_job(
                # a non-admin may not ship a folder of the scheduler's machine (job_code_dirs);
                # the job never runs, so the bundled example's entry point will do
                JobSpec(name="needs-a-site", entrypoint=DIGITS_ENTRYPOINT,
                        label_selector={"site": "nowhere"}, project="default")
            )
        deadline = time.monotonic() + 30
        while not (pending := admin.get_job(pending.id)).pending_reason:
            assert time.monotonic() < deadline, "the scheduler gave no pending reason"
            time.sleep(0.5)
        yield World(pool, pool.admin_token, "ada", user_token, digits, sleeper, pending)


@pytest.fixture(scope="package")
def browser(world: World) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Any, world: World) -> Iterator[Any]:
    """A fresh browser profile (empty session storage) on the pool's URL."""
    ctx = browser.new_context(base_url=world.url, viewport=DESKTOP)
    ctx.set_default_timeout(20_000)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: Any) -> Any:
    """A page that fails the test on any script error or CSP violation."""
    tab = context.new_page()
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    tab.on(
        "console",
        lambda msg: problems.append(f"console {msg.type}: {msg.text}")
        if msg.type == "error" and not REFUSED_CALL.search(msg.text)
        else None,
    )
    yield tab
    assert problems == [], problems


def login(page: Any, token: str) -> None:
    """Sign in through the form, as a person would; lands on the Pool page."""
    page.goto("/dashboard")
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("navigation", name="Dashboard pages").wait_for()
    page.get_by_role("heading", name="Pool", level=1, exact=True).wait_for()


def visit(page: Any, route: str, heading: str) -> None:
    """Go to a dashboard route by its link-able hash and wait for the page's data."""
    page.evaluate("route => { window.location.hash = route; }", route)
    page.get_by_role("heading", name=heading, level=1, exact=True).wait_for()


def shot(page: Any, name: str) -> Path:
    path = screenshot_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def admin_page(page: Any, world: World) -> Any:
    login(page, world.admin_token)
    return page


@pytest.fixture
def user_page(page: Any, world: World) -> Any:
    login(page, world.user_token)
    return page
