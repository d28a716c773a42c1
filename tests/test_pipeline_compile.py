"""The compiled pipeline: committed YAML up to date, KFP round trip, fan-outs, retries, resources, thin steps."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path
from typing import Any

import pytest
import yaml

import prednas.components as components
from prednas.pipeline.config import load_config
from prednas.pipeline.remote import compile_package
from prednas.pipelines.prednas_pipeline import COMPILED, threads

STEPS = [components.sample, components.evaluate, components.fit_predictors, components.propose,
         components.select, components.select_final, components.close_run]


def load(path: Path) -> dict[str, Any]:
    """The pipeline spec with the platform spec (the package's second YAML document) merged in."""
    spec, *platform = yaml.safe_load_all(path.read_text())
    for doc in platform:
        spec.update(doc)
    return spec


@pytest.fixture(scope="module")
def compiled_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default config compiled now."""
    return compile_package(load_config(), tmp_path_factory.mktemp("kfp") / "pipeline.yaml")


@pytest.fixture(scope="module")
def compiled(compiled_path: Path) -> dict[str, Any]:
    """The default config compiled now, parsed."""
    return load(compiled_path)


def test_committed_yaml_is_the_current_pipeline(compiled: dict[str, Any]) -> None:
    committed = load(COMPILED)
    assert committed == compiled, "pipelines/prednas_pipeline.yaml is stale: run `prednas compile -o " \
                                  "pipelines/prednas_pipeline.yaml` and review the diff"


def test_compiling_again_writes_the_same_bytes(compiled_path: Path, tmp_path: Path) -> None:
    """Comment header included (the compiler prints dict defaults in a per-process map order)."""
    again = compile_package(load_config(), tmp_path / "again.yaml")
    assert again.read_bytes() == compiled_path.read_bytes()
    assert COMPILED.read_bytes() == compiled_path.read_bytes(), "run `prednas compile -o " \
                                                               "pipelines/prednas_pipeline.yaml`"


def test_kfp_round_trip(tmp_path: Path, compiled: dict[str, Any]) -> None:
    from kfp import compiler
    from kfp import components as kfp_components

    loaded = kfp_components.load_component_from_file(str(COMPILED))
    compiler.Compiler().compile(loaded, str(tmp_path / "again.yaml"))
    again = load(tmp_path / "again.yaml")
    assert again["root"] == compiled["root"] and again["deploymentSpec"] == compiled["deploymentSpec"]
    assert again["components"] == compiled["components"]


def _tasks(compiled: dict[str, Any]) -> dict[str, Any]:
    """Every task of every DAG, by DAG and task name."""
    dags = {"root": compiled["root"], **compiled["components"]}
    return {f"{dag}/{name}": task for dag, spec in dags.items()
            for name, task in spec.get("dag", {}).get("tasks", {}).items()}


def test_rounds_unrolled_into_fan_outs_inside_an_exit_handler(compiled: dict[str, Any]) -> None:
    """Sample, 4 rounds and the final stage each fan out; each round's fit takes the previous round's results."""
    tasks = _tasks(compiled)
    loops = {name: t for name, t in tasks.items() if "parameterIterator" in t}
    assert len(loops) == 6 and all(t["iteratorPolicy"]["parallelismLimit"] == 2 for t in loops.values())
    exit_task = tasks["root/close-run"]
    assert exit_task["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"
    fits = sorted((t for t in tasks.values() if t["componentRef"]["name"].startswith("comp-fit-predictors")),
                  key=lambda t: t["taskInfo"]["name"])
    assert [t["taskInfo"]["name"] for t in fits] == [f"fit predictors (round {r}/4)" for r in range(1, 5)]
    assert fits[0]["inputs"]["artifacts"]["state"]["taskOutputArtifact"]["producerTask"] == "sample"
    for r, fit in enumerate(fits[1:], 1):
        producer = fit["inputs"]["artifacts"]["state"]["taskOutputArtifact"]["producerTask"]
        assert producer == ("propose" if r == 1 else f"propose-{r}")
    proposes = [t for t in tasks.values() if t["componentRef"]["name"].startswith("comp-propose")]
    assert len(proposes) == 4 and all(t["inputs"]["parameters"]["rounds"]["runtimeValue"]["constant"] == 4
                                      for t in proposes)


def test_rounds_are_a_compile_time_setting(tmp_path: Path) -> None:
    data = load(compile_package(load_config(None, ["rounds=2"]), tmp_path / "p.yaml"))
    names = {t["taskInfo"]["name"] for t in _tasks(data).values()}
    assert {"fit predictors (round 1/2)", "propose (round 2/2)", "evaluate round 2 shard"} <= names
    assert not any("round 3" in name for name in names)


def test_retries_resources_and_accelerator(compiled: dict[str, Any]) -> None:
    tasks = _tasks(compiled)
    evaluates = [t for t in tasks.values() if t["componentRef"]["name"].startswith("comp-evaluate")]
    assert len(evaluates) == 6
    assert all(t["retryPolicy"]["maxRetryCount"] == 2 for t in evaluates)
    for name, executor in compiled["deploymentSpec"]["executors"].items():
        resources = executor["container"]["resources"]
        assert resources["resourceCpuRequest"] == "1" and resources["resourceMemoryRequest"] == "2Gi", name
        assert {"name": "OMP_NUM_THREADS", "value": "1"} in executor["container"]["env"]
    for name in ("exec-evaluate", "exec-evaluate-2", "exec-evaluate-6"):
        accelerator = compiled["deploymentSpec"]["executors"][name]["container"]["resources"]["accelerator"]
        assert "pipelinechannel--accelerator" in accelerator["resourceType"]
        assert "pipelinechannel--accelerator_count" in accelerator["resourceCount"]


def test_no_caching_no_secret_values_and_non_root(compiled: dict[str, Any]) -> None:
    assert all(t.get("cachingOptions", {}) == {} for t in _tasks(compiled).values())
    text = COMPILED.read_text()
    assert "pip install" not in text and "secretAccessKey" not in text
    k8s = compiled["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for executor in k8s.values():
        assert executor["secretAsEnv"][0]["secretName"] == "prednas-s3" and executor["secretAsEnv"][0]["optional"]
        assert executor["securityContext"]["runAsNonRoot"] is True


def test_one_image_for_every_step(compiled: dict[str, Any]) -> None:
    images = {e["container"]["image"] for e in compiled["deploymentSpec"]["executors"].values()}
    assert images == {components.IMAGE}


@pytest.mark.parametrize("step", STEPS, ids=lambda s: s.name)
def test_components_are_thin(step: Any) -> None:
    """A dozen lines: imports, one prednas call, writing outputs; no packages installed at run time."""
    source = inspect.getsource(step.python_func)
    function = ast.parse(source).body[0]
    body = [node for node in function.body if not isinstance(node, ast.Expr | ast.Import | ast.ImportFrom)]
    lines = sum(node.end_lineno - node.lineno + 1 for node in body)
    assert lines <= 12, f"{step.name} has {lines} lines of logic"
    command = " ".join(step.component_spec.implementation.container.command)
    assert "pip install" not in command


def test_compile_options_reach_the_yaml(tmp_path: Path) -> None:
    spec = load_config(None, ["parallelism=5", "retries=4", "resources={cpu: 2500m, memory: 6Gi}", "n=11"])
    data = load(compile_package(spec, tmp_path / "p.yaml"))
    tasks = _tasks(data)
    assert {t["iteratorPolicy"]["parallelismLimit"] for t in tasks.values() if "iteratorPolicy" in t} == {5}
    assert {t["retryPolicy"]["maxRetryCount"] for t in tasks.values() if "retryPolicy" in t} == {4}
    assert data["root"]["inputDefinitions"]["parameters"]["n"]["defaultValue"] == 11
    assert {"name": "OMP_NUM_THREADS", "value": "2"} in data["deploymentSpec"]["executors"]["exec-select"][
        "container"]["env"]


@pytest.mark.parametrize(("cpu", "expected"), [("500m", 1), ("1", 1), ("2", 2), ("2.5", 2), ("4000m", 4)])
def test_threads_follow_the_cpu_request(cpu: str, expected: int) -> None:
    assert threads(cpu) == expected


def test_image_and_data_volume_reach_the_yaml(tmp_path: Path) -> None:
    from prednas.pipeline.remote import StepOptions

    options = StepOptions(image="registry.example/prednas:dev", data_pvc="cifar10-data", data_mount="/mnt/data")
    data = load(compile_package(load_config(), tmp_path / "p.yaml", options))
    assert {e["container"]["image"] for e in data["deploymentSpec"]["executors"].values()} == {options.image}
    k8s = data["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    mounts = {name: executor.get("pvcMount") for name, executor in k8s.items()}
    # every step that builds the sample stage's space (sized by its data's classes) sees the data
    assert {name for name, mount in mounts.items() if mount} == {n for n in mounts if not n.startswith("exec-close")}
    assert any(n.startswith("exec-sample") for n in mounts) and any(n.startswith("exec-propose") for n in mounts)
    for mount in filter(None, mounts.values()):
        assert [(m["mountPath"], m["pvcNameParameter"]["runtimeValue"]["constant"]) for m in mount] == [
            ("/mnt/data", "cifar10-data")]


def test_no_data_volume_unless_asked(compiled: dict[str, Any]) -> None:
    k8s = compiled["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert not any("pvcMount" in executor for executor in k8s.values())


def test_every_step_reads_the_clusters_store(compiled: dict[str, Any]) -> None:
    """A run that names no store uses PREDNAS_STORE_URI of the ConfigMap prednas-s3 (mapped into every pod)."""
    assert compiled["root"]["inputDefinitions"]["parameters"]["store_uri"]["defaultValue"] == ""
    for executor in compiled["platforms"]["kubernetes"]["deploymentSpec"]["executors"].values():
        mapped = {(c["configMapName"], k["configMapKey"], k["envVar"]) for c in executor["configMapAsEnv"]
                  for k in c["keyToEnv"]}
        assert ("prednas-s3", "PREDNAS_STORE_URI", "PREDNAS_STORE_URI") in mapped


@pytest.mark.parametrize(("option", "value"), [("--image", "bad image"), ("--data-pvc", "Data_PVC"),
                                               ("--data-mount", "data")])
def test_bad_step_options_are_one_line(tmp_path: Path, option: str, value: str) -> None:
    from click.testing import CliRunner

    from prednas.cli import main

    args = ["compile", "-o", str(tmp_path / "p.yaml"), option, value]
    if option == "--data-mount":
        args += ["--data-pvc", "data"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and result.output.count("\n") == 1 and option in result.output, result.output
    assert not (tmp_path / "p.yaml").exists()


def test_cli_compile_takes_the_image_and_data_volume(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from prednas.cli import main

    out = tmp_path / "p.yaml"
    result = CliRunner().invoke(main, ["compile", "-o", str(out), "--image", "registry.example/prednas:dev",
                                       "--data-pvc", "cifar10-data", "--set", "n=12"])
    assert result.exit_code == 0, result.output
    data = load(out)
    assert {e["container"]["image"] for e in data["deploymentSpec"]["executors"].values()} == {
        "registry.example/prednas:dev"}
    assert data["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-evaluate"]["pvcMount"][0][
        "mountPath"] == "/data"
    assert data["root"]["inputDefinitions"]["parameters"]["n"]["defaultValue"] == 12
