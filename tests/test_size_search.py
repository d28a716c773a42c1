"""Cost-constrained search in the size spaces: triplets, windows, Algorithm 1, random shooting, CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from prednas.bench.spaces import synthetic_accuracy
from prednas.cli import main as cli
from prednas.errors import PredNASError
from prednas.predictors.fit import Ensemble, FitConfig, Predictor, build_network, fit_ensemble
from prednas.predictors.mlp import MLPPredictor
from prednas.search.constrained import (
    ConstrainedConfig,
    Measured,
    constrained_search,
    fit_predictors,
    into_window,
    load_triplets,
    parse_delta,
    parse_quantity,
    random_shooting,
    window_penalty,
    window_starts,
)
from prednas.search.gradient import CostWindow, GradientConfig, gradient_search
from prednas.spaces import get_space
from prednas.spaces.anynet import AnyNetSpace

FAST_FIT = FitConfig(epochs=40)
SMALL = ConstrainedConfig(GradientConfig(starts=16, steps=30), (0.0, 0.5, 2.0))


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Small MLP batches run several times faster on one thread when the cores are shared."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def anynet():
    return get_space("anynet")


@pytest.fixture(scope="module")
def fitted(anynet):
    rng = np.random.default_rng(0)
    records = [Measured(a, synthetic_accuracy(a)) for a in (anynet.sample(rng) for _ in range(30))]
    return records, *fit_predictors(anynet, records, aux_metric="macs", seed=0, config=FAST_FIT)


def write_triplets(path, sp, records, **extra):
    lines = [json.dumps({"arch": sp.to_dict(r.arch), "accuracy": r.accuracy, **extra}) for r in records]
    path.write_text("# anynet triplets\n\n" + "\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("text", "value"), [("600M", 6e8), ("1.6G", 1.6e9), ("26.8g", 2.68e10), ("3e9", 3e9),
                                             ("12.5", 12.5), ("9K", 9e3)])
def test_quantities(text, value):
    assert parse_quantity(text, "x") == pytest.approx(value)


@pytest.mark.parametrize("text", ["", "-5M", "0", "6X", "M", "1.2.3G"])
def test_bad_quantities(text):
    with pytest.raises(PredNASError, match="expected a positive number"):
        parse_quantity(text, "--target-macs")


def test_deltas():
    assert parse_delta("5%", 6e8) == pytest.approx(3e7)
    assert parse_delta("30M", 6e8) == pytest.approx(3e7)
    with pytest.raises(PredNASError, match="percentage"):
        parse_delta("150%", 1.0)


def test_size_spaces_get_the_mlp_predictor():
    for name in ("anynet", "yolox"):
        space = get_space(name)
        net = build_network(space)
        assert isinstance(net, MLPPredictor)
        assert net(torch.rand(4, *space.encoding_shape)).shape == (4,)


def test_triplets_round_trip_and_errors(tmp_path, anynet, fitted):
    records = fitted[0]
    path = write_triplets(tmp_path / "t.jsonl", anynet, records[:5], space="anynet", stage="sample")
    loaded = load_triplets(path, anynet)
    assert [r.arch for r in loaded] == [r.arch for r in records[:5]]
    assert [r.accuracy for r in loaded] == pytest.approx([r.accuracy for r in records[:5]])
    bad = path.read_text().replace('"accuracy": ', '"accuracy": "x", "old": ', 1)
    (tmp_path / "bad.jsonl").write_text(bad)
    with pytest.raises(PredNASError, match=r"bad.jsonl:3: accuracy = 'x': expected a finite number"):
        load_triplets(tmp_path / "bad.jsonl", anynet)
    (tmp_path / "arch.jsonl").write_text(path.read_text().replace('"depths": [', '"depths": [99, ', 1))
    with pytest.raises(PredNASError, match=r"arch.jsonl:3: anynet depths = \[99"):
        load_triplets(tmp_path / "arch.jsonl", anynet)
    (tmp_path / "space.jsonl").write_text(path.read_text().replace('"space": "anynet"', '"space": "yolox"'))
    with pytest.raises(PredNASError, match="triplet of space 'yolox', expected 'anynet'"):
        load_triplets(tmp_path / "space.jsonl", anynet)
    with pytest.raises(PredNASError, match="cannot read triplets file"):
        load_triplets(tmp_path / "missing.jsonl", anynet)


def test_gradient_pool_lies_in_the_window_sorted_and_seeded(anynet, fitted):
    _, main, aux = fitted
    window = CostWindow("macs", 1.6e9, 0.16e9)
    pools = [constrained_search(anynet, main, aux, window, rng=np.random.default_rng(5), config=SMALL,
                                aux_metric="macs") for _ in range(2)]
    pool = pools[0]
    assert len(pool) > 0 and pool.archs == pools[1].archs
    assert all(abs(c["macs"] - 1.6e9) <= 0.16e9 for c in pool.costs)
    assert all(anynet.cost(a) == c for a, c in zip(pool.archs, pool.costs, strict=True))
    assert np.all(np.diff(pool.scores) <= 0)
    assert pool.stats["evaluations"] == 3 * 16 * 30


def _value(term, enc) -> float:
    with torch.no_grad():
        return float(term(enc)[0])


def test_window_penalty_is_zero_inside_the_inner_half_and_squared_outside(anynet, fitted):
    records, _, aux = fitted
    arch = records[0].arch
    enc = torch.tensor(anynet.encode(arch)[None], dtype=torch.float32)
    predicted = float(np.exp(aux.predict_archs([arch])[0]))
    inside = window_penalty(aux, CostWindow("macs", predicted, 0.1 * predicted), "macs")
    assert _value(inside, enc) == 0.0
    above = window_penalty(aux, CostWindow("macs", 2.5 * predicted, 0.5 * predicted), "macs")
    excess = np.log(2.5) - 0.5 * np.log(1.2)
    assert _value(above, enc) == pytest.approx(10 * excess**2, rel=1e-4)
    below = window_penalty(aux, CostWindow("macs", 0.25 * predicted, 0.05 * predicted), "macs")
    assert _value(below, enc) == pytest.approx(10 * (np.log(4.0) - 0.5 * np.log(1.2)) ** 2, rel=1e-4)
    as_flops = window_penalty(aux, CostWindow("flops", 2 * predicted, 0.2 * predicted), "macs")
    assert _value(as_flops, enc) == 0.0  # FLOPs = 2 x MACs
    with pytest.raises(PredNASError, match="penalty 'window' on params needs the auxiliary predictor on params"):
        window_penalty(aux, CostWindow("params", 5e6, 5e5), "macs")


def test_anchored_penalty_reads_the_analytic_cost_at_the_projection(anynet, fitted):
    records, _, aux = fitted
    archs = [r.arch for r in records[:6]]
    enc = torch.tensor(np.stack([anynet.encode(a) for a in archs]), dtype=torch.float32)
    macs = np.array([anynet.cost(a)["macs"] for a in archs])
    target = float(macs[0])
    term = window_penalty(aux, CostWindow("macs", target, 0.05 * target), "macs", anynet)
    term.anchor(archs)
    with torch.no_grad():
        values = term(enc).numpy()
    excess = np.maximum(np.abs(np.log(macs / target)) - 0.5 * np.log(1.05), 0.0)
    assert values == pytest.approx(10 * excess**2, rel=1e-3, abs=1e-6)
    assert values[0] == 0.0
    free = window_penalty(aux, CostWindow("macs", target, 0.05 * target), "macs")
    free.anchor(archs)  # no cost model: the predictor's own estimate stays
    assert free.offset is None


@pytest.mark.parametrize("name", ["anynet", "yolox"])
def test_starts_are_scaled_into_the_window(name):
    space = get_space(name)
    target = 1.6e9 if name == "anynet" else 26.8e9
    window = CostWindow("macs", target, 0.05 * target)
    rng = np.random.default_rng(3)
    starts = window_starts(space, window, rng, 12)
    assert len(starts) == 12 and all(window.contains(space.cost(a)) for a in starts)
    for arch in starts:
        space.check_range(arch)
    arch = space.sample(rng)
    assert space.scale_widths(arch, 1.0) == arch
    assert space.cost(space.scale_widths(arch, 0.5))["macs"] < space.cost(arch)["macs"]
    assert into_window(space, arch, CostWindow("macs", 1e3, 10.0)) is None  # below the smallest network
    unreachable = window_starts(space, CostWindow("macs", 1e3, 10.0), rng, 3, tries=2)
    assert len(unreachable) == 3  # plain random starts fill in


def test_starts_join_the_pool_when_kept(anynet, fitted):
    _, main, _ = fitted
    window = CostWindow("macs", 1.6e9, 0.08e9)
    config = GradientConfig(starts=6, steps=1, lr=1e-6, radius=0.1)
    starts = window_starts(anynet, window, np.random.default_rng(0), 6)
    kept = gradient_search(anynet, main, rng=np.random.default_rng(0), config=replace(config, keep_starts=True),
                           window=window, starts=starts)
    assert set(starts) <= set(kept.archs)
    dropped = gradient_search(anynet, main, rng=np.random.default_rng(0), config=config, window=window,
                              starts=starts)
    assert len(dropped) <= len(kept)


def test_both_penalties_search_and_unknown_ones_are_refused(anynet, fitted):
    _, main, aux = fitted
    window = CostWindow("macs", 1.6e9, 0.16e9)
    pools = {penalty: constrained_search(anynet, main, aux, window, rng=np.random.default_rng(5), aux_metric="macs",
                                         config=ConstrainedConfig(SMALL.gradient, SMALL.alphas, penalty))
             for penalty in ("window", "linear")}
    assert all(len(p) > 0 and all(window.contains(c) for c in p.costs) for p in pools.values())
    assert pools["window"].archs != pools["linear"].archs
    with pytest.raises(PredNASError, match="unknown penalty 'hinge'; expected one of: window, linear"):
        constrained_search(anynet, main, aux, window, rng=np.random.default_rng(5), aux_metric="macs",
                           config=ConstrainedConfig(SMALL.gradient, SMALL.alphas, "hinge"))


class _Spy(AnyNetSpace):
    """Records the range of every relaxed parameter the search feeds the predictors."""

    seen: list[tuple[float, float]]

    def relax(self, theta):
        self.seen.append((float(theta.detach().min()), float(theta.detach().max())))
        return theta


def test_gradient_iterate_stays_in_the_encoding_box(fitted):
    _, main, aux = fitted
    spy = _Spy()
    spy.seen = []
    constrained_search(spy, main, aux, CostWindow("macs", 1e9, 1e8), rng=np.random.default_rng(0),
                       config=ConstrainedConfig(GradientConfig(starts=8, steps=40, lr=0.2), (0.0, 5.0)))
    assert spy.seen and min(lo for lo, _ in spy.seen) >= 0.0 and max(hi for _, hi in spy.seen) <= 1.0


class _Trail(AnyNetSpace):
    """Records every relaxed parameter tensor the search feeds the predictors."""

    trail: list[torch.Tensor]

    def relax(self, theta):
        self.trail.append(theta.detach().clone())
        return theta


def test_radius_keeps_each_iterate_near_its_start(fitted):
    _, main, aux = fitted
    config = ConstrainedConfig(GradientConfig(starts=8, steps=40, lr=0.2, radius=0.05), (0.0, 5.0))
    trail = _Trail()
    trail.trail = []
    constrained_search(trail, main, aux, CostWindow("macs", 1e9, 1e8), rng=np.random.default_rng(0), config=config)
    first, rest = trail.trail[0], trail.trail[1:40]  # the first alpha's trajectory
    moved = max(float((t - first).abs().max()) for t in rest)
    assert 0.04 < moved <= 0.05 + 1e-6
    assert min(float(t.min()) for t in trail.trail) >= 0.0 and max(float(t.max()) for t in trail.trail) <= 1.0


def test_the_search_differentiates_the_iterate_only(fitted):
    """Algorithm 1 needs the gradient of the iterate; the predictors' weight gradients would be a third more work."""
    _, main, aux = fitted
    networks = [*(m.network for m in getattr(main, "members", [main])), aux.network]
    for network in networks:
        network.zero_grad(set_to_none=True)
    constrained_search(get_space("anynet"), main, aux, CostWindow("macs", 1e9, 1e8), rng=np.random.default_rng(0),
                       config=ConstrainedConfig(GradientConfig(starts=8, steps=5), (0.0, 5.0)))
    assert all(p.grad is None for network in networks for p in network.parameters())


