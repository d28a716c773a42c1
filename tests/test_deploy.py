"""The step image and the cluster manifests, checked without a Docker engine or a cluster."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).parents[1]
DOCKERFILE = ROOT / "Dockerfile"
BASE = ROOT / "manifests" / "base"
K8S_VERSION = "1.30"


def instructions() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_copies_paths_that_exist_and_the_context_keeps_them() -> None:
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert ignored[0] == "*"
    kept = {line[1:].rstrip("/") for line in ignored if line.startswith("!")}
    for kind, args in instructions():
        if kind == "COPY" and "--from" not in args:
            for source in args.split()[:-1]:
                assert (ROOT / source).exists(), f"COPY {source}: no such path"
                assert source.rstrip("/") in kept, f"COPY {source} is excluded by .dockerignore"


def test_torch_and_package_install_match_ci() -> None:
    makefile = (ROOT / "Makefile").read_text()
    runs = " ".join(args for kind, args in instructions() if kind == "RUN")
    ci_torch = re.search(r"pip install --quiet (torch==\S+ torchvision==\S+)", makefile).group(1)
    assert ci_torch in runs, f"the image must install {ci_torch} as CI does"
    ci_extras = set(re.search(r"-e '\.\[([a-z,]+)\]'", makefile).group(1).split(","))
    image_extras = set(re.search(r"--constraint constraints.txt '\.\[([a-z,]+)\]'", runs).group(1).split(","))
    assert image_extras == ci_extras - {"test"}


def test_every_runtime_dependency_is_pinned() -> None:
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    direct = [*project["dependencies"], *(d for name in ("pipeline", "tracking", "s3", "detection", "server")
                                          for d in extras[name] if not d.startswith("prednas"))]
    names = {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower().replace("_", "-") for d in direct}
    unpinned = sorted(names - set(pins) - {"torch", "torchvision"})
    assert not unpinned, f"add to constraints.txt: {unpinned}"


def test_image_is_pinned_non_root_and_secret_free() -> None:
    steps = instructions()
    args = dict(a.split("=", 1) for kind, a in steps if kind == "ARG" and "=" in a)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-\w+", args["BASE_IMAGE"])
    users = [a for kind, a in steps if kind == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    for kind, a in steps:
        if kind in ("ENV", "ARG"):
            assert not re.search(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY", a, re.I), a


def test_components_run_the_image_of_this_version() -> None:
    from prednas.components import IMAGE

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert IMAGE.endswith(f":{version}")


def test_hadolint() -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def render(path: Path) -> list[dict[str, Any]]:
    """The objects of a kustomization: ``kubectl kustomize`` where installed, else our own reading of it."""
    if shutil.which("kubectl"):
        out = subprocess.run(["kubectl", "kustomize", str(path)], capture_output=True, text=True, check=True).stdout
        return [doc for doc in yaml.safe_load_all(out) if doc]
    return _render(path)


def _render(path: Path, namespace: str | None = None) -> list[dict[str, Any]]:
    """Resources, nested kustomizations and the namespace field: all the base uses."""
    kustomization = yaml.safe_load((path / "kustomization.yaml").read_text())
    namespace = kustomization.get("namespace", namespace)
    objects = []
    for resource in kustomization["resources"]:
        target = path / resource
        if target.is_dir():
            docs = _render(target, namespace)
        else:
            docs = [d for d in yaml.safe_load_all(target.read_text()) if d]
        for doc in docs:
            if namespace and doc["kind"] != "Namespace" and "namespace" not in doc["metadata"]:
                doc["metadata"]["namespace"] = namespace
            for subject in doc.get("subjects", []):
                subject.setdefault("namespace", doc["metadata"].get("namespace"))
        objects += docs
    return objects


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return render(BASE)


def test_our_reading_of_the_kustomization_matches_kubectl(objects: list[dict[str, Any]]) -> None:
    if not shutil.which("kubectl"):
        pytest.skip("kubectl is not installed: the other tests used the pure-Python rendering")
    ours = {(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in _render(BASE)}
    assert ours == {(o["kind"], o["metadata"]["name"], o["metadata"].get("namespace")) for o in objects}


def test_every_object_is_valid_kubernetes(objects: list[dict[str, Any]]) -> None:
    import kubernetes_validate

    kinds = {o["kind"] for o in objects}
    assert {"Deployment", "Service", "StatefulSet", "ServiceAccount", "Role", "RoleBinding", "ConfigMap",
            "NetworkPolicy", "Job", "Namespace"} <= kinds
    for obj in objects:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [(o["metadata"]["name"], o["spec"]["template"]["spec"]) for o in objects
            if o["kind"] in ("Deployment", "StatefulSet", "Job")]


def test_containers_are_locked_down(objects: list[dict[str, Any]]) -> None:
    for name, pod in pod_specs(objects):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod.get("automountServiceAccountToken") is False, name
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "limits" in container["resources"] and "requests" in container["resources"], name
            assert not re.search(r":latest$|^[^:]+$", container["image"]), f"{name}: unpinned image"


def test_credentials_come_only_from_secrets(objects: list[dict[str, Any]]) -> None:
    assert not [o for o in objects if o["kind"] == "Secret"], "secrets must be created by the operator, not shipped"
    for name, pod in pod_specs(objects):
        for container in pod["containers"]:
            for env in container.get("env", []):
                if re.search(r"PASSWORD|SECRET|ACCESS_KEY|TOKEN$|DB_USER", env["name"]):
                    assert "secretKeyRef" in env.get("valueFrom", {}), f"{name}: {env['name']} not from a Secret"
    text = json.dumps(objects)
    assert "prednas-test-secret" not in text and "AKIA" not in text


def test_mlflow_is_not_exposed_and_the_database_only_to_mlflow(objects: list[dict[str, Any]]) -> None:
    services = {o["metadata"]["name"]: o for o in objects if o["kind"] == "Service"}
    assert all(s["spec"]["type"] == "ClusterIP" for s in services.values())
    assert not [o for o in objects if o["kind"] in ("Ingress", "Route", "Gateway")]
    policy = next(o for o in objects if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "postgres")
    mlflow_pods = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mlflow"}}}
    assert policy["spec"]["ingress"][0]["from"] == [mlflow_pods]


def test_steps_rbac_is_minimal(objects: list[dict[str, Any]]) -> None:
    role = next(o for o in objects if o["kind"] == "Role" and o["metadata"]["name"] == "prednas-steps")
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert set(rule["verbs"]) <= {"get", "create", "patch"}
        if rule["resources"] in (["secrets"], ["configmaps"]):
            assert rule["verbs"] == ["get"] and rule["resourceNames"], "read named objects only"
    assert not [o for o in objects if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def test_recurring_run_example_matches_the_cli(objects: list[dict[str, Any]]) -> None:
    from prednas.pipeline.remote import check_cron

    job = next(o for o in objects if o["kind"] == "Job")
    assert job["spec"]["suspend"] is True
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    options = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
    assert args[0] == "schedule" and "--no-catchup" in args and options["max-concurrency"] == "1"
    assert check_cron(options["cron"]) == options["cron"]
    assert options["service-account"] in {o["metadata"]["name"] for o in objects if o["kind"] == "ServiceAccount"}


def test_every_source_folder_is_a_package_the_wheel_carries() -> None:
    """setup.py lists packages by their __init__.py: a folder without one would be missing from the image."""
    for folder in [ROOT / "prednas", ROOT / "components", ROOT / "pipelines"]:
        for sub in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
            if any(sub.glob("*.py")):
                assert (sub / "__init__.py").exists(), f"{sub.relative_to(ROOT)} has modules but no __init__.py"
