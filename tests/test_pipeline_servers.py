"""The pipeline on kfp.local against real servers: MLflow (PostgreSQL store, S3 artifacts) and SeaweedFS S3."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_checks import check_tracking, small_spec, stored_trials

from prednas.pipeline.local import run_local

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_two_runs_on_real_servers_measure_nothing_twice(tmp_path: Path, mlflow_server, s3_env,
                                                        s3_prefix: str) -> None:
    spec = small_spec(tmp_path, tracking_uri=mlflow_server.tracking_uri, store_uri=s3_env.uri(s3_prefix))
    first = run_local(spec, root=tmp_path / "runs").report
    check_tracking(spec, first)
    triplets = [k for k in s3_env.keys(f"{s3_prefix}/triplets/") if k.endswith(".json")]
    assert len(triplets) == spec.n + spec.k
    artifacts = s3_env.keys("mlflow/")  # the tracking server's artifact destination
    assert any(first["parent_run_id"] in k and k.endswith("plots/search_trajectory.png") for k in artifacts)
    assert any(k.endswith("state.pt") for k in artifacts), "the registered predictor's weights are not in S3"

    second = run_local(spec, root=tmp_path / "runs").report  # a new run on the same store (e.g. a schedule)
    check_tracking(spec, second)
    trials = stored_trials(spec)
    assert len(trials) == 2 * (spec.n + spec.k) and set(trials.values()) == {1}, "an architecture was measured twice"
    assert second["metrics"]["queries"] == spec.n + spec.k
    assert second["metrics"]["warm_start"] == spec.n + spec.k  # the second fit learned from the first run
    assert second["best"]["accuracy"] >= first["best"]["accuracy"]
