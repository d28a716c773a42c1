"""Under a cost target the sample stage draws inside the window, reproducibly, unless the config says otherwise."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pipeline_checks import shared_tracking

from prednas.errors import PredNASError
from prednas.pipeline import steps
from prednas.pipeline.config import SearchSpec, load_config
from prednas.pipeline.context import stage


def _sample(tmp_path: Path, overrides: list[str], key: str = "window") -> tuple[SearchSpec, list[dict]]:
    spec = load_config(None, [f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}", f"store_uri={tmp_path / 'store'}",
                              "shards=1", *overrides])
    _, shards = steps.sample(spec, run_key=key)
    return spec, [a for shard in shards for a in json.loads(shard)["archs"]]


def _costs(spec: SearchSpec, archs: list[dict]) -> list[float]:
    space = stage(spec, "sample").space
    return [space.cost(space.from_dict(a))[spec.cost.metric] for a in archs]


@pytest.fixture(scope="module")
def anynet_window(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """AnyNet under a 12 M MAC window; its evaluator reads 24 random images (the sample stage needs their shape)."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "d.npz"
    np.savez(path, x_train=rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8), y_train=np.arange(24) % 3,
             x_test=rng.integers(0, 256, (9, 32, 32, 3), dtype=np.uint8), y_test=np.arange(9) % 3)
    evaluator = {"name": "classification", "data": {"source": "npz", "path": str(path)},
                 "recipe": {"epochs": 1, "batch_size": 8}, "device": "cpu", "latency": False}
    return ["space=anynet", f"evaluator={json.dumps(evaluator)}", "n=8", "alphas=[1.0]", "predictor.aux_target=macs",
            "cost={metric: macs, target: 1.2e7, window: 1.2e6}"]


def test_anynet_samples_lie_in_the_window_and_repeat_by_seed(tmp_path: Path, anynet_window: list[str]) -> None:
    spec, archs = _sample(tmp_path / "a", anynet_window)
    assert len(archs) == 8 and all(abs(c - 1.2e7) <= 1.2e6 for c in _costs(spec, archs))
    _, again = _sample(tmp_path / "b", anynet_window)
    assert again == archs
    _, other = _sample(tmp_path / "c", [*anynet_window, "seed=1"])
    assert other != archs


def test_sample_in_window_false_draws_as_before(tmp_path: Path, anynet_window: list[str]) -> None:
    free = [*anynet_window[:-1], "cost={metric: macs, target: 1.2e7, window: 1.2e6, sample_in_window: false}"]
    spec, archs = _sample(tmp_path, free)
    space = stage(spec, "sample").space
    rng = np.random.default_rng([0, 0])  # the sample stream of seed 0 (exchange.rng_for)
    assert archs == [space.to_dict(space.sample(rng)) for _ in range(8)]  # AnyNet draws are distinct
    assert not all(abs(c - 1.2e7) <= 1.2e6 for c in _costs(spec, archs))


def test_nb201_keeps_the_draws_inside_an_analytic_window(tmp_path: Path) -> None:
    spec, archs = _sample(tmp_path, ["n=10", "cost={metric: flops, target: 1.0e8, window: 1.0e7}"])
    assert len(archs) == 10 and all(abs(c - 1.0e8) <= 1.0e7 for c in _costs(spec, archs))


@pytest.mark.parametrize("window", ["{metric: flops, target: 1.0e3, window: 1.0}",
                                    "{metric: flops, target: 1.0e8, window: 1.0}"])
def test_an_empty_or_too_narrow_window_is_one_line(tmp_path: Path, window: str) -> None:
    with pytest.raises(PredNASError) as caught:
        _sample(tmp_path, ["n=10", f"cost={window}"])
    message = str(caught.value)
    assert "\n" not in message and "cost.window" in message and "cost.sample_in_window: false" in message


def test_sample_in_window_is_a_pipeline_parameter() -> None:
    spec = load_config(None, ["cost={metric: flops, target: 1.0e8, window: 1.0e7, sample_in_window: false}"])
    arguments = spec.to_arguments()
    assert arguments["cost_sample_in_window"] is False
    assert SearchSpec.from_arguments(arguments).cost == spec.cost
    with pytest.raises(PredNASError, match=r"cost\.sample_in_window must be true or false"):
        load_config(None, ["cost={metric: flops, target: 1.0e8, window: 1.0e7, sample_in_window: 3}"])


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> str:
    return shared_tracking(tmp_path_factory)


