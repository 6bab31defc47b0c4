"""deploy/Dockerfile and what every deploy file shares: one image, Ray's ports, no 6379.

The image is not built here (no Docker daemon, no network); its Dockerfile is checked
against the package instead: the Python, the pinned torch from the CPU index, the venv
path the systemd units run, and that everything it copies exists and is not ignored.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shlex

from commonpool.scheduler.config import Settings
from tests.deploy.manifests import (
    DEPLOY,
    REPO,
    VENV_BIN,
    image,
    load_yaml,
    pinned,
    version,
    walk,
)

DOCKERFILE = DEPLOY / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def args() -> dict[str, str]:
    return {
        name: value
        for word, rest in instructions() if word == "ARG" and "=" in rest
        for name, _, value in [rest.partition("=")]
    }


def test_the_image_is_python_311_slim_with_the_cpu_torch_the_package_pins() -> None:
    assert args()["PYTHON_IMAGE"] == "python:3.11-slim"
    assert [rest for word, rest in instructions() if word == "FROM"] == [
        "${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE}"]
    assert args()["TORCH_VERSION"] == pinned("torch")
    assert args()["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    runs = [rest for word, rest in instructions() if word == "RUN"]
    torch_install = next(r for r in runs if '"torch==${TORCH_VERSION}"' in r)
    assert '--index-url "${TORCH_INDEX}"' in torch_install
    package = runs.index(next(r for r in runs if 'pip install "/src${EXTRAS}"' in r))
    assert runs.index(torch_install) < package, "torch first, so the package keeps it"
    assert "GPU variant" in DOCKERFILE.read_text()


def test_the_venv_is_where_the_systemd_units_run_it() -> None:
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    assert f"python -m venv {VENV_BIN.removesuffix('/bin/')}" in runs
    env = " ".join(rest for word, rest in instructions() if word == "ENV")
    assert f"PATH={VENV_BIN.rstrip('/')}:$PATH" in env
    for unit in (DEPLOY / "systemd").glob("*.service"):
        assert VENV_BIN in unit.read_text(), unit.name


def test_it_runs_unprivileged_with_an_init_and_serves_the_default_port() -> None:
    found = dict(instructions()[::-1])  # the last of each instruction wins
    assert found["USER"] == "commonpool"
    assert found["ENTRYPOINT"] == '["/usr/bin/tini", "--"]'
    assert found["EXPOSE"] == str(Settings.model_fields["port"].default)
    runs = " ".join(rest for word, rest in instructions() if word == "RUN")
    assert "--uid 10001" in runs and "commonpool-job" in runs
    # The uid the Kubernetes pods run as is the image's user.
    for path in (DEPLOY / "k8s").glob("*.yaml"):
        for doc in load_yaml(path):
            if doc["kind"] == "Deployment":
                assert doc["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == 10001


def test_everything_copied_exists_and_survives_the_dockerignore() -> None:
    ignore = [
        line.strip() for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]

    def ignored(path: str) -> bool:
        result = False
        for pattern in ignore:
            negate = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(path, bare) or path.startswith(bare + "/"):
                result = not negate
        return result

    copies = [shlex.split(rest) for word, rest in instructions() if word == "COPY"]
    sources = [src for argv in copies if not argv[0].startswith("--from")
               for src in argv[:-1]]
    assert {"pyproject.toml", "setup.py", "README.md", "scheduler", "workers", "api",
            "migrations", "src"} <= set(sources)
    for source in sources:
        assert (REPO / source).exists(), source
        assert not ignored(source), f"{source} is excluded from the build context"
    assert ignored(".venv") and ignored("tests") and ignored(".git")


def test_every_commonpool_image_reference_is_the_one_name_and_tag() -> None:
    """Compose and Kubernetes run exactly the image the Dockerfile says to build."""
    assert image() == f"commonpool:{version()}"
    refs = []
    for path in DEPLOY.rglob("*"):
        if path.suffix in {".yaml", ".yml"}:
            for match in re.finditer(r"\bcommonpool:[\w.\-]+", path.read_text()):
                refs.append((path.relative_to(DEPLOY), match.group(0)))
    assert len(refs) >= 6
    assert {ref for _, ref in refs} == {image()}, refs
    assert f"docker build -f deploy/Dockerfile -t {image()} ." in DOCKERFILE.read_text()


def test_no_deploy_file_uses_port_6379() -> None:
    """Redis owns 6379, Ray's default GCS port, on many hosts: every Ray port is explicit.

    Checked in what the files configure (parsed YAML and JSON values, non-comment lines),
    so a comment may still say why."""
    scanned = 0
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file() and p.suffix != ".md"):
        if path.suffix in {".yaml", ".yml", ".json"}:
            docs = [json.loads(path.read_text())] if path.suffix == ".json" else load_yaml(path)
            values = [str(v) for doc in docs for key_path, v in walk(doc)
                      if not isinstance(v, dict | list)]
            values += [str(k) for doc in docs for key_path, _ in walk(doc) for k in key_path]
            text = "\n".join(values)
        else:
            text = "\n".join(line for line in path.read_text().splitlines()
                             if not line.lstrip().startswith("#"))
        assert not re.search(r"(?<!\d)6379(?!\d)", text), path
        scanned += 1
    assert scanned >= 15


def test_every_ray_head_uses_the_same_explicit_ports() -> None:
    from tests.deploy.manifests import ray_flags
    from tests.deploy.test_compose import service
    from tests.deploy.test_k8s import head_container
    from tests.deploy.test_systemd import exec_start

    heads = {
        "systemd": ray_flags(exec_start(DEPLOY / "systemd" / "commonpool-ray-head.service")),
        "compose": ray_flags(service("ray-head")["command"]),
        "k8s": ray_flags(head_container()["args"]),
    }
    ports = {
        where: {k: v for k, v in flags.items() if k.endswith("port")}
        for where, flags in heads.items()
    }
    assert ports["systemd"] == ports["compose"] == ports["k8s"]
    assert len(ports["systemd"]) == 11  # GCS, dashboard, client, raylet, agents, workers
    assert all(int(p) != 6379 for p in ports["systemd"].values())
    for flags in heads.values():
        assert flags["num-cpus"] == "0" and flags["labels"] == "commonpool/node=head"
