"""Submitting and scheduling through kfp.Client (a recording stand-in for the KFP API server)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest
import yaml

from prednas.pipeline import remote
from prednas.pipeline.config import load_config
from prednas.pipelines.prednas_pipeline import CLUSTER_STORE_URI, CLUSTER_TRACKING_URI


class FakeClient:
    """Records what prednas asks of Kubeflow Pipelines and checks the package it uploads."""

    instances: ClassVar[list[FakeClient]] = []
    existing: ClassVar[dict[str, str]] = {}

    def __init__(self, host: str, namespace: str, existing_token: str | None) -> None:
        self.host, self.namespace, self.calls = host, namespace, []
        FakeClient.instances.append(self)

    def _package(self, path: str) -> dict[str, Any]:
        spec = next(yaml.safe_load_all(Path(path).read_text()))
        assert spec["pipelineInfo"]["name"] == "prednas"
        return spec

    def create_run_from_pipeline_package(self, pipeline_file: str, **kwargs: Any) -> Any:
        self._package(pipeline_file)
        self.calls.append(("run", kwargs))
        return SimpleNamespace(run_id="run-123")

    def get_run(self, run_id: str) -> Any:
        return SimpleNamespace(run_id=run_id)

    def create_experiment(self, name: str, namespace: str | None = None) -> Any:
        return SimpleNamespace(experiment_id=f"exp-{name}")

    def list_recurring_runs(self, experiment_id: str, filter: str, page_size: int) -> Any:
        runs = [SimpleNamespace(recurring_run_id=rid) for name, rid in self.existing.items() if name in filter]
        return SimpleNamespace(recurring_runs=runs or None)

    def create_recurring_run(self, pipeline_package_path: str, **kwargs: Any) -> Any:
        self._package(pipeline_package_path)
        self.calls.append(("recurring", kwargs))
        return SimpleNamespace(recurring_run_id="rr-456")

    def get_recurring_run(self, recurring_run_id: str) -> Any:
        return SimpleNamespace(recurring_run_id=recurring_run_id)


@pytest.fixture
def kfp_api(monkeypatch: pytest.MonkeyPatch) -> type[FakeClient]:
    import kfp

    FakeClient.instances, FakeClient.existing = [], {}
    monkeypatch.setattr(kfp, "Client", FakeClient)
    monkeypatch.setattr(remote, "probe", lambda *args, **kwargs: None)
    return FakeClient


def test_submit_sends_every_parameter_with_the_cluster_defaults(kfp_api: type[FakeClient]) -> None:
    spec = load_config(None, ["n=20", "experiment=nightly"])
    result = remote.submit(spec, host="http://kfp.example:8080", experiment="nightly", service_account="prednas-steps")
    assert result == {"run_id": "run-123", "url": "http://kfp.example:8080/#/runs/details/run-123"}
    (kind, call), = kfp_api.instances[0].calls
    arguments = call["arguments"]
    assert kind == "run" and arguments["n"] == 20 and arguments["experiment"] == "nightly"
    assert (arguments["tracking_uri"], arguments["store_uri"]) == (CLUSTER_TRACKING_URI, "")  # the steps' store
    assert call["service_account"] == "prednas-steps" and call["enable_caching"] is False


def test_schedule_defaults_to_one_run_at_a_time_and_no_catch_up(kfp_api: type[FakeClient]) -> None:
    spec = load_config()
    result = remote.schedule(spec, host="http://kfp.example:8080", cron="0 0 3 * * *", experiment="prednas",
                             job_name="nightly")
    assert result["recurring_run_id"] == "rr-456" and result["status"] == "created"
    (kind, call), = kfp_api.instances[0].calls
    assert kind == "recurring" and call["cron_expression"] == "0 0 3 * * *"
    assert call["max_concurrency"] == 1 and call["no_catchup"] is True and call["job_name"] == "nightly"


def test_scheduling_twice_keeps_one_recurring_run(kfp_api: type[FakeClient]) -> None:
    kfp_api.existing = {"nightly": "rr-existing"}
    result = remote.schedule(load_config(), host="http://kfp.example:8080", cron="0 0 3 * * *",
                             experiment="prednas", job_name="nightly")
    assert result["recurring_run_id"] == "rr-existing" and result["status"] == "exists"
    assert kfp_api.instances[0].calls == []


def test_cli_schedule_reports_the_recurring_run(kfp_api: type[FakeClient]) -> None:
    from click.testing import CliRunner

    from prednas.cli import main

    result = CliRunner().invoke(main, ["schedule", "--host", "http://kfp.example:8080", "--cron", "0 30 2 * * 1-5",
                                       "--max-concurrency", "2", "--catchup", "--set", "k=25"])
    assert result.exit_code == 0, result.output
    assert "recurring run prednas-nb201 (rr-456) created" in result.output
    (_, call), = kfp_api.instances[0].calls
    assert call["max_concurrency"] == 2 and call["no_catchup"] is False and call["params"]["k"] == 25


def test_a_run_without_a_store_uses_the_clusters(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sample step fills an empty store_uri from PREDNAS_STORE_URI (the ConfigMap prednas-s3)."""
    from prednas.errors import PredNASError
    from prednas.pipeline.steps import STORE_ENV, cluster_store

    spec = load_config(None, ['store_uri=""'])
    monkeypatch.setenv(STORE_ENV, CLUSTER_STORE_URI)
    assert cluster_store(spec).store_uri == CLUSTER_STORE_URI
    assert cluster_store(load_config(None, ["store_uri=s3://mine/x"])).store_uri == "s3://mine/x"
    monkeypatch.delenv(STORE_ENV)
    with pytest.raises(PredNASError, match="store_uri is empty and PREDNAS_STORE_URI is not set"):
        cluster_store(spec)


def test_submit_compiles_with_the_step_options(kfp_api: type[FakeClient], monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []

    def compile_package(spec: Any, path: Path, options: remote.StepOptions, check: bool = True) -> Path:
        seen.append(options)
        path.write_text("pipelineInfo: {name: prednas}\n")
        return path

    monkeypatch.setattr(remote, "compile_package", compile_package)
    options = remote.StepOptions(image="registry.example/prednas:dev", data_pvc="cifar10-data")
    remote.submit(load_config(), host="http://kfp.example:8080", experiment="prednas", options=options)
    remote.schedule(load_config(), host="http://kfp.example:8080", cron="0 0 3 * * *", experiment="prednas",
                    job_name="nightly", options=options)
    assert seen == [options, options]
