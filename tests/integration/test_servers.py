"""Store and tracking against real servers: SeaweedFS S3 and MLflow (PostgreSQL store, S3 artifacts)."""

from __future__ import annotations

import numpy as np
import pytest

from prednas.errors import PredNASError
from prednas.evaluators.base import Evaluation
from prednas.predictors.fit import FitConfig, Predictor, fit_predictor
from prednas.spaces import get_space
from prednas.store import Triplet, open_store, training_hash
from prednas.tracking import Tracker, model_name, plots

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SPACE = get_space("nb201")
CONFIG = {"evaluator": "nb201-table", "dataset": "cifar10", "signal": "valid"}


def measured(n: int, seed: int = 0, stage: str = "sample") -> list[Triplet]:
    """``n`` distinct NB201 triplets with made-up numbers."""
    rng = np.random.default_rng(seed)
    archs = list({str(a): a for a in (SPACE.sample(rng) for _ in range(4 * n))}.values())[:n]
    return [Triplet.create(SPACE, a, CONFIG, Evaluation(70.0 + i, SPACE.cost(a), {"test_accuracy": 69.0 + i}),
                           stage=stage) for i, a in enumerate(archs)]


def test_triplets_land_in_the_bucket(s3_env, s3_prefix: str) -> None:
    store = open_store(s3_env.uri(s3_prefix))
    batch = measured(4)
    keys = [store.put(t) for t in batch]
    assert s3_env.keys(f"{s3_prefix}/triplets/") == sorted(f"{s3_prefix}/{k}" for k in keys)
    assert open_store(s3_env.uri(s3_prefix)).list("nb201", batch[0].config_hash) == \
        sorted(batch, key=lambda t: (t.created_at, t.trial))
    store.put_bytes("artifacts/run/predictor.pt", b"\x00weights")
    assert s3_env.client().get_object(Bucket=s3_env.bucket, Key=f"{s3_prefix}/artifacts/run/predictor.pt")[
        "Body"].read() == b"\x00weights"


def test_s3_configuration_errors(s3_env, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PredNASError, match="bucket 'no-such-bucket' does not exist"):
        open_store("s3://no-such-bucket/x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret")
    with pytest.raises(PredNASError, match="check the AWS_\\* credentials") as raised:
        open_store(s3_env.uri("x"))
    assert "wrong-secret" not in str(raised.value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    with pytest.raises(PredNASError, match=r"S3 endpoint http://127.0.0.1:9 unreachable .* after 2 attempts"):
        open_store(s3_env.uri("x"))


def test_tracking_server_with_s3_artifacts(mlflow_server, s3_env, s3_prefix: str) -> None:
    store = open_store(s3_env.uri(s3_prefix))
    tracker = Tracker(mlflow_server.tracking_uri, f"prednas-{s3_prefix}")
    parent = tracker.start_parent("search", {"space": "nb201", "n": 6}, {"prednas.space": "nb201"})
    batch = measured(6, seed=1)
    for t in batch:  # the store first, then tracking
        store.put(Triplet(**{**t.__dict__, "run_id": parent}))
    stored = store.list("nb201", batch[0].config_hash)
    assert len(tracker.log_triplets(parent, stored)) == 6 == len(tracker.children(parent))
    digest = tracker.log_training_set(parent, stored, source=store.uri)
    x = np.stack([SPACE.encode(SPACE.from_dict(t.arch)) for t in stored])
    predictor = fit_predictor(SPACE, x, np.array([t.accuracy for t in stored]), seed=0, config=FitConfig(epochs=2))
    version = tracker.log_predictor(parent, predictor.state_bytes(), space="nb201", target="accuracy",
                                    training_hash=digest, metrics={"kendall_tau": 0.4})
    tracker.set_alias(model_name("nb201", "accuracy"), "champion", version)
    tracker.log_final(parent, {"best_accuracy": 75.0}, plots.search_figures(stored))
    tracker.close(parent)

    artifacts = "\n".join(mlflow_server.s3.keys("mlflow/"))
    assert f"datasets/predictor-fit/{digest}/triplets.csv" in artifacts
    assert f"{parent}/artifacts/plots/search_trajectory.png" in artifacts
    assert "artifacts/artifacts/state.pt" in artifacts and "MLmodel" in artifacts
    state = tracker.load_predictor_bytes(model_name("nb201", "accuracy"), "champion")
    archs = [SPACE.from_dict(t.arch) for t in stored]
    np.testing.assert_allclose(Predictor.from_bytes(SPACE, state).predict_archs(archs), predictor.predict_archs(archs))
    assert training_hash(stored) == digest
