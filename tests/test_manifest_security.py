"""The cluster's security policy as one checker, proven on the shipped manifests and on broken copies.

``policy_problems`` states the whole policy for ``manifests/`` (rendered as in
``tests/test_deploy.py``): credentials reach containers only through Secrets (connection
strings with credentials are assembled from Secret-sourced variables); pods run as
non-root with the RuntimeDefault seccomp profile, no host namespaces, host paths or
privileged containers; containers drop every capability, cannot escalate and have a
read-only root filesystem; no Secret, Ingress, NodePort, LoadBalancer or external IP is
shipped; the steps' ServiceAccount gets a namespaced Role of named objects, with no
wildcards and no cluster-wide binding; the MLflow namespace enforces the restricted Pod
Security Standard. Each rule is then shown to fire: a copy of the manifests with one
violation injected must be reported. The compiled pipeline's step containers get the
checks that KFP lets a pipeline set (non-root, S3 keys from the Secret, no literal
credentials); KFP's backend adds the rest (capabilities dropped, no privilege escalation,
RuntimeDefault seccomp), and a step's root filesystem stays writable because KFP's launcher
writes into the container.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_deploy import BASE, render

ROOT = Path(__file__).parents[1]
STEPS_SA = "prednas-steps"
CREDENTIAL_NAME = re.compile(r"(?i)(PASSWORD|PASSWD|SECRET|ACCESS_KEY(_ID)?|TOKEN|CREDENTIALS?|API_KEY)$")
USERINFO = re.compile(r"://([^:/@\s]+):([^@/\s]+)@")
WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet", "Pod", "CronJob")
EXPOSING = ("Ingress", "Route", "Gateway", "HTTPRoute", "VirtualService", "IngressRoute")


def pod_specs(objects: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every workload (a CronJob's job template included)."""
    out = []
    for o in objects:
        spec = o.get("spec", {})
        if o["kind"] == "Pod":
            out.append((o["metadata"]["name"], spec))
        elif o["kind"] == "CronJob":
            out.append((o["metadata"]["name"], spec["jobTemplate"]["spec"]["template"]["spec"]))
        elif o["kind"] in WORKLOADS:
            out.append((o["metadata"]["name"], spec["template"]["spec"]))
    return out


def _env_problems(name: str, container: dict[str, Any]) -> list[str]:
    problems, from_secret = [], set()
    for env in container.get("env", []):
        if "secretKeyRef" in env.get("valueFrom", {}):
            from_secret.add(env["name"])
    for env in container.get("env", []):
        value = env.get("value")
        if value is None:
            continue
        if CREDENTIAL_NAME.search(env["name"]):
            problems.append(f"{name}: env {env['name']} has a literal value; expected valueFrom.secretKeyRef")
        for part in USERINFO.findall(str(value)):
            refs = [re.fullmatch(r"\$\((\w+)\)", p) for p in part]
            if not all(ref and ref.group(1) in from_secret for ref in refs):
                problems.append(f"{name}: env {env['name']} embeds credentials not taken from a Secret")
    return problems


