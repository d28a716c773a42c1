"""AnyNet space: RegNetX presets against torchvision, exact analytic cost, projection, bad input.

``tests/golden/anynet_presets.json`` holds each preset's MACs/FLOPs/params at 224 px with
1000 classes as counted by ``torch.utils.flop_counter`` on the built network, and
torchvision's parameter count for the RegNetX models (``torchvision.models.regnet_x_*``,
``weights=None``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prednas.errors import PredNASError
from prednas.models.counting import count_cost
from prednas.spaces import get_space
from prednas.spaces.anynet import PRESETS, AnyNetArch, anynet_cost, build, counted_cost, nearest_group, preset

GOLDEN = json.loads((Path(__file__).parent / "golden" / "anynet_presets.json").read_text())
REGNETS = [name for name in PRESETS if name.startswith("regnet_x_")]


@pytest.fixture(scope="module")
def space():
    return get_space("anynet")


def test_golden_covers_every_preset():
    assert sorted(GOLDEN) == sorted(PRESETS)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_cost_is_golden_and_counted(name):
    arch = preset(name)
    expected = {k: GOLDEN[name][k] for k in ("macs", "flops", "params")}
    assert anynet_cost(arch, 224, 1000) == expected
    assert counted_cost(arch, 224, 1000) == expected


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_within_one_percent_of_published(name):
    macs = anynet_cost(preset(name))["macs"]
    assert abs(macs / (PRESETS[name]["gmacs"] * 1e9) - 1) < 0.01
    if PRESETS[name]["params"] is not None:
        assert anynet_cost(preset(name))["params"] == PRESETS[name]["params"]


@pytest.mark.parametrize("name", REGNETS)
def test_regnet_preset_equals_torchvision_params_and_published_ops(name):
    import torchvision

    weights = torchvision.models.get_model_weights(name).IMAGENET1K_V1
    assert GOLDEN[name]["params"] == GOLDEN[name]["torchvision_params"] == weights.meta["num_params"]
    assert abs(GOLDEN[name]["macs"] / (weights.meta["_ops"] * 1e9) - 1) < 0.01


@pytest.mark.parametrize("name", REGNETS)
def test_regnet_counts_equal_a_live_torchvision_model(name):
    import torchvision

    reference = torchvision.models.get_model(name, weights=None).to("meta")
    assert count_cost(reference, 224) == {k: GOLDEN[name][k] for k in ("macs", "flops", "params")}


def test_network_runs_and_learns_shape(space):
    torch.manual_seed(0)
    model = build(preset("regnet_x_400mf"), num_classes=10)
    out = model(torch.randn(2, 3, 64, 64))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.sum().backward()


def test_cost_at_other_sizes_matches_counter():
    arch = preset("prednas_600mf")
    for size, classes in ((32, 10), (97, 100), (160, 1000)):
        assert anynet_cost(arch, size, classes) == counted_cost(arch, size, classes)


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(-0.5, 1.5, allow_nan=False), min_size=16, max_size=16))
def test_projection_always_builds_in_range(space, values):
    arch = space.project(np.array(values, dtype=np.float32))
    space.check_range(arch)
    assert space.from_dict(json.loads(json.dumps(space.to_dict(arch)))) == arch
    assert space.project(space.param(arch)) == arch
    assert anynet_cost(arch, 64, 10) == counted_cost(arch, 64, 10)


def test_sample_is_seeded_in_range_and_round_trips(space):
    a = [space.sample(np.random.default_rng(3)) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(0)
    for _ in range(300):
        arch = space.sample(rng)
        space.check_range(arch)
        x = space.encode(arch)
        assert x.shape == space.encoding_shape and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
        assert space.project(space.param(arch)) == arch
        assert hash(arch) == hash(space.from_dict(space.to_dict(arch)))


def test_groups_snap_to_the_nearest_divisor():
    assert nearest_group(400, 22.4, 1, 32) == 20
    assert nearest_group(400, 22.6, 1, 32) == 25
    assert nearest_group(6, 31.0, 1, 32) == 6
    assert nearest_group(13 * 8, 12.0, 1, 32) == 13


def test_space_size_and_enumeration(space):
    assert space.size() is None
    assert 1e18 < space.cardinality() < 1e19  # paper Table I: about 10^18
    with pytest.raises(PredNASError, match="cannot be enumerated"):
        next(iter(space.enumerate()))


def test_relax_is_identity_and_differentiable(space):
    theta = torch.rand(3, 16, requires_grad=True)
    assert space.relax(theta) is theta


GOOD = {"depths": [1, 2, 7, 12], "widths": [32, 64, 160, 400], "ratios": [1, 1, 1, 1], "groups": [2, 4, 10, 25]}


@pytest.mark.parametrize(("change", "message"), [
    ({"depths": [0, 2, 7, 12]}, r"depths\[0\] = 0: expected an integer in 1..64"),
    ({"depths": [1, 2, 7.5, 12]}, r"depths\[2\] = 7.5: expected an integer"),
    ({"widths": [32, 64, 160, 9000]}, r"widths\[3\] = 9000: expected an integer in 8..8192"),
    ({"widths": [32, 66, 160, 400], "ratios": [1, 0.25, 1, 1]}, r"widths\[1\] = 66: expected a multiple of 4"),
    ({"ratios": [1, 1, 0.3, 1]}, r"ratios\[2\] = 0.3: expected one of 0.25, 0.5, 1"),
    ({"groups": [2, 4, 10, 7]}, r"groups\[3\] = 7: expected a divisor of the bottleneck width 400"),
    ({"groups": [2, 4, 10, "a"]}, r"groups\[3\] = 'a'"),
    ({"depths": [1, 2, 7]}, r"depths = \[1, 2, 7\]: expected a list of 4 numbers"),
    ({"depths": None}, r"missing field 'depths'"),
    ({"width": [1]}, r"unknown field 'width'"),
])
def test_bad_architectures_name_the_field(space, change, message):
    data = {**GOOD, **change}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(PredNASError, match=message) as info:
        space.from_dict(data)
    assert "\n" not in str(info.value)


def test_search_range_names_the_field(space):
    with pytest.raises(PredNASError, match=r"widths\[3\] = 1920: expected a multiple of 8 in 24..1024"):
        space.check_range(preset("regnet_x_8gf"))
    with pytest.raises(PredNASError, match=r"groups\[1\] = 37: expected an integer in 1..32"):
        space.check_range(preset("prednas_6_4gf"))
    with pytest.raises(PredNASError, match=r"widths\[0\] = 28: expected a multiple of 8 in 24..1024"):
        space.check_range(space.from_dict({**GOOD, "widths": [28, 64, 160, 400], "groups": [1, 4, 10, 25]}))
    assert space.check_range(preset("regnet_x_400mf")) == preset("regnet_x_400mf")


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(PredNASError, match="unknown anynet preset 'regnet_x_600mf'; expected one of: regnet_x_400mf"):
        preset("regnet_x_600mf")


def test_architectures_are_hashable_values():
    a = AnyNetArch((1, 1, 1, 1), (24, 24, 24, 24), (1.0, 1.0, 1.0, 1.0), (1, 1, 1, 1))
    b = AnyNetArch((1, 1, 1, 1), (24, 24, 24, 24), (1.0, 1.0, 1.0, 1.0), (1, 1, 1, 1))
    assert a == b and len({a, b}) == 1
    with pytest.raises(PredNASError, match="groups"):
        AnyNetArch((1, 1, 1, 1), (24, 24, 24, 24), (1.0, 1.0, 1.0, 1.0), (1, 1, 1, 5))
    assert math.isclose(anynet_cost(a)["flops"], 2 * anynet_cost(a)["macs"])


def test_a_wider_search_range_as_in_the_appendix():
    from prednas.spaces.anynet import AnyNetRanges, AnyNetSpace

    wide = AnyNetSpace(AnyNetRanges(depth=(1, 20), width=(24, 2048), groups=(1, 64)))
    rng = np.random.default_rng(0)
    archs = [wide.sample(rng) for _ in range(200)]
    assert max(max(a.widths) for a in archs) > 1024
    for arch in archs:
        assert wide.project(wide.param(arch)) == wide.check_range(arch)
    wide.check_range(preset("prednas_8gf"))
    with pytest.raises(PredNASError, match="invalid anynet search range"):
        AnyNetRanges(width=(24, 1020))
