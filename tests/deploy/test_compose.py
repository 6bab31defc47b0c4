"""deploy/compose: the services, their health checks, and ports that agree with each other.

Offline: no Docker daemon is needed. The compose file is parsed as YAML (anchors and
merge keys resolved), `${VAR}` interpolated from env.example the way compose would, and
every command checked by the real CLI's parser. The server's health check is run for
real against the app.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.conftest import LiveServer
from tests.deploy.manifests import DEPLOY, HEAD_ENV, check_command, image, ray_flags

COMPOSE = DEPLOY / "compose"
_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])((?:[^{}]|\{[^{}]*\})*))?\}")


def dotenv() -> dict[str, str]:
    pairs = {}
    for line in (COMPOSE / "env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value.strip()
    return pairs


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's `${X}`, `${X:-default}` and `${X:?error}` (nested defaults too)."""

    def value(match: re.Match[str]) -> str:
        name, op, arg = match.groups()
        if env.get(name):
            return env[name]
        if op and op.endswith("-"):
            return interpolate(arg or "", env)
        if op and op.endswith("?"):
            raise AssertionError(f"${{{name}}} is required: {arg}")
        return ""

    previous = None
    while previous != text:
        previous, text = text, _INTERPOLATION.sub(value, text)
    return text


def compose(path: Path = COMPOSE / "compose.yaml") -> dict[str, Any]:
    return yaml.safe_load(interpolate(path.read_text(), dotenv()))


def service(name: str) -> dict[str, Any]:
    return compose()["services"][name]


def env_of(name: str) -> dict[str, str]:
    return {k: str(v) for k, v in service(name).get("environment", {}).items()}


def test_compose_has_the_pool_services_and_every_reference_resolves() -> None:
    spec = compose()
    services = spec["services"]
    assert {"postgres", "server", "scheduler", "ray-head"} <= set(services)
    for name, svc in services.items():
        for secret in svc.get("secrets", []):
            assert secret in spec["secrets"], f"{name}: unknown secret {secret}"
        for net in svc.get("networks", []):
            assert net in spec["networks"], f"{name}: unknown network {net}"
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if not source.startswith(("/", ".")):
                assert source in spec["volumes"], f"{name}: unknown volume {source}"
            elif source.startswith("."):
                assert (COMPOSE / source).exists(), f"{name}: {source} is missing"
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name} depends on unknown {dep}"
    assert (COMPOSE / "env.example").exists()


def test_every_commonpool_service_runs_the_one_image_and_third_parties_are_pinned() -> None:
    for name, svc in compose()["services"].items():
        ref = svc["image"]
        if ref.split(":")[0] == "commonpool":
            assert ref == image(), name
            assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
            assert (COMPOSE / svc["build"]["context"] / svc["build"]["dockerfile"]).is_file()
        else:
            tag = ref.rpartition(":")[2]
            assert ":" in ref and tag and tag != "latest", f"{name}: unpinned image {ref}"


def test_commands_are_ones_the_cli_accepts() -> None:
    assert check_command(service("server")["command"]) == "commonpool server"
    assert check_command(service("scheduler")["command"]) == "commonpool scheduler"
    assert check_command(service("ray-head")["command"]) == "ray start"


