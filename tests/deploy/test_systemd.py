"""deploy/systemd: units systemd accepts, commands the CLI accepts, hardening that holds.

`systemd-analyze verify` checks a unit the way systemd would load it, including that
ExecStart is executable. The units name /opt/commonpool/.venv/bin/..., which does not
exist here, so a temp copy points ExecStart at stub executables; everything else is
verified as written. The stubs do not check flags: the real CLI's parser does
(`check_command`).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.manifests import DEPLOY, HEAD_ENV, VENV_BIN, check_command, ray_flags

SYSTEMD = DEPLOY / "systemd"
UNITS = sorted(SYSTEMD.glob("*.service"))
ANALYZE = shutil.which("systemd-analyze")
# Exposure (systemd-analyze security, 0 = locked down, 10 = none): regression limits. The
# agent runs as root by design (it confines each job's Ray node itself, docs/security.md).
MAX_EXPOSURE = {
    "commonpool-server.service": 2.0,
    "commonpool-scheduler.service": 2.0,
    "commonpool-ray-head.service": 5.0,
    "commonpool-agent.service": 8.0,
}
needs_systemd = pytest.mark.skipif(ANALYZE is None, reason="no systemd-analyze on this machine")


Unit = dict[str, dict[str, list[str]]]


def parse(path: Path) -> Unit:
    """A unit file as section -> key -> values (keys may repeat in units)."""
    unit: Unit = {}
    section: dict[str, list[str]] = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = unit.setdefault(line.strip("[]"), {})
        else:
            key, _, value = line.partition("=")
            section.setdefault(key.strip(), []).append(value.strip())
    return unit


def values(unit: Unit, section: str, key: str) -> list[str]:
    return unit.get(section, {}).get(key, [])


def exec_start(path: Path) -> list[str]:
    (line,) = values(parse(path), "Service", "ExecStart")
    return shlex.split(line)


def stubbed_copy(tmp_path: Path) -> list[Path]:
    """The units in `tmp_path`, ExecStart pointing at executable stubs."""
    stubs = tmp_path / "bin"
    stubs.mkdir()
    for name in ("commonpool", "ray"):
        stub = stubs / name
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    copies = []
    for unit in UNITS:
        copy = tmp_path / unit.name
        copy.write_text(unit.read_text().replace(VENV_BIN, f"{stubs}/"))
        copies.append(copy)
    return copies


def verify(paths: list[Path]) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    return subprocess.run(
        [ANALYZE, "verify", "--man=no", *map(str, paths)],
        capture_output=True, text=True, timeout=60,
    )


def test_the_units_are_the_four_documented_ones() -> None:
    assert [u.name for u in UNITS] == sorted(MAX_EXPOSURE)
    readme = (DEPLOY / "README.md").read_text()
    for unit in UNITS:
        assert f"systemd/{unit.name}" in readme, f"deploy/README.md does not list {unit.name}"


@needs_systemd
def test_systemd_analyze_verify_accepts_every_unit(tmp_path: Path) -> None:
    result = verify(stubbed_copy(tmp_path))
    # verify exits 0 on unknown keys and bad values, but says so: nothing may be said.
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


@needs_systemd
def test_verify_catches_what_it_should(tmp_path: Path) -> None:
    """The check above is meaningful: a typo, a bad value, or a missing binary fails it."""
    server = next(p for p in stubbed_copy(tmp_path) if p.name == "commonpool-server.service")
    text = server.read_text()
    for broken in (
        text.replace("ProtectSystem=strict", "ProtectSystm=strict"),
        text.replace("RestartSec=3", "RestartSec=three"),
        text.replace(str(tmp_path / "bin"), "/nonexistent/bin"),
    ):
        server.write_text(broken)
        result = verify([server])
        assert result.returncode != 0 or result.stderr.strip(), broken


@needs_systemd
@pytest.mark.parametrize("name", sorted(MAX_EXPOSURE))
def test_hardening_keeps_the_exposure_score_low(tmp_path: Path, name: str) -> None:
    unit = next(p for p in stubbed_copy(tmp_path) if p.name == name)
    assert ANALYZE is not None
    result = subprocess.run(
        [ANALYZE, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True, text=True, timeout=60,
    )
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d)", result.stdout)
    assert found, result.stdout + result.stderr
    assert float(found.group(1)) <= MAX_EXPOSURE[name], result.stdout


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_every_unit_has_a_user_sandbox_and_restart_policy(unit: Path) -> None:
    service = parse(unit)
    get = lambda key: values(service, "Service", key)  # noqa: E731
    assert get("User") or get("DynamicUser") == ["yes"]
    assert get("ProtectSystem") and get("ProtectSystem")[0] in {"strict", "full"}
    assert get("NoNewPrivileges") == ["yes"] and get("PrivateTmp") == ["yes"]
    assert get("Restart") == ["on-failure"] and get("RestartSec")
    assert values(service, "Install", "WantedBy") == ["multi-user.target"]
    if get("User") != ["root"]:  # every unprivileged unit: no capabilities at all
        assert get("CapabilityBoundingSet") == [""]
        assert get("ProtectSystem") == ["strict"]


@pytest.mark.parametrize("unit", UNITS, ids=lambda p: p.name)
def test_exec_start_is_a_command_the_cli_accepts(unit: Path) -> None:
    argv = exec_start(unit)
    assert argv[0].startswith(VENV_BIN), "one install path for every unit"
    command = check_command(argv, {"RAY_HEAD_ADDRESS": "10.0.0.5"})
    expected = {
        "commonpool-server.service": "commonpool server",
        "commonpool-scheduler.service": "commonpool scheduler",
        "commonpool-agent.service": "commonpool agent",
        "commonpool-ray-head.service": "ray start",
    }[unit.name]
    assert command == expected


def test_the_agent_runs_jobs_as_a_job_user_and_stays_down_when_revoked() -> None:
    unit = SYSTEMD / "commonpool-agent.service"
    argv = exec_start(unit)
    assert argv[argv.index("--job-user") + 1] == "commonpool-job"
    service = parse(unit)
    assert "3" in values(service, "Service", "RestartPreventExitStatus")[0].split()
    # It must outlive its own drain (--drain-grace, 60 s by default, then Ray and leave).
    (stop,) = values(service, "Service", "TimeoutStopSec")
    assert int(stop) >= 120
    assert "ProtectControlGroups" not in service["Service"]  # the job sandbox needs cgroups


def test_the_ray_head_uses_explicit_ports_token_auth_and_the_pools_tuning() -> None:
    unit = SYSTEMD / "commonpool-ray-head.service"
    flags = ray_flags(exec_start(unit))
    assert flags["port"] == "6380" and "head" in flags and flags["num-cpus"] == "0"
    assert all(flags.get(f) for f in ("node-manager-port", "object-manager-port",
                                      "min-worker-port", "max-worker-port"))
    env = dict(v.split("=", 1) for v in values(parse(unit), "Service", "Environment"))
    assert {k: env.get(k) for k in HEAD_ENV} == HEAD_ENV
    assert env["RAY_AUTH_TOKEN_PATH"]


def test_the_server_and_scheduler_keep_apart_what_a_job_could_read() -> None:
    """A job's working_dir (a local path) is read by the scheduler: it must not reach the
    server's state (the admin token) nor the TLS key."""
    scheduler = parse(SYSTEMD / "commonpool-scheduler.service")
    state = values(scheduler, "Service", "StateDirectory")
    assert state and state != values(parse(SYSTEMD / "commonpool-server.service"), "Service",
                                      "StateDirectory")
    hidden = " ".join(values(scheduler, "Service", "InaccessiblePaths"))
    assert "/var/lib/commonpool " in f"{hidden} " and "/etc/commonpool/tls" in hidden


def test_sysusers_creates_the_units_users() -> None:
    users = {
        line.split()[1]
        for line in (SYSTEMD / "commonpool.sysusers.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    named = {values(parse(u), "Service", "User")[0] for u in UNITS} - {"root"}
    assert named | {"commonpool-job"} <= users
