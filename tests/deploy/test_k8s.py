"""deploy/k8s: manifests that parse, validate, and agree on images, ports and names.

Built-in kinds are validated against the Kubernetes OpenAPI schemas (strict: unknown
fields fail) by `kubernetes-validate` when it is installed; the KubeRay RayCluster has no
schema there, so its pod templates are validated as PodTemplates and its own fields are
checked here. `kubectl kustomize` builds the whole set when kubectl is on PATH.
"""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.deploy.manifests import (
    DEPLOY,
    HEAD_ENV,
    check_command,
    image,
    load_yaml,
    pinned,
    ray_flags,
    shell_commands,
    walk,
)

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.33"


@cache
def documents() -> tuple[tuple[str, dict[str, Any]], ...]:
    return tuple(
        (path.name, doc)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in load_yaml(path)
    )


def find(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for _, d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def config() -> dict[str, str]:
    return find("ConfigMap", "commonpool-env")["data"]


def pod_templates() -> list[tuple[str, dict[str, Any]]]:
    """(where, pod template) of every workload, the RayCluster's groups included."""
    out = []
    for _, doc in documents():
        if doc["kind"] in {"Deployment", "StatefulSet"}:
            out.append((f"{doc['kind']}/{doc['metadata']['name']}", doc["spec"]["template"]))
        if doc["kind"] == "RayCluster":
            out.append(("RayCluster/head", doc["spec"]["headGroupSpec"]["template"]))
            for group in doc["spec"]["workerGroupSpecs"]:
                out.append((f"RayCluster/{group['groupName']}", group["template"]))
    return out


def containers(template: dict[str, Any]) -> list[dict[str, Any]]:
    spec = template["spec"]
    return [*spec.get("initContainers", []), *spec["containers"]]


def container(template: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in containers(template) if c["name"] == name]
    return found


def env_of(c: dict[str, Any]) -> dict[str, str]:
    env = {e["name"]: e.get("value", "") for e in c.get("env", [])}
    if any(ref.get("configMapRef", {}).get("name") == "commonpool-env"
           for ref in c.get("envFrom", [])):
        env = {**config(), **env}
    return env


def raycluster() -> dict[str, Any]:
    return find("RayCluster", "commonpool-ray")


def head_container() -> dict[str, Any]:
    return container(raycluster()["spec"]["headGroupSpec"]["template"], "ray-head")


def test_every_manifest_parses_has_identity_and_is_in_the_kustomization() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")[0]
    listed = set(kustomization["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert kustomization["namespace"] == find("Namespace", "commonpool")["metadata"]["name"]
    for name, doc in documents():
        assert doc.get("apiVersion") and doc.get("kind"), name
        assert doc["metadata"].get("name"), name
        assert "namespace" not in doc["metadata"], f"{name}: the kustomization sets it"


def test_built_in_kinds_validate_against_the_kubernetes_schemas() -> None:
    validate = pytest.importorskip(
        "kubernetes_validate", reason="kubernetes-validate is not installed"
    )
    checked = 0
    for _, doc in documents():
        if doc["kind"] == "RayCluster":
            continue
        validate.validate(doc, KUBERNETES_VERSION, strict=True)
        checked += 1
    for where, template in pod_templates():
        pod = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "t"},
               "template": template}
        try:
            validate.validate(pod, KUBERNETES_VERSION, strict=True)
        except validate.ValidationError as exc:
            raise AssertionError(f"{where}: {exc}") from exc
    assert checked >= 8
    broken = {**find("Service", "commonpool-api")}
    broken["spec"] = {**broken["spec"], "portz": []}
    with pytest.raises(validate.ValidationError):  # strict really rejects unknown fields
        validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_kustomize_builds_the_set() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed")
    built = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True,
                           timeout=60)
    assert built.returncode == 0, built.stderr
    kinds = [line.split(":", 1)[1].strip() for line in built.stdout.splitlines()
             if line.startswith("kind:")]
    assert sorted(kinds) == sorted(doc["kind"] for _, doc in documents())


def test_every_image_is_the_one_commonpool_image_or_a_pinned_third_party() -> None:
    seen = set()
    for where, template in pod_templates():
        for c in containers(template):
            ref = c["image"]
            if ref.split(":")[0] == "commonpool":
                assert ref == image(), f"{where}/{c['name']}: {ref}"
                seen.add(where)
            else:
                assert ":" in ref and not ref.endswith(":latest"), f"{where}: unpinned {ref}"
    assert {"Deployment/commonpool-server", "Deployment/commonpool-scheduler",
            "RayCluster/head", "RayCluster/in-cluster"} <= seen
    (kustomize_image,) = load_yaml(K8S / "kustomization.yaml")[0]["images"]
    assert f"{kustomize_image['name']}:{kustomize_image['newTag']}" == image()


