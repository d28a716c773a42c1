"""MLflow tracking on a local SQLite store: parent, idempotent children, dataset, registry, plots."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from prednas.errors import PredNASError
from prednas.evaluators.base import Evaluation
from prednas.predictors.fit import FitConfig, Predictor, fit_predictor
from prednas.spaces import get_space
from prednas.store import Triplet, training_hash
from prednas.tracking import Tracker, model_name, plots

SPACE = get_space("nb201")
CONFIG = {"evaluator": "nb201-table", "dataset": "cifar100", "signal": "valid"}


def triplets(n: int, *, stage: str = "sample", seed: int = 0) -> list[Triplet]:
    """``n`` distinct NB201 triplets with made-up numbers."""
    rng = np.random.default_rng(seed)
    archs = {SPACE.to_dict(a)["arch"]: a for a in (SPACE.sample(rng) for _ in range(4 * n))}
    return [Triplet.create(SPACE, a, CONFIG, Evaluation(60.0 + i, SPACE.cost(a), {"test_accuracy": 59.0 + i}),
                           stage=stage, run_id="r") for i, a in enumerate(list(archs.values())[:n])]


@pytest.fixture(scope="module")
def tracker(tmp_path_factory: pytest.TempPathFactory) -> Tracker:
    """One SQLite store for the module (creating its schema takes seconds)."""
    db = tmp_path_factory.mktemp("mlflow") / "mlflow.db"
    return Tracker(f"sqlite:///{db}", "prednas-test")


@pytest.fixture
def parent(tracker: Tracker, request: pytest.FixtureRequest) -> str:
    """A fresh parent run named after the test."""
    return tracker.start_parent(request.node.name, {"space": "nb201", "search": {"n": 4, "k": 2}}, {"team": "x"})


def test_parent_run(tracker: Tracker, parent: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    run = tracker.client.get_run(parent)
    assert run.data.params == {"space": "nb201", "search.n": "4", "search.k": "2"}
    assert run.data.tags["prednas.kind"] == "search" and run.data.tags["team"] == "x"
    assert run.info.artifact_uri.startswith(Path(tracker.tracking_uri[len("sqlite:///"):]).parent.as_uri())
    tracker.close(parent, "FAILED")
    assert tracker.client.get_run(parent).info.status == "FAILED"
    with pytest.raises(PredNASError, match="status"):
        tracker.close(parent, "DONE")


def test_parent_reused_by_key_and_env(tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    first = tracker.start_parent("keyed", {"n": 1}, {}, key="kfp-run-123")
    assert tracker.start_parent("keyed", {"n": 1}, {}, key="kfp-run-123") == first
    with pytest.raises(PredNASError, match="param n"):
        tracker.start_parent("keyed", {"n": 2}, {}, key="kfp-run-123")
    monkeypatch.setenv("MLFLOW_RUN_ID", first)  # as Kubeflow's MLflow integration injects it
    assert tracker.start_parent("other", {"m": 3}, {"t": "v"}) == first
    assert tracker.client.get_run(first).data.params == {"n": "1", "m": "3"}
    monkeypatch.setenv("MLFLOW_RUN_ID", "0" * 32)
    with pytest.raises(PredNASError, match="MLFLOW_RUN_ID"):
        tracker.start_parent("other", {}, {})
    with pytest.raises(PredNASError, match="names no run"):
        tracker.attach("f" * 32)


def test_children_are_idempotent(tracker: Tracker, parent: str) -> None:
    batch = triplets(3) + triplets(1, stage="top-k")
    ids = [tracker.log_triplet(parent, t) for t in batch]
    assert [tracker.log_triplet(parent, t) for t in batch] == ids  # a rerun finds them
    assert tracker.log_triplets(parent, batch) == ids
    children = tracker.children(parent)
    assert sorted(r.info.run_id for r in children) == sorted(ids)
    run = tracker.client.get_run(ids[0])
    t = batch[0]
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert {k: run.data.tags[k] for k in ("prednas.stage", "prednas.evaluator", "prednas.space", "prednas.arch_id")} \
        == {"prednas.stage": "sample", "prednas.evaluator": "nb201-table", "prednas.space": "nb201",
            "prednas.arch_id": t.arch_id}
    assert json.loads(run.data.params["arch"]) == t.arch and run.data.params["arch_id"] == t.arch_id
    assert run.data.metrics == {"accuracy": t.accuracy, **t.cost, "test_accuracy": t.report["test_accuracy"]}
    assert run.info.status == "FINISHED"
    found = tracker.client.search_runs([tracker.experiment_id], "tags.`prednas.stage` = 'top-k' and "
                                       f"tags.`mlflow.parentRunId` = '{parent}'")
    assert [r.info.run_id for r in found] == ids[3:]


def test_half_logged_child_is_completed(tracker: Tracker, parent: str) -> None:
    from prednas.tracking import runs

    t = triplets(1, seed=5)[0]
    crashed = tracker.client.create_run(tracker.experiment_id, tags=runs.child_tags(parent, t))  # died here
    assert tracker.log_triplets(parent, [t]) == [crashed.info.run_id]
    run = tracker.client.get_run(crashed.info.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["accuracy"] == t.accuracy


def test_training_set(tracker: Tracker, parent: str) -> None:
    batch = triplets(5)
    digest = tracker.log_training_set(parent, batch, source="s3://bucket/triplets/nb201")
    assert digest == training_hash(batch)
    assert tracker.log_training_set(parent, batch) == digest  # again: same inputs, no duplicate
    inputs = tracker.client.get_run(parent).inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.digest == digest
    assert {t.key: t.value for t in inputs[0].tags}["mlflow.data.context"] == "predictor-fit"
    local = tracker.client.download_artifacts(parent, f"datasets/predictor-fit/{digest}")
    table = pd.read_csv(Path(local) / "triplets.csv")
    assert list(table["arch_id"]) == [t.arch_id for t in batch]
    lines = (Path(local) / "triplets.jsonl").read_text().splitlines()
    assert [Triplet.from_json(line) for line in lines] == batch
    with pytest.raises(PredNASError, match="one space"):
        tracker.log_training_set(parent, [])


def _predictor(batch: list[Triplet], seed: int) -> Predictor:
    x = np.stack([SPACE.encode(SPACE.from_dict(t.arch)) for t in batch])
    return fit_predictor(SPACE, x, np.array([t.accuracy for t in batch]), seed=seed, config=FitConfig(epochs=2))


def test_registered_predictor_versions_and_aliases(tracker: Tracker, parent: str, tmp_path: Path) -> None:
    import mlflow.pyfunc
    from mlflow.artifacts import download_artifacts

    batch = triplets(6)
    first, second = _predictor(batch[:4], 0), _predictor(batch, 1)
    name = model_name("nb201", "accuracy")
    v1 = tracker.log_predictor(parent, first.state_bytes(), space="nb201", target="accuracy",
                               training_hash=training_hash(batch[:4]), metrics={"kendall_tau": 0.5})
    v2 = tracker.log_predictor(parent, second.state_bytes(), space="nb201", target="accuracy",
                               training_hash=training_hash(batch), metrics={"kendall_tau": 0.6, "rmse": 1.5})
    again = tracker.log_predictor(parent, second.state_bytes(), space="nb201", target="accuracy",
                                  training_hash=training_hash(batch), metrics={"kendall_tau": 0.6})
    assert int(v2) == int(v1) + 1 and again == v2  # a retried fit registers nothing new
    version = tracker.client.get_model_version(name, v2)
    assert version.tags["prednas.training_hash"] == training_hash(batch) and version.run_id == parent
    tracker.set_alias(name, "champion", v1)
    assert str(tracker.client.get_model_version_by_alias(name, "champion").version) == v1
    with pytest.raises(PredNASError, match="reserved"):
        tracker.set_alias(name, "latest", v1)
    state = tracker.load_predictor_bytes(name, "latest")
    archs = [SPACE.from_dict(t.arch) for t in batch]
    np.testing.assert_allclose(Predictor.from_bytes(SPACE, state).predict_archs(archs), second.predict_archs(archs))
    np.testing.assert_allclose(Predictor.from_bytes(SPACE, tracker.load_predictor_bytes(name, "champion"))
                               .predict_archs(archs), first.predict_archs(archs))
    history = tracker.client.get_metric_history(parent, "predictor.accuracy.kendall_tau")
    assert [(m.step, m.value) for m in history] == [(int(v1), 0.5), (int(v2), 0.6)]
    model = mlflow.pyfunc.load_model(download_artifacts(artifact_uri=version.source, dst_path=str(tmp_path),
                                                        tracking_uri=tracker.tracking_uri))
    served = model.predict(pd.DataFrame({"arch": [json.dumps(t.arch) for t in batch]}))
    np.testing.assert_allclose(np.asarray(served), second.predict_archs(archs))
    assert not list(Path(tmp_path).rglob("*.pkl"))  # models from code: nothing pickled


class _Exploit:
    def __reduce__(self):  # runs a command when unpickled
        import os

        return os.system, ("touch /tmp/prednas-pwned",)


def test_crafted_pickle_in_the_registry_is_refused(tracker: Tracker, parent: str) -> None:
    import io
    import os

    import torch

    buf = io.BytesIO()
    torch.save({"state_dict": _Exploit(), "mean": 0.0, "std": 1.0}, buf)
    version = tracker.log_predictor(parent, buf.getvalue(), space="nb201", target="crafted",
                                    training_hash="0" * 16, metrics={})
    with pytest.raises(PredNASError, match="not a prednas predictor"):
        Predictor.from_bytes(SPACE, tracker.load_predictor_bytes(model_name("nb201", "crafted"), version))
    assert not os.path.exists("/tmp/prednas-pwned")


def test_final_metrics_and_plots(tracker: Tracker, parent: str) -> None:
    batch = triplets(6) + triplets(2, stage="top-k", seed=3)
    figures = plots.search_figures(batch, chosen_trial=batch[-1].trial)
    measured = [t.accuracy for t in batch]
    figures["predicted_vs_measured"] = plots.predicted_vs_measured(measured, np.array(measured) + 0.5)
    tracker.log_final(parent, {"best_accuracy": 66.0, "queries": 8}, figures, report={"best": batch[-1].arch_id})
    names = sorted(a.path for a in tracker.client.list_artifacts(parent, "plots"))
    assert names == ["plots/accuracy_vs_cost.png", "plots/predicted_vs_measured.png", "plots/search_trajectory.png"]
    run = tracker.client.get_run(parent)
    assert run.data.metrics["best_accuracy"] == 66.0 and run.data.metrics["queries"] == 8
    report = tracker.client.download_artifacts(parent, "final/report.json")
    assert json.loads(Path(report).read_text()) == {"best": batch[-1].arch_id}


def test_pareto_front() -> None:
    costs, accs = [1, 2, 3, 2, 1, 4], [5, 6, 4, 7, 5, 8]
    assert plots.pareto_front(costs, accs).tolist() == [0, 3, 5]
    with pytest.raises(PredNASError):
        plots.pareto_front([1, 2], [1])
    with pytest.raises(PredNASError, match="2 matching"):
        plots.predicted_vs_measured([1.0], [1.0])


def test_unreachable_server_fails_fast() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = time.monotonic()
    with pytest.raises(PredNASError, match=f"127.0.0.1:{port} unreachable"):
        Tracker(f"http://127.0.0.1:{port}", "x")
    assert time.monotonic() - start < 15
    for uri in ("", None):
        with pytest.raises(PredNASError, match="tracking URI"):
            Tracker(uri, "x")  # type: ignore[arg-type]
