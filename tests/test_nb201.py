"""NB201 space, table evaluator, predictors and the search methods."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from prednas.bench.nb201 import bench_spec
from prednas.errors import PredNASError
from prednas.evaluators.nb201_table import NB201TableEvaluator, load_table
from prednas.pipeline.exchange import parse_shard
from prednas.predictors.fit import FitConfig, Predictor, fit_predictor, kendall_tau
from prednas.search.gradient import GradientConfig, gradient_search
from prednas.search.methods import BASELINES, check_method, run_baseline
from prednas.spaces import get_space
from prednas.spaces.nb201 import ADJACENCY, OPS, NB201Cell, parse_arch

RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"


@pytest.fixture(scope="module")
def space():
    return get_space("nb201")


@pytest.fixture(scope="module")
def table():
    return load_table()


def test_arch_string_round_trip(table):
    for text in table.archs[:500]:
        assert str(parse_arch(text)) == text


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~1|+|none~0|none~1|+|none~0|none~1|none~2|",
        "none",
        42,
    ],
)
def test_malformed_arch_string(bad):
    with pytest.raises(PredNASError, match="NB201"):
        parse_arch(bad)


def test_encoding_is_the_papers(space):
    x = space.encode(parse_arch(RESNET))
    assert x.shape == (8, 7) and ADJACENCY.shape == (8, 8)
    assert np.all(x.sum(axis=1) == 1)
    assert x[0, 0] == 1 and x[7, 6] == 1
    assert [OPS[i] for i in x[1:7, 1:6].argmax(axis=1)] == list(parse_arch(RESNET).ops)
    # input feeds edges leaving node 0; edges into node 3 feed the output; edge 0->1 feeds 1->2 and 1->3
    assert ADJACENCY[0].nonzero()[0].tolist() == [1, 2, 4]
    assert ADJACENCY[:, 7].nonzero()[0].tolist() == [4, 5, 6]
    assert ADJACENCY[1].nonzero()[0].tolist() == [3, 5]


def test_projection_inverts_encoding_and_relax_is_a_distribution(space):
    rng = np.random.default_rng(0)
    for _ in range(200):
        cell = space.sample(rng)
        assert space.project(space.encode(cell)) == cell
        noisy = space.encode(cell) + rng.normal(scale=0.2, size=(8, 7))
        assert isinstance(space.project(noisy), NB201Cell)
    relaxed = space.relax(torch.randn(5, 8, 7))
    assert torch.allclose(relaxed.sum(-1), torch.ones(5, 8))
    assert torch.all(relaxed[:, 1:7, 0] == 0) and torch.all(relaxed[:, 0, 0] == 1)


def test_projection_rejects_bad_shapes(space):
    with pytest.raises(PredNASError, match="8x7"):
        space.project(np.zeros((6, 5)))
    with pytest.raises(PredNASError):
        space.project(np.full((8, 7), np.nan))


def test_isomorphism_classes_match_the_table(space, table):
    first: dict[str, int] = {}
    iso = table.columns["iso_id"]
    for i, text in enumerate(table.archs):
        first.setdefault(space.equivalence_key(parse_arch(text)), i)
        assert first[space.equivalence_key(parse_arch(text))] == iso[i]
    assert len(first) == 6466


def test_analytic_cost_matches_the_table(space, table):
    for i in range(0, 15625, 97):
        cost = space.cost(parse_arch(table.archs[i]))
        assert cost["macs"] / 1e6 == pytest.approx(table.columns["cifar10_flops"][i], abs=1e-6)
        assert cost["params"] / 1e6 == pytest.approx(table.columns["cifar10_params"][i], abs=1e-6)
        assert cost["flops"] == 2 * cost["macs"]


def test_evaluator_counts_distinct_queries_and_hides_test(space):
    ev = NB201TableEvaluator("cifar100")
    result = ev.evaluate(space, RESNET)
    ev.evaluate(space, parse_arch(RESNET))
    assert ev.queries == 1
    assert result.accuracy == pytest.approx(70.50, abs=0.01)
    assert result.report["test_accuracy"] == pytest.approx(70.89, abs=0.01)


@pytest.mark.parametrize(("dataset", "signal"), [("cifar1000", "valid"), ("cifar10", "train")])
def test_evaluator_rejects_unknown_names(dataset, signal):
    with pytest.raises(PredNASError, match="expected one of"):
        NB201TableEvaluator(dataset, signal)


def test_altered_table_is_refused(tmp_path):
    path = tmp_path / "nb201.csv"
    path.write_text("arch,cifar10_valid\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,1.0\n")
    with pytest.raises(PredNASError, match="sha256"):
        load_table(str(path))
    with pytest.raises(PredNASError, match="not found"):
        load_table(str(tmp_path / "missing.csv.gz"))


def test_gcn_predictor_learns_the_ranking(space, table):
    rng = np.random.default_rng(0)
    idx = rng.choice(15625, 30, replace=False)
    test = rng.choice(15625, 1000, replace=False)
    x = np.stack([space.encode(parse_arch(table.archs[i])) for i in range(15625)])
    y = table.columns["cifar100_valid"]
    predictor = fit_predictor(space, x[idx], y[idx], seed=0)
    assert kendall_tau(predictor.predict(x[test]), y[test]) > 0.4
    again = Predictor.from_bytes(space, predictor.state_bytes())
    assert np.allclose(again.predict(x[test]), predictor.predict(x[test]))


def test_predictor_loading_refuses_pickles(space, tmp_path):
    import pickle

    with pytest.raises(PredNASError, match="not a prednas predictor"):
        Predictor.from_bytes(space, pickle.dumps({"state_dict": object()}))


def test_kendall_tau():
    assert kendall_tau(np.arange(5), np.arange(5)) == 1.0
    assert kendall_tau(np.arange(5), -np.arange(5)) == -1.0


def test_gradient_search_moves_and_pools_distinct_cells(space):
    rng = np.random.default_rng(1)
    cells = [space.sample(rng) for _ in range(30)]
    x = np.stack([space.encode(c) for c in cells])
    # a smooth target: number of 3x3 convolutions
    y = np.array([c.ops.count("nor_conv_3x3") for c in cells], dtype=float)
    predictor = fit_predictor(space, x, y, seed=0, config=FitConfig(epochs=100))
    pool = gradient_search(space, predictor, rng=rng, config=GradientConfig(starts=20, steps=60))
    assert len(set(pool.archs)) == len(pool.archs) > 20
    assert pool.stats["mean_changed"] > 1.0
    assert np.all(np.diff(pool.scores) <= 0)
    assert pool.archs[0].ops.count("nor_conv_3x3") >= 5


@pytest.mark.parametrize("method", sorted(BASELINES))
def test_baselines_respect_the_budget_and_are_deterministic(method, space):
    spec = bench_spec("cifar10", "valid", 10, 10, 3, ("predictor.epochs=40",))
    answers = []
    for _ in range(2):
        ev = NB201TableEvaluator("cifar10")
        history, _ = run_baseline(method, space, ev, seed=3, spec=spec)
        keys = [space.equivalence_key(q.arch) for q in history.queries]
        assert ev.queries == len(history) == 20 and len(set(keys)) == 20
        answers.append((str(history.best().arch), history.best().evaluation.accuracy))
    assert answers[0] == answers[1]


def test_baselines_start_from_the_pipeline_samples(space):
    """Repeat r of every method starts from the cells the pipeline's sample step draws under its seed."""
    from prednas.pipeline import steps

    spec = bench_spec("cifar10", "valid", 10, 10, 5, ("predictor.epochs=20", "tracking_uri=none",
                                                       "store_uri=memory://samples"))
    _, shards = steps.sample(spec, run_key="samples")
    drawn = {a["arch"] for shard in shards for a in parse_shard(shard)[2]}
    history, _ = run_baseline("random", space, NB201TableEvaluator("cifar10"), seed=5, spec=spec)
    assert {str(q.arch) for q in history.queries[:10]} == drawn


@pytest.mark.parametrize(("n", "k", "match"), [(0, 40, "positive"), (30, -1, "positive"), (15000, 1000, "exceeds")])
def test_budget_errors(space, n, k, match):
    with pytest.raises(PredNASError, match=match):
        run_baseline("random", space, NB201TableEvaluator("cifar10"), seed=0, spec=SimpleNamespace(n=n, k=k))


def test_unknown_method(space):
    with pytest.raises(PredNASError, match="unknown baseline"):
        run_baseline("bohb", space, NB201TableEvaluator("cifar10"), seed=0, spec=SimpleNamespace(n=3, k=3))
    with pytest.raises(PredNASError, match="unknown method 'bohb'"):
        check_method("bohb")