def test_commands_are_ones_the_cli_accepts() -> None:
    commands = []
    for where, template in pod_templates():
        for c in containers(template):
            argv = [*c.get("command", []), *c.get("args", [])]
            if argv[:2] == ["/usr/bin/tini", "--"]:
                argv = argv[2:]
            if argv[:2] == ["/bin/sh", "-c"]:
                runs = [a for a in shell_commands(argv[2]) if a[0] in {"commonpool", "ray"}]
            elif argv and argv[0] in {"commonpool", "ray"}:
                runs = [argv]
            else:
                continue
            for run in runs:
                commands.append((where, check_command(run, env_of(c))))
    assert sorted(commands) == sorted([
        ("Deployment/commonpool-server", "commonpool server"),
        ("Deployment/commonpool-scheduler", "commonpool scheduler"),
        ("RayCluster/head", "ray start"),
        ("RayCluster/in-cluster", "commonpool enroll-token"),
        ("RayCluster/in-cluster", "commonpool agent"),
    ])


def test_server_service_ingress_probes_and_env_agree_on_the_port() -> None:
    server = container(find("Deployment", "commonpool-server")["spec"]["template"], "server")
    (port,) = server["ports"]
    assert port["containerPort"] == int(config()["COMMONPOOL_PORT"])
    assert config()["COMMONPOOL_HOST"] == "0.0.0.0"
    service = find("Service", "commonpool-api")
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] == port["name"]
    assert service["spec"]["selector"].items() <= (
        find("Deployment", "commonpool-server")["spec"]["template"]["metadata"]["labels"].items()
    )
    assert server["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert server["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ingress = find("Ingress", "commonpool-api")
    (rule,) = ingress["spec"]["rules"]
    backend = rule["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "commonpool-api", "port": {"number": service_port["port"]}}
    public = urlsplit(config()["COMMONPOOL_SERVER_URL"])
    assert public.scheme == "https" and public.hostname == rule["host"]
    assert rule["host"] in ingress["spec"]["tls"][0]["hosts"]
    for c in containers(raycluster()["spec"]["workerGroupSpecs"][0]["template"]):
        url = urlsplit(env_of(c)["COMMONPOOL_SERVER_URL"])
        assert url.hostname is not None
        assert url.hostname.split(".")[0] == "commonpool-api"
        assert url.port == service_port["port"]


def test_postgres_service_probe_and_database_url_agree() -> None:
    postgres = container(find("StatefulSet", "commonpool-postgres")["spec"]["template"],
                         "postgres")
    (port,) = postgres["ports"]
    service = find("Service", "commonpool-postgres")
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] == port["name"]
    url = urlsplit(config()["COMMONPOOL_DATABASE_URL"])
    assert url.scheme.startswith("postgresql")
    assert (url.hostname, url.port) == (service["metadata"]["name"], service_port["port"])
    assert url.password is None  # PGPASSWORD comes from the secret
    probe = postgres["readinessProbe"]["exec"]["command"]
    assert probe[0] == "pg_isready" and probe[probe.index("-p") + 1] == str(port["containerPort"])
    for name in ("commonpool-server", "commonpool-scheduler"):
        c = find("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        (password,) = [e for e in c["env"] if e["name"] == "PGPASSWORD"]
        assert password["valueFrom"]["secretKeyRef"]["name"] == "commonpool-postgres"


def test_the_ray_head_ports_agree_with_its_service_params_and_the_servers_env() -> None:
    cluster = raycluster()
    assert cluster["metadata"]["annotations"]["ray.io/overwrite-container-cmd"] == "true"
    assert cluster["spec"]["rayVersion"] == pinned("ray")
    head = head_container()
    flags = ray_flags(head["args"])
    params = cluster["spec"]["headGroupSpec"]["rayStartParams"]
    for key, value in params.items():
        assert flags[key] == str(value), f"rayStartParams {key} differs from the command"
    ports = {p["name"]: p["containerPort"] for p in head["ports"]}
    assert str(ports["gcs-server"]) == flags["port"]
    assert str(ports["dashboard"]) == flags["dashboard-port"]
    assert str(ports["client"]) == flags["ray-client-server-port"]
    assert head["readinessProbe"]["tcpSocket"]["port"] == ports["gcs-server"]
    address = config()["COMMONPOOL_RAY_ADDRESS"]
    host, _, gcs = address.rpartition(":")
    assert gcs == flags["port"]
    dashboard = urlsplit(config()["COMMONPOOL_RAY_DASHBOARD_URL"])
    assert (dashboard.hostname, str(dashboard.port)) == (host, flags["dashboard-port"])
    assert flags["node-ip-address"] == flags["dashboard-host"] == "$(HOST_IP)"
    assert cluster["spec"]["headGroupSpec"]["template"]["spec"]["hostNetwork"] is True


def test_every_ray_pod_has_token_auth_from_the_one_secret() -> None:
    head = head_container()
    env = env_of(head)
    assert {k: env.get(k) for k in HEAD_ENV} == HEAD_ENV
    token_file = config()["COMMONPOOL_RAY_AUTH_TOKEN_FILE"]
    for where, template in pod_templates():
        if where.startswith("StatefulSet"):
            continue
        main = template["spec"]["containers"][0]
        mounts = {m["name"]: m["mountPath"] for m in main.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        assert volumes["ray-token"]["secret"]["secretName"] == "commonpool-ray-token", where
        assert token_file.startswith(mounts["ray-token"] + "/"), where
        if where.startswith("RayCluster"):
            assert env_of(main)["RAY_AUTH_MODE"] == "token", where
            assert env_of(main)["RAY_AUTH_TOKEN_PATH"] == token_file, where


def test_in_cluster_workers_are_agents_that_enroll_each_pod_and_drain() -> None:
    (group,) = raycluster()["spec"]["workerGroupSpecs"]
    template = group["template"]
    assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
    agent = container(template, "agent")
    script = agent["args"][0]
    (run,) = [a for a in shell_commands(script) if a[:2] == ["commonpool", "agent"]]
    assert run[run.index("--job-user") + 1] == "commonpool-job"
    grace = float(run[run.index("--drain-grace") + 1]) if "--drain-grace" in run else 60.0
    assert template["spec"]["terminationGracePeriodSeconds"] >= grace + 30
    enroll = container(template, "enroll")
    token = next(e for e in enroll["env"] if e["name"] == "COMMONPOOL_TOKEN")
    assert token["valueFrom"]["secretKeyRef"]["name"] == "commonpool-enroller"
    assert all(e["name"] != "COMMONPOOL_TOKEN" for e in agent["env"]), "the agent never sees it"
    limits = agent["resources"]["limits"]
    env = env_of(agent)
    assert float(env["AGENT_CPUS"]) < float(limits["cpu"])  # room for the agent and raylet


def test_secrets_the_manifests_use_are_the_documented_ones() -> None:
    used = set()
    for _, doc in documents():
        for path, value in walk(doc):
            if path and path[-1] in {"secretName"} and isinstance(value, str):
                used.add(value)
            if path and path[-1] == "secretKeyRef":
                used.add(value["name"])
    readme = (DEPLOY / "README.md").read_text()
    for secret in used:
        assert secret in readme, f"deploy/README.md does not say how to create {secret}"


def test_no_pod_reads_a_file_it_does_not_mount() -> None:
    for where, template in pod_templates():
        volumes = {v["name"] for v in template["spec"].get("volumes", [])}
        volumes |= _claim_templates(where)
        for c in containers(template):
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes, f"{where}: no volume {mount['name']}"


def _claim_templates(where: str) -> set[str]:
    if not where.startswith("StatefulSet/"):
        return set()
    doc = find("StatefulSet", where.split("/", 1)[1])
    return {t["metadata"]["name"] for t in doc["spec"].get("volumeClaimTemplates", [])}


def test_checkpoint_storage_is_one_shared_volume_at_one_path() -> None:
    storage = config()["COMMONPOOL_CHECKPOINT_STORAGE"]
    claim = find("PersistentVolumeClaim", "commonpool-checkpoints")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    for where, template in pod_templates():
        if where in {"RayCluster/head", "RayCluster/in-cluster",
                     "Deployment/commonpool-scheduler"}:
            main = template["spec"]["containers"][0]
            mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
            assert mounts["checkpoints"] == storage, where


def test_pod_hardening() -> None:
    for where, template in pod_templates():
        for c in containers(template):
            security = c.get("securityContext", {})
            assert security.get("allowPrivilegeEscalation") is False, f"{where}/{c['name']}"
            assert "ALL" in security.get("capabilities", {}).get("drop", []), where
        if where.startswith("Deployment"):
            pod = template["spec"]["securityContext"]
            assert pod["runAsNonRoot"] is True and pod["runAsUser"] != 0, where
            assert template["spec"]["containers"][0]["securityContext"]["readOnlyRootFilesystem"]


def test_nothing_here_is_a_file_the_kustomization_would_miss() -> None:
    stray = [p.name for p in K8S.iterdir() if p.suffix not in {".yaml"}]
    assert stray == [], f"deploy/k8s holds files kubectl apply -k ignores: {stray}"
