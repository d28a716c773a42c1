"""Search levers: exhaustive scoring, pretraining, rounds, ablation rows."""

from __future__ import annotations

import numpy as np
import pytest

from prednas.bench.ablation import LEVERS, ablation_entries
from prednas.errors import PredNASError
from prednas.predictors.fit import FitConfig, fit_predictor
from prednas.search.acquisition import can_enumerate, enumerate_classes, pretrained_state
from prednas.spaces import get_space


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


def test_enumerate_classes_gives_one_cell_per_isomorphism_class(space):
    classes = enumerate_classes(space)
    assert len(classes) == 6466
    assert len({space.equivalence_key(c) for c in classes}) == 6466
    assert can_enumerate(space, 20_000) and not can_enumerate(space, 1000) and not can_enumerate(space, 0)


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


def test_prednas_with_every_lever_respects_the_budget():
    """The pipeline in process with rounds, enumeration and pretraining: K spent over the rounds, no repeats."""
    from prednas.bench.nb201 import bench_spec
    from prednas.pipeline.inprocess import run_inprocess

    spec = bench_spec("cifar10", "valid", 10, 12, 0, ("rounds=3", "pretrain=300", "predictor.epochs=20"),
                      store="memory://levers")
    report = run_inprocess(spec, run_key="levers")
    assert report["metrics"]["queries"] == 22 and report["metrics"]["rounds"] == 3
    assert [p["queries"] for p in report["rounds"]] == [10, 14, 18, 22]
    best = [p["best_accuracy"] for p in report["rounds"]]
    assert best == sorted(best) and best[-1] == report["best"]["accuracy"]


def test_round_sizes_split_k():
    from prednas.pipeline.steps import round_sizes

    assert round_sizes(40, 4) == [10] * 4 and round_sizes(30, 4) == [8, 8, 7, 7] and round_sizes(3, 3) == [1] * 3
    for bad in (0, 5, 2.5):
        with pytest.raises(PredNASError, match="rounds must be an integer in \\[1, 4\\]"):
            round_sizes(4, bad)


def test_ablation_rows_add_one_lever_each():
    entries = ablation_entries()
    assert next(iter(entries)) == "prednas-paper" and len(entries) == len(LEVERS) + 1
    method, overrides = list(entries.values())[-1]
    from prednas.bench.nb201 import bench_spec

    last = bench_spec("cifar100", "valid", 30, 40, 0, overrides)
    default = bench_spec("cifar100", "valid", 30, 40, 0)
    assert method == "prednas" and last == default  # the last row is the prednas default