def test_health_checks_hit_readyz_and_pg_isready() -> None:
    postgres = service("postgres")["healthcheck"]["test"]
    assert postgres[:2] == ["CMD", "pg_isready"]
    assert postgres[postgres.index("-p") + 1] == "5432"
    server = " ".join(service("server")["healthcheck"]["test"])
    assert "/readyz" in server
    head = service("ray-head")["healthcheck"]["test"]
    assert head[1:3] == ["ray", "health-check"]
    assert head[-1].endswith(":" + ray_flags(service("ray-head")["command"])["port"])
    depends = service("scheduler")["depends_on"]
    assert depends["server"]["condition"] == depends["ray-head"]["condition"] == "service_healthy"
    assert service("server")["depends_on"]["postgres"]["condition"] == "service_healthy"


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_the_servers_health_check_passes_against_the_real_app(
    app, tmp_path: Path, tls: bool  # type: ignore[no-untyped-def]
) -> None:
    """The check's Python, as compose runs it, against the app on a loopback port."""
    test = service("server")["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    options: dict[str, Any] = {}
    env = {}
    if tls:
        cert, key = _self_signed(tmp_path)
        options = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
        env = {"COMMONPOOL_TLS_CERT_FILE": str(cert)}
    with LiveServer(app, **options) as live:
        code = test[3].replace("127.0.0.1:8765", f"127.0.0.1:{live.port}")
        assert code != test[3], "the check must probe the server's own port 8765"
        result = _run_check_like_compose(code, env)
        assert result.returncode == 0, result.stderr
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode != 0, "the check passed with no server"


def _run_check_like_compose(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run the check until it passes, at most a few of compose's `retries` times.

    Compose marks a service unhealthy only after `retries` failed checks in a row; one check
    that times out on a loaded machine (2 cores running the suite) is not a failure there.
    """
    retries = int(service("server")["healthcheck"]["retries"])
    result = None
    for _ in range(min(retries, 3)):
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                                text=True, timeout=30)
        if result.returncode == 0:
            break
    assert result is not None
    return result


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


def test_ports_and_addresses_agree_between_head_server_and_env() -> None:
    head = ray_flags(service("ray-head")["command"])
    address = dotenv()["POOL_ADDRESS"]
    assert head["node-ip-address"] == head["dashboard-host"] == address
    assert service("ray-head")["network_mode"] == "host"  # Ray advertises its own address
    for name in ("server", "scheduler"):
        env = env_of(name)
        assert env["COMMONPOOL_RAY_ADDRESS"] == f"{address}:{head['port']}"
        dashboard = urlsplit(env["COMMONPOOL_RAY_DASHBOARD_URL"])
        assert (dashboard.hostname, str(dashboard.port)) == (address, head["dashboard-port"])
        assert env["COMMONPOOL_RAY_AUTH_TOKEN_FILE"] == "/run/secrets/ray_token"
        assert "ray_token" in service(name)["secrets"]
        database = urlsplit(env["COMMONPOOL_DATABASE_URL"])
        assert (database.hostname, database.port) == ("postgres", 5432)
        assert database.password is None and env["PGPASSWORD"]  # the secret stays out of URLs
        server_url = urlsplit(env["COMMONPOOL_SERVER_URL"])
        assert (server_url.hostname, server_url.port) == (address, 8765)
    server_env = env_of("server")
    port = server_env["COMMONPOOL_PORT"]
    assert service("server")["ports"] == [f"{address}:{port}:{port}"]
    assert server_env["COMMONPOOL_HOST"] == "0.0.0.0"
    prometheus = yaml.safe_load((COMPOSE / "prometheus.yml").read_text())
    targets = prometheus["scrape_configs"][0]["static_configs"][0]["targets"]
    assert targets == [f"server:{port}"]


def test_the_ray_head_has_token_auth_and_the_pools_tuning() -> None:
    head = service("ray-head")
    env = env_of("ray-head")
    assert {k: env.get(k) for k in HEAD_ENV} == HEAD_ENV
    assert env["RAY_AUTH_TOKEN_PATH"] == "/run/secrets/ray_token"
    flags = ray_flags(head["command"])
    assert "head" in flags and flags["num-cpus"] == "0"
    assert flags["labels"] == "commonpool/node=head"


def test_schedulers_run_as_replicas_on_postgresql() -> None:
    assert service("scheduler")["deploy"]["replicas"] >= 2
    assert env_of("scheduler")["COMMONPOOL_DATABASE_URL"].startswith("postgresql")


def test_the_tls_override_serves_https_with_a_certificate() -> None:
    env = {**dotenv(), "COMMONPOOL_SERVER_URL": "https://pool.example.org:8765"}
    override = yaml.safe_load(interpolate((COMPOSE / "compose.tls.yaml").read_text(), env))
    server = override["services"]["server"]
    assert server["environment"]["COMMONPOOL_TLS_CERT_FILE"].startswith("/run/secrets/")
    assert server["environment"]["COMMONPOOL_TLS_KEY_FILE"].startswith("/run/secrets/")
    assert {"tls_cert", "tls_key"} <= set(server["secrets"])
    assert server["environment"]["COMMONPOOL_SERVER_URL"].startswith("https://")
    prometheus = yaml.safe_load((COMPOSE / "prometheus.tls.yml").read_text())
    assert prometheus["scrape_configs"][0]["scheme"] == "https"