def _container_problems(name: str, pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    where = f"{name}/{container['name']}"
    context = container.get("securityContext", {})
    pod_context = pod.get("securityContext", {})
    problems = _env_problems(where, container)
    if context.get("runAsNonRoot", pod_context.get("runAsNonRoot")) is not True:
        problems.append(f"{where}: runAsNonRoot is not true")
    if context.get("runAsUser", pod_context.get("runAsUser")) == 0:
        problems.append(f"{where}: runs as uid 0")
    if context.get("privileged"):
        problems.append(f"{where}: privileged")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation is not false")
    if context.get("readOnlyRootFilesystem") is not True:
        problems.append(f"{where}: root filesystem is writable")
    capabilities = context.get("capabilities", {})
    if "ALL" not in capabilities.get("drop", []) or capabilities.get("add"):
        problems.append(f"{where}: capabilities are not all dropped")
    seccomp = context.get("seccompProfile", pod_context.get("seccompProfile", {}))
    if seccomp.get("type") != "RuntimeDefault":
        problems.append(f"{where}: seccomp profile is not RuntimeDefault")
    return problems


def _pod_problems(name: str, pod: dict[str, Any]) -> list[str]:
    problems = [f"{name}: shares the host's {key[4:]} namespace" for key in ("hostNetwork", "hostPID", "hostIPC")
                if pod.get(key)]
    problems += [f"{name}: mounts host path {v['hostPath'].get('path')}" for v in pod.get("volumes", [])
                 if "hostPath" in v]
    for container in [*pod.get("initContainers", []), *pod.get("containers", [])]:
        problems += _container_problems(name, pod, container)
    return problems


def _rbac_problems(objects: list[dict[str, Any]]) -> list[str]:
    problems = []
    bound = {(b["roleRef"]["kind"], b["roleRef"]["name"]) for b in objects if b["kind"] == "RoleBinding"
             and any(s.get("kind") == "ServiceAccount" and s.get("name") == STEPS_SA for s in b.get("subjects", []))}
    for b in objects:
        if b["kind"] == "ClusterRoleBinding":
            problems.append(f"ClusterRoleBinding {b['metadata']['name']}: cluster-wide rights; bind Roles instead")
        elif b["kind"] == "RoleBinding" and ("ClusterRole", b["roleRef"]["name"]) in bound:
            problems.append(f"RoleBinding {b['metadata']['name']}: the steps get a ClusterRole's rights")
    if not any(o["kind"] == "ServiceAccount" and o["metadata"]["name"] == STEPS_SA for o in objects):
        problems.append(f"no ServiceAccount {STEPS_SA} for the steps")
    for role in objects:
        if role["kind"] not in ("Role", "ClusterRole") or (role["kind"], role["metadata"]["name"]) not in bound:
            continue
        for rule in role.get("rules", []):
            where = f"{role['kind']} {role['metadata']['name']} rule {rule.get('resources')}"
            if "*" in [*rule.get("verbs", []), *rule.get("resources", []), *rule.get("apiGroups", [])]:
                problems.append(f"{where}: wildcard")
            if not set(rule.get("verbs", [])) <= {"get", "create", "patch"}:
                problems.append(f"{where}: verbs {rule.get('verbs')} beyond get/create/patch")
            if {"secrets", "configmaps"} & set(rule.get("resources", [])) and not rule.get("resourceNames"):
                problems.append(f"{where}: reads every object of the kind; name the ones it needs")
            if any("/" in r for r in rule.get("resources", [])):
                problems.append(f"{where}: subresource access ({rule['resources']})")
    return problems


def policy_problems(objects: list[dict[str, Any]]) -> list[str]:
    """Every violation of the cluster policy in a list of Kubernetes objects (empty when it holds)."""
    problems = []
    for name, pod in pod_specs(objects):
        problems += _pod_problems(name, pod)
    for o in objects:
        kind, name = o["kind"], o["metadata"]["name"]
        if kind == "Secret" and (o.get("data") or o.get("stringData")):
            problems.append(f"Secret {name} ships values; operators create Secrets")
        if kind in EXPOSING:
            problems.append(f"{kind} {name} exposes a service outside the cluster")
        if kind == "Service" and (o["spec"].get("type", "ClusterIP") != "ClusterIP" or o["spec"].get("externalIPs")):
            problems.append(f"Service {name} is {o['spec'].get('type')}; expected ClusterIP without external IPs")
        if kind == "ConfigMap":
            problems += [f"ConfigMap {name}: key {k} looks like a credential" for k in o.get("data", {})
                         if CREDENTIAL_NAME.search(k)]
        if kind == "Namespace" and o["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") \
                != "restricted":
            problems.append(f"Namespace {name} does not enforce the restricted Pod Security Standard")
    return problems + _rbac_problems(objects)


@pytest.fixture(scope="module")
def objects() -> list[dict[str, Any]]:
    return render(BASE)


def test_the_manifests_meet_the_policy(objects: list[dict[str, Any]]) -> None:
    names = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert {("Service", "mlflow"), ("Deployment", "mlflow"), ("ServiceAccount", STEPS_SA)} <= names
    assert policy_problems(objects) == []


def _find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def _mlflow(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return _find(objects, "Deployment", "mlflow")["spec"]["template"]["spec"]


def _env(objects: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(e for e in _mlflow(objects)["containers"][0]["env"] if e["name"] == name)


def _steps_role(objects: list[dict[str, Any]]) -> dict[str, Any]:
    return _find(objects, "Role", STEPS_SA)


def _literal_secret(objects: list[dict[str, Any]]) -> None:
    env = _env(objects, "AWS_SECRET_ACCESS_KEY")
    env.pop("valueFrom")
    env["value"] = "s3cr3t"


VIOLATIONS: dict[str, tuple[Callable[[list[dict[str, Any]]], Any], str]] = {
    "literal secret in env": (_literal_secret, "literal value"),
    "password in a connection string": (lambda o: _env(o, "MLFLOW_BACKEND_STORE_URI").update(
        value="postgresql://mlflow:hunter2@postgres:5432/mlflow"), "embeds credentials"),
    "shipped Secret": (lambda o: o.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "prednas-s3"},
                                           "stringData": {"AWS_SECRET_ACCESS_KEY": "x"}}), "ships values"),
    "credential in a ConfigMap": (lambda o: _find(o, "ConfigMap", "prednas-s3")["data"].update(
        AWS_SECRET_ACCESS_KEY="x"), "looks like a credential"),
    "root user": (lambda o: _mlflow(o)["securityContext"].update(runAsUser=0), "uid 0"),
    "runAsNonRoot dropped": (lambda o: _mlflow(o)["securityContext"].pop("runAsNonRoot"), "runAsNonRoot"),
    "privileged": (lambda o: _mlflow(o)["containers"][0]["securityContext"].update(privileged=True), "privileged"),
    "writable root": (lambda o: _mlflow(o)["containers"][0]["securityContext"].pop("readOnlyRootFilesystem"),
                      "writable"),
    "capability added": (lambda o: _mlflow(o)["containers"][0]["securityContext"]["capabilities"].update(
        add=["NET_ADMIN"]), "capabilities"),
    "escalation allowed": (lambda o: _mlflow(o)["containers"][0]["securityContext"].update(
        allowPrivilegeEscalation=True), "allowPrivilegeEscalation"),
    "host network": (lambda o: _mlflow(o).update(hostNetwork=True), "host's Network"),
    "host path": (lambda o: _mlflow(o)["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "host path"),
    "NodePort": (lambda o: _find(o, "Service", "mlflow")["spec"].update(type="NodePort"), "NodePort"),
    "LoadBalancer": (lambda o: _find(o, "Service", "mlflow")["spec"].update(type="LoadBalancer"), "LoadBalancer"),
    "Ingress": (lambda o: o.append({"kind": "Ingress", "metadata": {"name": "mlflow"}, "spec": {}}), "Ingress"),
    "wildcard verbs": (lambda o: _steps_role(o)["rules"][0].update(verbs=["*"]), "wildcard"),
    "list every secret": (lambda o: _steps_role(o)["rules"].append(
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}), "name the ones"),
    "delete pods": (lambda o: _steps_role(o)["rules"].append(
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["delete"]}), "beyond get"),
    "pods/exec": (lambda o: _steps_role(o)["rules"].append(
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}), "subresource"),
    "cluster-wide binding": (lambda o: o.append({"kind": "ClusterRoleBinding", "metadata": {"name": "steps-admin"},
                                                 "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"},
                                                 "subjects": [{"kind": "ServiceAccount", "name": STEPS_SA}]}),
                             "cluster-wide"),
    "Pod Security relaxed": (lambda o: _find(o, "Namespace", "prednas")["metadata"]["labels"].update(
        {"pod-security.kubernetes.io/enforce": "privileged"}), "restricted"),
}


