"""The whole DAG on kfp.local: each step a subprocess, end to end on NB201 (small N and K)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pipeline_checks import check_tracking, shared_tracking, small_spec, stored_trials

from prednas.errors import PredNASError
from prednas.pipeline.inprocess import run_inprocess
from prednas.pipeline.local import run_local

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> str:
    """One MLflow SQLite store for the module's runs (each in its own experiment)."""
    return shared_tracking(tmp_path_factory)


def test_prednas_run_executes_the_dag_and_tracks_everything(tmp_path: Path, tracking: str) -> None:
    from click.testing import CliRunner

    from prednas.cli import main

    spec = small_spec(tmp_path, tracking_uri=tracking)
    args = ["run", "--root", str(tmp_path / "runs"), "--json", str(tmp_path / "report.json"),
            "--tracking-uri", spec.tracking_uri, "--artifact-store", spec.store_uri, "--experiment", spec.experiment,
            *(arg for item in ["n=6", "k=4", "predictor.epochs=40", "predictor.cv_folds=2", "gradient.starts=10",
                               "gradient.steps=20"] for arg in ("--set", item))]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert "best architecture" in result.output and report["best"]["arch"]["arch"] in result.output
    assert "test accuracy" in result.output
    metrics = check_tracking(spec, report)
    assert metrics["queries"] == spec.n + spec.k
    trials = stored_trials(spec)
    assert len(trials) == spec.n + spec.k and set(trials.values()) == {1}

    same = run_inprocess(small_spec(tmp_path / "in-process", tracking_uri=tracking))  # same seed, fresh store
    assert [row["arch"] for row in same["table"]] == [row["arch"] for row in report["table"]]
    assert same["best"]["accuracy"] == report["best"]["accuracy"]


def test_failed_step_fails_the_run_and_the_exit_handler_closes_it(tmp_path: Path, tracking: str) -> None:
    from mlflow import MlflowClient

    spec = small_spec(tmp_path, "alphas=[0, 0.5]", "predictor.aux_target=latency_ms", tracking_uri=tracking)
    with pytest.raises(PredNASError, match="a latency predictor needs a positive 'latency_ms'") as info:
        run_local(spec, root=tmp_path / "runs", run_key="doomed-pipeline")
    assert "pipeline log:" in str(info.value) and "\n" not in str(info.value)
    client = MlflowClient(tracking)
    runs = client.search_runs([client.get_experiment_by_name(spec.experiment).experiment_id],
                              "tags.`prednas.run_key` = 'doomed-pipeline' and tags.`prednas.kind` = 'search'")
    assert [r.info.status for r in runs] == ["FAILED"]
    assert sum(stored_trials(spec).values()) == spec.n  # what was measured before the failure is kept
