"""YOLOX space: presets against YOLOX's published figures, exact analytic cost, the detector's outputs.

``tests/golden/yolox_presets.json`` holds each preset's MACs/FLOPs/params (80 classes, at
the preset's input size) as counted by ``torch.utils.flop_counter`` on the built network.
"""

from __future__ import annotations

import json
from itertools import cycle, islice
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from prednas.errors import PredNASError
from prednas.models.yolox import decode_outputs, postprocess
from prednas.spaces import get_space
from prednas.spaces.yolox import PRESETS, build, counted_cost, make, preset, yolox_cost

GOLDEN = json.loads((Path(__file__).parent / "golden" / "yolox_presets.json").read_text())
YOLOX = [name for name in PRESETS if name.startswith("yolox_")]


@pytest.fixture(scope="module")
def space():
    return get_space("yolox")


def small_arch():
    """A few-channel detector for fast forward passes."""
    heads = [([16], [8, 16], [16]), ([16, 8], [8], [8, 8]), ([8], [16], [8])]
    return make(8, ([1, 1, 2, 1], [16, 16, 24, 32], [0.5, 1.0, 0.25, 0.5]),
                ([1, 2, 1, 1], [16, 8, 16, 24], [0.5, 0.5, 1.0, 0.25]), heads)


def test_golden_covers_every_preset():
    assert sorted(GOLDEN) == sorted(PRESETS)


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_cost_is_golden_and_counted(name):
    arch, size = preset(name), GOLDEN[name]["input_size"]
    expected = {k: GOLDEN[name][k] for k in ("macs", "flops", "params")}
    assert yolox_cost(arch, size, 80) == expected
    assert counted_cost(arch, size, 80) == expected


@pytest.mark.parametrize("name", YOLOX)
def test_yolox_presets_within_one_percent_of_published(name):
    cost = GOLDEN[name]
    assert abs(cost["flops"] / (PRESETS[name]["gflops"] * 1e9) - 1) < 0.01
    assert abs(cost["params"] / (PRESETS[name]["mparams"] * 1e6) - 1) < 0.01


def test_yolox_s_m_l_and_table_vii_lie_in_the_search_range(space):
    for name in ("yolox_s", "yolox_m", "yolox_l", "prednas_s"):
        space.check_range(preset(name))
    with pytest.raises(PredNASError, match=r"neck.depths\[0\] = 4: expected an integer in 1..3"):
        space.check_range(preset("yolox_x"))


def _table_x(stem, backbone, neck, depths, widths):
    """A Table X row; its head columns are garbled in the paper, so head widths are its printed values in order."""
    values = cycle(widths)
    heads = [tuple(list(islice(values, depths[p][level])) for p in range(3)) for level in range(3)]
    return make(stem, backbone, neck, heads)


def test_table_x_models_are_expressible(space):
    m = _table_x(48, ([3, 8, 6, 2], [96, 192, 384, 768], [0.25, 0.25, 0.5, 0.25]),
                 ([2, 2, 3, 2], [384, 192, 640, 768], [0.5, 0.25, 0.25, 0.25]),
                 ([3, 1, 3], [2, 2, 2], [2, 2, 3]), [192, 248, 192, 192, 240, 232, 208])
    big = _table_x(48, ([12, 12, 11, 10], [120, 240, 384, 960], [0.5] * 4),
                   ([3, 2, 2, 3], [384, 568, 640, 768], [0.25, 0.25, 0.5, 0.25]),
                   ([3, 1, 3], [3, 2, 3], [2, 3, 2]), [192, 208, 192, 256, 192, 256, 192])
    for arch in (m, big):
        space.check_range(arch)
    s_dagger = _table_x(8, ([1, 1, 1, 6], [48, 96, 256, 336], [0.25, 0.5, 0.25, 0.25]),
                        ([1, 2, 3, 3], [688, 288, 788, 472], [0.25, 0.25, 0.25, 1]),
                        ([1, 1, 1], [1, 1, 3], [2, 2, 4]), [32, 128, 96, 248, 224, 64, 232, 80, 112, 144])
    m_dagger = _table_x(64, ([1, 1, 10, 2], [96, 216, 512, 664], [0.5, 0.5, 0.25, 0.5]),
                        ([1, 3, 3, 1], [752, 128, 1024, 976], [0.25, 0.5, 0.5, 1]),
                        ([1, 1, 3], [1, 1, 4], [1, 4, 4]), [32, 92, 488, 312, 160, 34, 328, 232])
    with pytest.raises(PredNASError, match=r"neck.widths\[2\] = 788: expected a multiple of 8"):
        space.check_range(s_dagger)
    with pytest.raises(PredNASError, match=r"heads\[0\].cls\[0\] = 92: expected a multiple of 8"):
        space.check_range(m_dagger)
    for arch in (m, big, s_dagger, m_dagger):
        assert yolox_cost(arch, 64) == counted_cost(arch, 64)