@pytest.mark.parametrize("violation", list(VIOLATIONS))
def test_each_rule_fires_on_a_violation(objects: list[dict[str, Any]], violation: str) -> None:
    broken = copy.deepcopy(objects)
    inject, message = VIOLATIONS[violation]
    inject(broken)
    problems = policy_problems(broken)
    assert any(message in p for p in problems), problems


# -- the compiled pipeline's step containers -------------------------------------------------
def test_pipeline_steps_run_as_non_root_with_keys_from_the_secret() -> None:
    documents = list(yaml.safe_load_all((ROOT / "pipelines" / "prednas_pipeline.yaml").read_text()))
    executors = next(d for d in documents if "deploymentSpec" in d)["deploymentSpec"]["executors"]
    platform = next(d for d in documents if "platforms" in d)["platforms"]["kubernetes"]["deploymentSpec"]
    assert set(platform["executors"]) == set(executors)
    for name, executor in platform["executors"].items():
        assert executor["securityContext"]["runAsNonRoot"] is True, name
        keys = {k["envVar"] for s in executor["secretAsEnv"] for k in s["keyToEnv"]}
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= keys, name
    for name, executor in executors.items():
        literal = [e["name"] for e in executor["container"].get("env", []) if CREDENTIAL_NAME.search(e["name"])]
        assert literal == [], f"{name}: literal credential env {literal}"
