"""HTTPS: the API serves a certificate from a private CA; clients verify it or refuse."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from fastapi import FastAPI

from commonpool.api.client.errors import ConnectionFailed
from commonpool.api.client.sdk import Client
from commonpool.workers import job
from tests.conftest import LiveServer

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def make_pki(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) PEM files."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("commonpool test CA"))
        .issuer_name(_name("commonpool test CA")).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    return paths


@pytest.fixture
def tls_server(app: FastAPI, tmp_path: Path) -> Iterator[tuple[LiveServer, Path]]:
    ca, cert, key = make_pki(tmp_path)
    with LiveServer(app, ssl_certfile=str(cert), ssl_keyfile=str(key)) as server:
        yield server, ca


def test_client_verifies_the_pool_ca_and_refuses_without_it(
    tls_server: tuple[LiveServer, Path], admin_token: str
) -> None:
    server, ca = tls_server
    assert server.url.startswith("https://")
    with Client(server.url, token=admin_token, ca_file=ca) as client:
        assert client.whoami().subject == "admin"
    with Client(server.url, token=admin_token) as client, pytest.raises(ConnectionFailed) as err:
        client.whoami()
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)


def test_cli_uses_the_configured_ca_file(
    tls_server: tuple[LiveServer, Path], admin_token: str
) -> None:
    server, ca = tls_server
    env = {**os.environ, "COMMONPOOL_TOKEN": admin_token, "COMMONPOOL_CA_FILE": str(ca)}
    cmd = [sys.executable, "-m", "commonpool", "--server", server.url, "whoami", "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["subject"] == "admin"
    env.pop("COMMONPOOL_CA_FILE")
    refused = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert refused.returncode == 4 and "CERTIFICATE_VERIFY_FAILED" in refused.stderr


def test_job_reports_metrics_over_https_with_the_pool_ca(
    tls_server: tuple[LiveServer, Path], admin_token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca = tls_server
    with Client(server.url, token=admin_token, ca_file=ca) as client:
        from commonpool.api.schemas import JobSpec

        job_id = client.submit_job(JobSpec(name="j", entrypoint="a.b:c")).id
        monkeypatch.setenv(job.ENV_SERVER, server.url)
        monkeypatch.setenv(job.ENV_JOB_ID, job_id)
        monkeypatch.setenv(job.ENV_TOKEN, admin_token)
        monkeypatch.setenv(job.ENV_CA_PEM, ca.read_text())
        job.report({"loss": 0.25}, step=1)
        assert [m.values for m in client.job_metrics(job_id)] == [{"loss": 0.25}]