@pytest.mark.parametrize("radius", [-0.1, float("nan")])
def test_a_negative_radius_is_refused(anynet, fitted, radius):
    _, main, aux = fitted
    config = ConstrainedConfig(GradientConfig(starts=2, steps=2, radius=radius), (0.0,))
    with pytest.raises(PredNASError, match="search radius must be a non-negative number"):
        constrained_search(anynet, main, aux, CostWindow("macs", 1e9, 1e8), rng=np.random.default_rng(0),
                           config=config)


def test_size_spaces_search_in_a_trust_region_by_default():
    assert ConstrainedConfig().gradient == GradientConfig(starts=7000, steps=20, radius=0.1, keep_starts=True)
    assert ConstrainedConfig().alphas == (1.0,)
    assert ConstrainedConfig().evaluations == 140_000


def test_random_shooting_uses_the_given_budget(anynet, fitted):
    _, main, _ = fitted
    window = CostWindow("macs", 6.4e9, 0.64e9)
    pool = random_shooting(anynet, main, window, rng=np.random.default_rng(1), draws=2000)
    assert pool.stats["evaluations"] == 2000 and pool.stats["visited"] <= 2000
    assert len(pool) > 0 and all(window.contains(c) for c in pool.costs)
    assert np.all(np.diff(pool.scores) <= 0)


