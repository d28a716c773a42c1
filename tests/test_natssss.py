"""NATS-Bench sss: the space, its analytic cost against NATS-Bench's figures, the table evaluator,
the shipped config and the FLOPs-window helpers of the bench.

``tests/golden/natssss.json`` holds a SHA-256 of NATS-Bench's FLOPs and parameter counts of every
architecture on its three datasets (how it is formed is written in the file) and a few rows in full.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from prednas.bench.natssss import (
    QUANTILES,
    in_window,
    in_window_optimum,
    make_window,
    mutate_in_window,
    random_in_window,
    rea_in_window,
    space_costs,
    target_from_quantile,
    window_indices,
    window_summary,
)
from prednas.errors import PredNASError
from prednas.evaluators.natssss_table import DATASETS, NatsSssTableEvaluator, dataset_space, load_table
from prednas.evaluators.registry import check_space, evaluator_entry, make_evaluator
from prednas.pipeline.config import load_config
from prednas.search.acquisition import classes_in_window
from prednas.search.constrained import into_window
from prednas.spaces import get_space
from prednas.spaces.natssss import CHANNELS, NatsSssArch, NatsSssSpace, from_index, natssss_cost, parse_arch_string

GOLDEN = json.loads((Path(__file__).parent / "golden" / "natssss.json").read_text())
CONFIG = Path(__file__).parents[1] / "pipelines" / "configs" / "natssss-cifar100.yaml"


@pytest.fixture(scope="module")
def space():
    return get_space("natssss")


@pytest.fixture(scope="module", params=DATASETS)
def evaluator(request):
    return NatsSssTableEvaluator(request.param)


# -- space ---------------------------------------------------------------------------------
def test_analytic_cost_is_natsbench_on_every_architecture_and_dataset(space):
    spaces = [dataset_space(d) for d in DATASETS]
    lines = []
    for arch in space.enumerate():
        costs = [natssss_cost(arch, s.input_size, s.num_classes) for s in spaces]
        lines.append(",".join([str(arch), *(str(c["macs"]) for c in costs), *(str(c["params"]) for c in costs)]))
    assert hashlib.sha256(("\n".join(lines) + "\n").encode()).hexdigest() == GOLDEN["cost_sha256"]


def test_the_space_memoises_its_costs_and_hands_out_copies():
    space = NatsSssSpace(num_classes=100)
    arch = parse_arch_string("8:16:32:48:64")
    first = space.cost(arch)
    first["flops"] = -1  # a caller's edit stays the caller's
    assert space.cost(arch) == natssss_cost(arch, 32, 100) and len(space._costs) == 1
    assert NatsSssSpace(num_classes=10).cost(arch) == natssss_cost(arch, 32, 10)


@pytest.mark.parametrize("text", sorted(GOLDEN["rows"]))
def test_golden_rows(text):
    row = GOLDEN["rows"][text]
    arch = parse_arch_string(text)
    assert arch.index == row["index"] and from_index(row["index"]) == arch
    for dataset in DATASETS:
        cost = dataset_space(dataset).cost(arch)
        assert cost == {"macs": row[dataset]["nats_flops"], "flops": 2 * row[dataset]["nats_flops"],
                        "params": row[dataset]["params"]}
        assert NatsSssTableEvaluator(dataset).test_of(arch) == row[dataset]["test"]


def test_enumeration_is_natsbench_index_order(space):
    archs = list(space.enumerate())
    assert space.size() == len(archs) == 8**5 == len(set(archs))
    assert [a.index for a in archs[:: 997]] == list(range(0, 8**5, 997))
    assert str(archs[751]) == "8:16:32:48:64" and from_index(32767) == NatsSssArch((64,) * 5)


def test_json_string_encoding_and_projection_round_trip(space):
    rng = np.random.default_rng(0)
    for _ in range(200):
        arch = space.sample(rng)
        assert space.from_dict(json.loads(json.dumps(space.to_dict(arch)))) == arch
        assert space.from_dict(str(arch)) == arch and space.equivalence_key(arch) == str(arch)
        x = space.encode(arch)
        assert x.dtype == np.float32 and x.shape == (5,) and 0 <= x.min() and x.max() <= 1
        assert space.project(space.param(arch)) == arch
    assert space.project(np.array([-3.0, 0.49 / 7, 0.51 / 7, np.nan, 9.0])).channels == (8, 8, 16, 8, 64)


def test_space_is_a_size_space(space):
    assert space.kind == "size" and space.param_bounds == (0.0, 1.0)
    assert space.relax(np.ones(5)) is not None


@pytest.mark.parametrize(("bad", "message"), [
    ({"channels": [8, 16, 32, 48]}, r"natssss channels = \[8, 16, 32, 48\]: expected a list of 5 numbers"),
    ({"channels": "8:16"}, "natssss channels = '8:16': expected a list of 5"),
    ({"channels": [8, 16, 72, 48, 64]}, r"natssss channels\[2\] = 72: expected a multiple of 8 in 8..64"),
    ({"channels": [8, 12, 32, 48, 64]}, r"natssss channels\[1\] = 12: expected a multiple of 8 in 8..64"),
    ({"channels": [8, 16, 32, 48, "64"]}, r"natssss channels\[4\] = '64'"),
    ({"channels": [8, 16, 32, 48, 64], "depth": 3}, "unknown field 'depth'"),
    ({}, "missing field 'channels'"),
    ("8:16:32:48", "malformed natssss arch string '8:16:32:48'"),
    ("8:16:32:48:72", r"natssss channels\[4\] = 72"),
    (7, "must be a JSON object"),
])
def test_bad_architectures_get_one_line(space, bad, message):
    with pytest.raises(PredNASError, match=message) as info:
        space.from_dict(bad)
    assert "\n" not in str(info.value)


def test_bad_index_and_projection(space):
    with pytest.raises(PredNASError, match=r"natssss index = 32768: expected an integer in 0..32767"):
        from_index(32768)
    with pytest.raises(PredNASError, match="must have 5 numbers"):
        space.project(np.zeros(4))


def test_scale_widths_brings_an_architecture_into_a_window(space):
    window = make_window(target_from_quantile(space, 0.5))
    rng = np.random.default_rng(1)
    moved = [into_window(space, space.sample(rng), window) for _ in range(50)]
    assert sum(m is not None for m in moved) >= 25
    assert all(in_window(space, m, window) for m in moved if m is not None)


# -- table evaluator -----------------------------------------------------------------------
def test_table_matches_the_published_summary():
    table = load_table()
    assert set(table.columns) == {f"{d}_test" for d in DATASETS}
    assert all(len(c) == 8**5 for c in table.columns.values())
    assert round(float(table.columns["cifar10_test"].mean()), 4) == 91.0855


def test_evaluator_reports_signal_test_and_dataset_cost(evaluator):
    arch = parse_arch_string("16:64:24:56:40")
    result = evaluator.evaluate(evaluator.space, arch)
    row = GOLDEN["rows"][str(arch)][evaluator.dataset]
    assert result.accuracy == result.report["test_accuracy"] == row["test"]
    assert result.cost["macs"] == row["nats_flops"] and evaluator.queries == 1
    evaluator.evaluate(evaluator.space, "16:64:24:56:40")
    assert evaluator.queries == 1 and evaluator.config()["dataset"] == evaluator.dataset


def test_evaluator_registry_and_space_check():
    made = make_evaluator({"name": "natssss-table", "dataset": "imagenet16_120"})
    assert made.space.input_size == 16 and made.space.num_classes == 120
    check_space(evaluator_entry("natssss-table"), "natssss")
    with pytest.raises(PredNASError, match="measures space natssss, not 'nb201'"):
        check_space(evaluator_entry("natssss-table"), "nb201")
    with pytest.raises(PredNASError, match="measures space nb201, not 'natssss'"):
        check_space(evaluator_entry("nb201-table"), "natssss")


@pytest.mark.parametrize(("options", "message"), [
    ({"dataset": "imagenet"}, "unknown NATS-Bench sss dataset 'imagenet' .evaluator option 'dataset'.; expected "
                              "one of: cifar10, cifar100, imagenet16_120"),
    ({"signal": "valid"}, "unknown search signal 'valid' .evaluator option 'signal'.; the NATS-Bench sss table has "
                          "only: test"),
    ({"split": "x"}, "unknown option 'split' for evaluator 'natssss-table'"),
])
def test_bad_evaluator_options(options, message):
    with pytest.raises(PredNASError, match=message):
        make_evaluator({"name": "natssss-table", **options})


def test_altered_table_is_refused(tmp_path):
    data = gzip.decompress((resources.files("prednas") / "data" / "natssss.csv.gz").read_bytes())
    path = tmp_path / "natssss.csv"
    path.write_bytes(data.replace(b"79.7900", b"99.7900", 1))
    with pytest.raises(PredNASError, match="has sha256"):
        load_table(str(path))


def test_shipped_config_loads():
    spec = load_config(CONFIG)
    assert spec.space == "natssss" and (spec.n, spec.k) == (20, 30)
    target = target_from_quantile(dataset_space("cifar100"), 0.5)
    assert spec.cost.metric == "flops" and abs(spec.cost.target - target) / target < 1e-4
    assert abs(spec.cost.window - 0.05 * target) / target < 1e-4
    assert spec.alphas == (0.0,)  # every class scored, as `prednas bench natssss` measures it


# -- bench helpers -------------------------------------------------------------------------
def test_targets_windows_and_optima():
    ev = NatsSssTableEvaluator("cifar100")
    targets = [target_from_quantile(ev.space, q) for q in QUANTILES]
    assert targets == sorted(targets) and targets[1] == 184_657_480.0
    window = make_window(targets[1])
    inside = window_indices(ev.space, window)
    costs = space_costs(ev.space)
    assert len(inside) == 1567 and np.all(np.abs(costs[inside] - targets[1]) <= 0.05 * targets[1])
    arch, accuracy = in_window_optimum(ev, window)
    assert (str(arch), accuracy) == ("32:40:40:64:64", 70.16) and in_window(ev.space, arch, window)
    assert accuracy == ev.test_column()[inside].max() and ev.queries == 0
    assert window_summary(ev, window)["architectures"] == 1567
    assert not in_window(ev.space, NatsSssArch((64,) * 5), window)


def test_the_search_filters_the_window_once_per_space():
    space = dataset_space("cifar100")
    assert dataset_space("cifar100") is space and NatsSssTableEvaluator("cifar100").space is space
    window = make_window(target_from_quantile(space, 0.5))
    inside = classes_in_window(space, window)
    assert [a.index for a in inside] == list(window_indices(space, window))  # the classes' order, the window's members
    assert classes_in_window(space, make_window(target_from_quantile(space, 0.5))) is inside
    assert len(classes_in_window(space, make_window(target_from_quantile(space, 0.25)))) == 1155


@pytest.mark.parametrize("baseline", [random_in_window, rea_in_window])
def test_baselines_spend_the_budget_inside_the_window(baseline):
    ev = NatsSssTableEvaluator("cifar100")
    window = make_window(target_from_quantile(ev.space, 0.25))
    history = baseline(ev.space, ev, np.random.default_rng([3, 0]), 50, window)
    archs = [q.arch for q in history.queries]
    assert len(archs) == len(set(archs)) == ev.queries == 50
    assert all(in_window(ev.space, a, window) for a in archs)
    again = baseline(ev.space, NatsSssTableEvaluator("cifar100"), np.random.default_rng([3, 0]), 50, window)
    assert [q.arch for q in again.queries] == archs


def test_rea_exhausts_a_tiny_window():
    ev = NatsSssTableEvaluator("cifar10")
    window = make_window(target_from_quantile(ev.space, 0.5), 0.002)
    size = len(window_indices(ev.space, window))
    history = rea_in_window(ev.space, ev, np.random.default_rng(0), size, window)
    assert len(history) == size == ev.queries


def test_mutation_changes_one_layer_inside_the_window(space):
    window = make_window(target_from_quantile(space, 0.5))
    rng = np.random.default_rng(2)
    parent = from_index(int(window_indices(space, window)[100]))
    for _ in range(20):
        child = mutate_in_window(space, parent, window, rng)
        assert sum(a != b for a, b in zip(child.channels, parent.channels, strict=True)) == 1
        assert in_window(space, child, window) and set(child.channels) <= set(CHANNELS)


@pytest.mark.parametrize(("call", "message"), [
    (lambda s: target_from_quantile(s, 1.5), r"target quantile = 1.5: expected a number in 0..1"),
    (lambda s: make_window(-1.0), r"target flops = -1.0: expected a positive number"),
    (lambda s: make_window(1e8, 0.0), r"window = 0.0: expected a relative half-width"),
    (lambda s: window_indices(s, make_window(1e3)), "no natssss architecture has flops in 1000"),
    (lambda s: space_costs(s, "latency_ms"), "unknown cost metric 'latency_ms'"),
    (lambda s: rea_in_window(s, NatsSssTableEvaluator("cifar10"), np.random.default_rng(0), 5,
                             make_window(target_from_quantile(s, 0.5)), population=0), "population = 0"),
    (lambda s: random_in_window(s, NatsSssTableEvaluator("cifar10"), np.random.default_rng(0), 10**6,
                                make_window(target_from_quantile(s, 0.5))), r"budget = 1000000: expected an integer"),
])
def test_bad_bench_inputs(space, call, message):
    with pytest.raises(PredNASError, match=message):
        call(space)
