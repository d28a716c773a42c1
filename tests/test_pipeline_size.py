"""A size space through the whole pipeline, in one process: AnyNet trained on a tiny image set.

The main predictor of a size space is an ensemble: it must be registered in MLflow as one
version and come back whole, and the search step must read it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pipeline_checks import shared_tracking, stored_trials

from prednas.pipeline.config import load_config
from prednas.pipeline.context import stage
from prednas.pipeline.fitting import one_thread
from prednas.predictors.fit import Ensemble, Predictor
from prednas.store import open_store


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> str:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "d.npz"
    np.savez(path, x_train=rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8), y_train=np.arange(24) % 3,
             x_test=rng.integers(0, 256, (9, 32, 32, 3), dtype=np.uint8), y_test=np.arange(9) % 3)
    return str(path)


@pytest.mark.slow
def test_anynet_search_registers_and_searches_with_the_ensemble(tmp_path: Path, npz: str,
                                                                tmp_path_factory: pytest.TempPathFactory) -> None:
    from prednas.pipeline.inprocess import run_inprocess
    from prednas.tracking import Tracker
    from prednas.tracking.registry import model_name

    evaluator = {"name": "classification", "data": {"source": "npz", "path": npz},
                 "recipe": {"epochs": 1, "batch_size": 8}, "device": "cpu", "latency": False}
    base = ["space=anynet", f"evaluator={json.dumps(evaluator)}", "n=6", "k=2", "rounds=1", "shards=2",
            "predictor.epochs=20", "predictor.cv_folds=2", "predictor.aux_target=macs", "alphas=[1.0]",
            "gradient.starts=12", "gradient.steps=3", f"tracking_uri={shared_tracking(tmp_path_factory)}",
            f"store_uri={tmp_path / 'store'}", "experiment=size-pipeline"]
    space = stage(load_config(None, base), "sample").space
    macs = np.median([space.cost(space.sample(np.random.default_rng(i)))["macs"] for i in range(200)])
    spec = load_config(None, [*base, f"cost={{metric: macs, target: {macs:.6g}, window: {0.5 * macs:.6g}}}"])

    report = run_inprocess(spec, run_key="size-pipeline")
    assert sum(stored_trials(spec).values()) == spec.n + spec.k
    tracker = Tracker(spec.tracking_uri, spec.experiment)
    main = Predictor.from_bytes(space, tracker.load_predictor_bytes(model_name("anynet", "accuracy")))
    aux = Predictor.from_bytes(space, tracker.load_predictor_bytes(model_name("anynet", "macs")))
    assert isinstance(main, Ensemble) and len(main.members) == 3 and isinstance(aux, Predictor)
    trials = open_store(spec.store_uri).list(spec.space, stage(spec, "sample").hash)  # both stages: one evaluator
    topk = [t for t in trials if t.stage == "top-k"]
    assert len(topk) == spec.k and all(abs(t.cost["macs"] - macs) <= 0.5 * macs for t in topk)
    assert report["best"]["accuracy"] == max(t.accuracy for t in trials)