def test_yolox_search_under_a_flops_target():
    space = get_space("yolox")
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(12)]
    records = [Measured(a, 30 + np.log(space.cost(a)["flops"]) - a.neck.depths[0]) for a in archs]
    main, aux = fit_predictors(space, records, aux_metric="flops", seed=0, config=FitConfig(epochs=20))
    window = CostWindow("flops", 26.8e9, 2.68e9)
    pool = constrained_search(space, main, aux, window, rng=np.random.default_rng(0),
                              config=ConstrainedConfig(GradientConfig(starts=8, steps=20), (0.0, 1.0, 4.0)))
    assert all(window.contains(c) for c in pool.costs)
    for arch in pool.archs[:3]:
        space.check_range(arch)


def test_latency_target_uses_the_latency_predictor(anynet, fitted):
    records = [Measured(r.arch, r.accuracy, {"latency_ms": anynet.cost(r.arch)["macs"] / 1e8}) for r in fitted[0]]
    main, aux = fit_predictors(anynet, records, aux_metric="latency_ms", seed=0, config=FAST_FIT)
    window = CostWindow("latency_ms", 20.0, 5.0)
    pool = constrained_search(anynet, main, aux, window, rng=np.random.default_rng(0), config=SMALL,
                              aux_metric="latency_ms")
    assert all(15.0 <= c["latency_ms"] <= 25.0 for c in pool.costs)
    with pytest.raises(PredNASError, match="latency_ms target needs the auxiliary predictor on latency_ms"):
        constrained_search(anynet, main, aux, window, rng=np.random.default_rng(0), config=SMALL, aux_metric="macs")
    with pytest.raises(PredNASError, match="positive 'latency_ms' on every line"):
        fit_predictors(anynet, fitted[0], aux_metric="latency_ms", seed=0, config=FAST_FIT)