@pytest.mark.parametrize("window", ["{metric: flops, target: 1.0e3, window: 1.0}",
                                    "{metric: flops, target: 1.0e8, window: 1.0}"])
def test_a_too_narrow_window_fails_the_preflight_before_any_run(tmp_path: Path, tracking: str, window: str) -> None:
    """The sample step's own error, raised by ``preflight`` before a run is opened or anything measured."""
    from mlflow import MlflowClient

    from prednas.pipeline.local import preflight

    spec = load_config(None, [f"tracking_uri={tracking}", f"store_uri={tmp_path / 'store'}",
                              f"experiment=narrow-{tmp_path.name}", "n=10", f"cost={window}"])
    client = MlflowClient(tracking_uri=tracking)
    with pytest.raises(PredNASError) as before:
        preflight(spec)
    experiment = client.get_experiment_by_name(spec.experiment)
    assert experiment is None or not client.search_runs([experiment.experiment_id])
    assert not (tmp_path / "store").exists()
    with pytest.raises(PredNASError) as during:
        steps.sample(spec, run_key="narrow")  # what the run met before: the same line, after opening its parent
    assert str(before.value) == str(during.value)
    assert client.search_runs([client.get_experiment_by_name(spec.experiment).experiment_id])
    assert "\n" not in str(before.value) and "(cost.target, cost.window)" in str(before.value)


def test_the_preflight_draw_passes_a_wide_window_and_one_the_samples_ignore() -> None:
    steps.check_samples(load_config(None, ["n=10", "cost={metric: flops, target: 1.0e8, window: 1.0e7}"]))
    steps.check_samples(load_config(None, ["n=10", "cost={metric: flops, target: 1.0e8, window: 1.0, "
                                               "sample_in_window: false}"]))


def _top_ups(spec: SearchSpec, monkeypatch: pytest.MonkeyPatch, size: int) -> tuple[list[dict], dict[str, float]]:
    """Round 1's proposal when the pool is empty: every pick is a top-up draw."""
    from prednas.pipeline.context import SearchContext
    from prednas.pipeline.state import SearchState
    from prednas.predictors.fit import FitConfig, fit_predictor

    space = stage(spec, "sample").space
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(4)]
    main = fit_predictor(space, np.stack([space.encode(a) for a in archs]), np.arange(4.0), seed=0,
                         config=FitConfig(epochs=1))
    monkeypatch.setattr(steps, "_pool", lambda *args: ([], {}))
    state, _ = steps.search(SearchContext(spec, "top-up", "parent", 0.0), main.state_bytes(), None,
                            SearchState(versions=[{}]), rounds=spec.k // size)
    return [p["arch"] for p in state.picks], state.stats[-1]


def test_top_up_draws_keep_to_the_cost_window(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_config(None, ["k=6", "rounds=1", "cost={metric: flops, target: 1.0e8, window: 1.0e7}"])
    archs, stats = _top_ups(spec, monkeypatch, 6)
    assert len(archs) == stats["topped_up"] == 6 and stats["from_pool"] == 0
    assert all(abs(c - 1.0e8) <= 1.0e7 for c in _costs(spec, archs))

    free = replace(spec, cost=replace(spec.cost, sample_in_window=False))
    archs, _ = _top_ups(free, monkeypatch, 6)
    assert not all(abs(c - 1.0e8) <= 1.0e7 for c in _costs(free, archs))  # the whole space, as before


def test_a_window_without_unseen_architectures_proposes_fewer(monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    spec = load_config(None, ["k=6", "rounds=1", "cost={metric: flops, target: 1.0e3, window: 1.0}"])
    archs, stats = _top_ups(spec, monkeypatch, 6)
    assert archs == [] and stats["topped_up"] == 0
    assert "the cost window holds 0 unseen architectures beyond the pool, not 6" in caplog.text
