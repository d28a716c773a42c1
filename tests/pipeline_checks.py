"""Helpers shared by the pipeline tests: a small NB201 search and what MLflow must hold after it."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from prednas.pipeline.config import SearchSpec, load_config

SMALL = ["n=6", "k=4", "shards=2", "predictor.epochs=40", "predictor.cv_folds=2", "gradient.starts=10",
         "gradient.steps=20"]


def small_spec(root: Path, *overrides: str, tracking_uri: str | None = None,
               store_uri: str | None = None) -> SearchSpec:
    """A quick NB201/CIFAR-100 search in its own experiment, writing under ``root`` (or to the given servers).

    Tests share one tracking database per module (creating an MLflow SQLite schema takes seconds).
    """
    tracking = tracking_uri or f"sqlite:///{root / 'mlflow.db'}"
    store = store_uri or str(root / "store")
    return load_config(None, [*SMALL, f"tracking_uri={tracking}", f"store_uri={store}",
                              f"experiment=test-{uuid.uuid4().hex[:8]}", *overrides])


def shared_tracking(factory: Any) -> str:
    """A SQLite tracking URI with the schema already created (for a module-scoped fixture)."""
    from prednas.tracking import Tracker

    uri = f"sqlite:///{factory.mktemp('mlflow') / 'mlflow.db'}"
    Tracker(uri, "warm-up")
    return uri


def stored_trials(spec: SearchSpec) -> Counter[str]:
    """Trials per architecture id in the spec's store (every evaluator call leaves exactly one)."""
    from prednas.pipeline.context import stage
    from prednas.store import open_store

    hashes = {stage(spec, s).hash for s in ("sample", "top-k")}
    return Counter(t.arch_id for h in hashes for t in open_store(spec.store_uri).list(spec.space, h))


def check_tracking(spec: SearchSpec, report: dict[str, Any], *, status: str = "FINISHED") -> dict[str, Any]:
    """The parent run, one child per evaluated architecture, the predictor version with its alias,
    the final metrics and plots; returns the parent's metrics."""
    from mlflow import MlflowClient

    client = MlflowClient(spec.tracking_uri, registry_uri=spec.tracking_uri)
    parent = client.get_run(report["parent_run_id"])
    assert parent.info.status == status
    assert parent.data.tags["prednas.kind"] == "search"
    children = client.search_runs([parent.info.experiment_id],
                                  f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'", max_results=1000)
    stages = Counter(c.data.tags["prednas.stage"] for c in children)
    assert stages == {"sample": spec.n, "top-k": spec.k}, stages
    assert all(c.info.status == "FINISHED" and "accuracy" in c.data.metrics and "flops" in c.data.metrics
               for c in children)
    version = report["predictor_versions"]["accuracy"]
    model = client.get_model_version("prednas-nb201-accuracy", version)
    assert model.run_id == parent.info.run_id and "prednas.training_hash" in model.tags
    if report["champion"]:
        assert str(client.get_model_version_by_alias("prednas-nb201-accuracy", "champion").version) == version
    for name in ("best_accuracy", "best_test_accuracy", "best_flops", "queries", "wall_time_s"):
        assert name in parent.data.metrics, name
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert plots == {"plots/search_trajectory.png", "plots/accuracy_vs_cost.png", "plots/predicted_vs_measured.png"}
    assert any(a.path == "final/report.json" for a in client.list_artifacts(parent.info.run_id, "final"))
    return parent.data.metrics