def test_detector_training_output_is_raw_per_level_maps():
    torch.manual_seed(0)
    model = build(small_arch(), num_classes=3).train()
    outputs = model(torch.randn(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outputs] == [(2, 8, 8, 12), (2, 8, 4, 6), (2, 8, 2, 3)]
    assert model.strides == (8, 16, 32)
    sum(o.sum() for o in outputs).backward()


def test_detector_eval_output_is_boxes_scores_labels():
    torch.manual_seed(0)
    model = build(small_arch(), num_classes=3).eval()
    model.score_threshold = 0.0  # an untrained head scores about 0.01 x 0.01
    with torch.no_grad():
        found = model(torch.rand(2, 3, 64, 64))
    assert len(found) == 2
    for det in found:
        assert set(det) == {"boxes", "scores", "labels"}
        n = len(det["scores"])
        assert det["boxes"].shape == (n, 4) and det["labels"].dtype == torch.int64 and 0 < n <= 100
        assert (det["boxes"][:, 2:] >= det["boxes"][:, :2]).all()
        assert torch.all(det["scores"][:-1] >= det["scores"][1:])


def test_detector_refuses_sizes_not_multiple_of_32():
    model = build(small_arch(), num_classes=3)
    with pytest.raises(PredNASError, match="multiples of 32"):
        model(torch.zeros(1, 3, 48, 64))


def test_decode_places_boxes_on_the_grid():
    raw = [torch.zeros(1, 6, 2, 2), torch.zeros(1, 6, 1, 1)]
    decoded = decode_outputs(raw, strides=(8, 16))
    assert decoded.shape == (1, 5, 6)
    assert decoded[0, :, :2].tolist() == [[0, 0], [8, 0], [0, 8], [8, 8], [0, 0]]
    assert decoded[0, :, 2:4].tolist() == [[8, 8]] * 4 + [[16, 16]]
    assert torch.allclose(decoded[0, :, 4:], torch.full((5, 2), 0.5))


def test_postprocess_suppresses_overlaps_within_a_class_only():
    rows = torch.tensor([[50.0, 50, 20, 20, 0.9, 0.9, 0.1], [51, 50, 20, 20, 0.8, 0.9, 0.1],
                         [51, 50, 20, 20, 0.8, 0.1, 0.9], [5, 5, 4, 4, 0.001, 0.9, 0.1]])
    (det,) = postprocess(rows[None], score_threshold=0.01, nms_threshold=0.65)
    assert det["labels"].tolist() == [0, 1]
    assert torch.allclose(det["boxes"][0], torch.tensor([40.0, 40, 60, 60]))
    assert torch.allclose(det["scores"], torch.tensor([0.81, 0.72]))


@settings(max_examples=15, deadline=None)
@given(st.lists(st.floats(-0.5, 1.5, allow_nan=False), min_size=70, max_size=70))
def test_projection_always_builds_in_range(space, values):
    arch = space.project(np.array(values, dtype=np.float32))
    space.check_range(arch)
    assert space.from_dict(json.loads(json.dumps(space.to_dict(arch)))) == arch
    assert space.project(space.param(arch)) == arch
    assert yolox_cost(arch, 64, 5) == counted_cost(arch, 64, 5)


def test_sample_is_seeded_in_range_and_round_trips(space):
    assert space.sample(np.random.default_rng(3)) == space.sample(np.random.default_rng(3))
    rng = np.random.default_rng(0)
    for _ in range(200):
        arch = space.sample(rng)
        space.check_range(arch)
        x = space.encode(arch)
        assert x.shape == (70,) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
        assert space.project(space.param(arch)) == arch
    assert space.size() is None


GOOD = PRESETS["yolox_s"]


def _bad(**change):
    data = json.loads(json.dumps(get_space("yolox").to_dict(preset("yolox_s"))))
    for path, value in change.items():
        *keys, last = path.split("__")
        node = data
        for key in keys:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is None:
            del node[last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return data


@pytest.mark.parametrize(("data", "message"), [
    (_bad(stem=4), r"stem = 4: expected an integer in 8..8192"),
    (_bad(backbone__depths__1=0), r"backbone.depths\[1\] = 0: expected an integer in 1..64"),
    (_bad(neck__widths__3=100.5), r"neck.widths\[3\] = 100.5: expected an integer"),
    (_bad(neck__ratios__0=0.75), r"neck.ratios\[0\] = 0.75: expected one of 0.25, 0.5, 1"),
    (_bad(heads__2__cls=[]), r"heads\[2\].cls = \[\]: expected a list of 1..8 numbers"),
    (_bad(heads__0__reg__1=0), r"heads\[0\].reg\[1\] = 0: expected an integer in 8..8192"),
    (_bad(heads__1__box=[8]), r"unknown field 'box'"),
    (_bad(neck=None), r"missing field 'neck'"),
    (_bad(backbone__ratios=None), r"missing field 'ratios'"),
])
def test_bad_architectures_name_the_field(space, data, message):
    with pytest.raises(PredNASError, match=message) as info:
        space.from_dict(data)
    assert "\n" not in str(info.value)


def test_bad_input_size_and_unknown_preset():
    with pytest.raises(PredNASError, match=r"input_size = 600: expected a multiple of 32 in 32..8192"):
        yolox_cost(preset("yolox_s"), 600)
    with pytest.raises(PredNASError, match="unknown yolox preset 'yolox_xl'; expected one of: yolox_tiny"):
        preset("yolox_xl")
