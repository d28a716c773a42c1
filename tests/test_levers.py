"""Search levers: ensembles, acquisition, exhaustive scoring, pretraining, overrides, ablation rows."""

from __future__ import annotations

import numpy as np
import pytest

from prednas.bench.ablation import LEVERS, ablation_entries
from prednas.errors import PredNASError
from prednas.evaluators.nb201_table import NB201TableEvaluator
from prednas.predictors.fit import FitConfig, fit_predictor
from prednas.search.acquisition import Ensemble, acquire, can_enumerate, enumerate_classes, pretrained_state
from prednas.search.methods import SearchConfig, parse_overrides, run_search
from prednas.spaces import get_space


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


def test_enumerate_classes_gives_one_cell_per_isomorphism_class(space):
    classes = enumerate_classes(space)
    assert len(classes) == 6466
    assert len({space.equivalence_key(c) for c in classes}) == 6466
    assert can_enumerate(space, 20_000) and not can_enumerate(space, 1000) and not can_enumerate(space, 0)


def test_ensemble_mean_and_ucb(space):
    rng = np.random.default_rng(0)
    cells = [space.sample(rng) for _ in range(20)]
    x = np.stack([space.encode(c) for c in cells])
    y = np.array([c.ops.count("nor_conv_3x3") for c in cells], dtype=float)
    members = [fit_predictor(space, x, y, seed=s, config=FitConfig(epochs=30)) for s in range(3)]
    ensemble = Ensemble(members)
    mean, std = ensemble.predict_with_std(cells)
    assert np.allclose(mean, np.mean([m.predict_archs(cells) for m in members], axis=0))
    assert np.all(std >= 0)
    assert np.allclose(acquire(ensemble, cells, "ucb", 2.0), mean + 2.0 * std)
    assert np.allclose(acquire(ensemble, cells, "mean", 2.0), mean)


def test_pretrained_state_ranks_by_cost(space):
    state = pretrained_state(space, 2000, 20)
    assert pretrained_state(space, 2000, 20) is state  # cached
    rng = np.random.default_rng(0)
    cells = [space.sample(rng) for _ in range(40)]
    predictor = fit_predictor(
        space,
        np.stack([space.encode(c) for c in cells]),
        np.log1p([space.cost(c)["macs"] for c in cells]),
        seed=0,
        config=FitConfig(epochs=1),
        init=state,
    )
    from prednas.predictors.fit import kendall_tau

    assert kendall_tau(predictor.predict_archs(cells), [space.cost(c)["macs"] for c in cells]) > 0.5


def test_parse_overrides():
    config = parse_overrides(SearchConfig(), ["ensemble=3", "fit.epochs=10", "gradient.lr=0.1", "acquisition=ucb"])
    assert (config.ensemble, config.fit.epochs, config.gradient.lr, config.acquisition) == (3, 10, 0.1, "ucb")
    for bad in ["ensemble", "nope=1", "fit.nope=1", "ensemble=x", "acquisition=ei", "ensemble=0"]:
        with pytest.raises(PredNASError):
            parse_overrides(SearchConfig(), [bad])


def test_prednas_with_every_lever_respects_the_budget(space):
    config = parse_overrides(
        SearchConfig(n=10, k=12),
        [
            "exhaustive_limit=100000",
            "rounds=3",
            "ensemble=2",
            "acquisition=ucb",
            "pretrain=300",
            "pretrain_epochs=2",
            "fit.epochs=20",
        ],
    )
    ev = NB201TableEvaluator("cifar10")
    result = run_search("prednas", space, ev, seed=0, config=config)
    assert ev.queries == 22
    assert [q.stage for q in result.history.queries].count("top-k") == 12


def test_ablation_rows_add_one_lever_each():
    entries = ablation_entries(30, 40)
    assert next(iter(entries)) == "prednas-paper" and len(entries) == len(LEVERS) + 1
    last = list(entries.values())[-1][1]
    assert last.exhaustive_limit > 0 and last.rounds == 4 and last.pretrain > 0
