"""The recurring-run Job schedules the user's config; the profile overlay; one store setting.

The base's ConfigMap ``prednas-search`` holds the search the Job schedules (mounted as
``--config``), ``prednas-s3``'s ``PREDNAS_STORE_URI`` is the store the Job passes and the one
``prednas submit`` fills in, and ``manifests/overlays/profile`` moves the pipeline side into
a profile namespace with the user's search and S3 settings, still meeting the policy.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_deploy import BASE, ROOT, render
from test_manifest_security import policy_problems

from prednas.pipeline.config import load_config

OVERLAY = ROOT / "manifests" / "overlays" / "profile"


def _find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)


def _scheduled_config(objects: list[dict[str, Any]], tmp_path: Path) -> Path:
    """The config file the Job's --config names, written from the ConfigMap mounted there."""
    pod = _find(objects, "Job", "prednas-schedule-nightly")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    config = next(a.split("=", 1)[1] for a in container["args"] if a.startswith("--config="))
    mount = next(m for m in container["volumeMounts"] if config.startswith(m["mountPath"] + "/"))
    volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
    data = _find(objects, "ConfigMap", volume["configMap"]["name"])["data"]
    path = tmp_path / "search.yaml"
    path.write_text(data[config[len(mount["mountPath"]) + 1:]])
    return path


def test_the_job_schedules_the_config_in_the_configmap(tmp_path: Path) -> None:
    objects = render(BASE)
    spec = load_config(_scheduled_config(objects, tmp_path))
    assert (spec.space, spec.n, spec.k) == ("nb201", 30, 40)
    args = _find(objects, "Job", "prednas-schedule-nightly")["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--replace" in args  # a new config replaces the schedule of the same name
    scheduled, default = spec.to_dict(), load_config().to_dict()
    assert {k: v for k, v in scheduled.items() if scheduled[k] != default[k]} == {"experiment": "prednas-nightly"}, \
        "the nightly search is the search prednas run runs"


def test_one_store_setting_for_the_job_and_submit() -> None:
    from prednas.pipelines.prednas_pipeline import CLUSTER_STORE_URI

    objects = render(BASE)
    store = _find(objects, "ConfigMap", "prednas-s3")["data"]["PREDNAS_STORE_URI"]
    container = _find(objects, "Job", "prednas-schedule-nightly")["spec"]["template"]["spec"]["containers"][0]
    assert "--artifact-store=$(PREDNAS_STORE_URI)" in container["args"]
    source = next(e for e in container["env"] if e["name"] == "PREDNAS_STORE_URI")["valueFrom"]["configMapKeyRef"]
    assert source == {"name": "prednas-s3", "key": "PREDNAS_STORE_URI"}
    assert store == CLUSTER_STORE_URI  # what a submitted run uses when its config names no store
    for o in objects:  # nothing reads a bucket name on its own any more
        assert "PREDNAS_BUCKET" not in yaml.safe_dump(o) or o["metadata"].get("namespace") == "prednas"


@pytest.fixture(scope="module")
def overlay() -> list[dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("rendering the overlay's patches needs kubectl (kubectl kustomize)")
    out = subprocess.run(["kubectl", "kustomize", str(OVERLAY)], capture_output=True, text=True, check=True).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def test_the_overlay_puts_the_pipeline_side_in_the_profile_namespace(overlay: list[dict[str, Any]]) -> None:
    namespace = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())["namespace"]
    assert {o["metadata"].get("namespace") for o in overlay} == {namespace}
    for binding in (o for o in overlay if o["kind"] == "RoleBinding"):
        assert {s.get("namespace", namespace) for s in binding["subjects"]} == {namespace}
    assert {(o["kind"], o["metadata"]["name"]) for o in overlay} >= {
        ("ServiceAccount", "prednas-steps"), ("ConfigMap", "prednas-s3"), ("ConfigMap", "prednas-search"),
        ("Job", "prednas-schedule-nightly")}
    assert policy_problems(overlay) == []


def test_the_overlay_schedules_its_own_search(overlay: list[dict[str, Any]], tmp_path: Path) -> None:
    spec = load_config(_scheduled_config(overlay, tmp_path))
    assert spec.evaluator["dataset"] == "imagenet16_120"
    assert _find(overlay, "ConfigMap", "prednas-s3")["data"]["AWS_DEFAULT_REGION"] == "us-east-1"  # merged