def test_cli_cost_json_is_one_object():
    result = CliRunner().invoke(cli, ["cost", "--space", "anynet", "--arch", "regnet_x_400mf", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"macs": 413_812_608, "flops": 827_625_216, "params": 5_495_976}
    arch = json.dumps(get_space("yolox").to_dict(get_space("yolox").preset("yolox_s")))
    result = CliRunner().invoke(cli, ["cost", "--space", "yolox", "--arch", arch, "--input-size", "320", "--json"])
    assert json.loads(result.output)["flops"] * 4 == 26_685_542_400


@pytest.mark.parametrize(("args", "message"), [
    (["cost", "--space", "anynet", "--arch", "regnet_x_600mf"], "expected a anynet preset"),
    (["cost", "--space", "anynet", "--arch", '{"depths": [1, 1, 1, 1]}'], "missing field 'widths'"),
    (["cost", "--space", "yolox", "--arch", "yolox_s", "--input-size", "630"], "input_size = 630"),
    (["cost", "--space", "anynet", "--arch", "{nope"], "not valid JSON"),
])
def test_cli_errors_are_one_line_exit_2(args, message):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert message in result.output and result.output.count("\n") == 1


def test_cli_presets_lists_every_name():
    result = CliRunner().invoke(cli, ["presets", "--space", "anynet"], env={"COLUMNS": "160"})
    assert result.exit_code == 0
    for name in ("regnet_x_400mf", "regnet_x_800mf", "regnet_x_1_6gf", "regnet_x_3_2gf", "regnet_x_8gf",
                 "regnet_x_16gf", "regnet_x_32gf"):
        assert name in result.output


def test_cli_search_prints_the_pool(tmp_path, anynet, fitted):
    path = write_triplets(tmp_path / "t.jsonl", anynet, fitted[0])
    out = tmp_path / "pool.json"
    args = ["search", "--space", "anynet", "--triplets", str(path), "--target-macs", "1.6G", "--delta", "10%",
            "-k", "3", "--starts", "8", "--steps", "20", "--alphas", "0,1", "--epochs", "20", "--json", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "with macs in [1.440 G, 1.760 G]" in lines[0] and "320 predictor evaluations" in lines[0]
    report = json.loads(out.read_text())
    assert len(lines) == 1 + min(3, len(report["pool"]))
    for row in report["pool"]:
        assert 1.44e9 <= row["cost"]["macs"] <= 1.76e9
        anynet.from_dict(row["arch"])


def test_latency_is_measured_on_the_device(anynet):
    from prednas.models.counting import measure_latency_ms

    model = anynet.build(anynet.preset("regnet_x_400mf"))
    ms = measure_latency_ms(model, 64, device="cpu", warmup=1, repeats=3)
    assert 0 < ms < 60_000


def test_main_predictor_ensemble_averages_its_members_and_round_trips(anynet, fitted):
    records, single, aux = fitted
    main, _ = fit_predictors(anynet, records, aux_metric="macs", seed=0, config=FAST_FIT, members=3, aux_samples=0)
    assert isinstance(main, Ensemble) and len(main.members) == 3
    archs = [r.arch for r in records[:6]]
    np.testing.assert_allclose(main.members[0].predict_archs(archs), single.predict_archs(archs))  # member 0 = one fit
    np.testing.assert_allclose(main.predict_archs(archs), np.mean([m.predict_archs(archs) for m in main.members], 0))
    assert not np.allclose(main.members[1].predict_archs(archs), single.predict_archs(archs))
    again = Predictor.from_bytes(anynet, main.state_bytes())
    assert isinstance(again, Ensemble)
    np.testing.assert_allclose(again.predict_archs(archs), main.predict_archs(archs), rtol=1e-6)
    window = CostWindow("macs", 1.6e9, 0.1 * 1.6e9)
    pool = constrained_search(anynet, again, aux, window, rng=np.random.default_rng(0), aux_metric="macs",
                              config=ConstrainedConfig(replace(GradientConfig(starts=8, steps=5), keep_starts=True),
                                                       (1.0,)))
    assert len(pool) and all(window.contains(c) for c in pool.costs)
    np.testing.assert_allclose(pool.scores, again.predict_archs(pool.archs), rtol=1e-6)


@pytest.mark.parametrize("members", [0, -1, 1.5, True])
def test_an_ensemble_needs_a_positive_member_count(anynet, fitted, members):
    x = np.stack([anynet.encode(r.arch) for r in fitted[0]])
    with pytest.raises(PredNASError, match=f"predictor members must be a positive integer, got {members!r}"):
        fit_ensemble(anynet, x, np.arange(len(x), dtype=float), seed=0, members=members, config=FAST_FIT)


def test_size_spaces_fit_an_ensemble_by_default(anynet):
    from prednas.pipeline.fitting import ensemble_size

    assert ensemble_size({}, anynet) == 3 and ensemble_size({}, get_space("yolox")) == 3
    assert ensemble_size({}, get_space("nb201")) == 1 and ensemble_size({"members": 5}, anynet) == 5


def test_cli_search_defaults_keep_the_budget():
    from prednas.cli.spaces import size_config

    window = size_config(None, 20, 0.1, None, "window")
    assert window.alphas == (1.0,) and window.gradient.starts == 7000 and window.evaluations == 140_000
    linear = size_config(None, 20, 0.1, None, "linear")
    assert linear.alphas == (0.0, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0) and linear.evaluations == 140_000
    assert size_config(50, 10, 0, "0,1", "window").gradient.radius is None
    with pytest.raises(PredNASError, match="--alphas ','"):
        size_config(None, 20, 0.1, ",", "window")
