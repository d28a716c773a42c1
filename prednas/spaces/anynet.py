"""AnyNetX size space (paper Sec. IV-B, Table III; Radosavovic et al. 2020).

An architecture is 4 stages of X blocks, each with a depth ``D``, a width ``W``, a
bottleneck ratio ``R`` and a number of groups ``G`` of its 3x3 convolution (so the group
width is ``W x R / G``). The network is ``prednas.models.anynet.AnyNetX`` (stem 32, all
stages stride 2); ``build(arch, num_classes)`` returns it.

Two ranges, kept apart on purpose:

- the *search range* (``AnyNetRanges``, default paper Table III): D in 1..16, W a multiple
  of 8 in 24..1024, R in {0.25, 0.5, 1}, G in 1..32 dividing ``W x R``. ``sample`` and
  ``project`` stay inside it; ``check_range`` says why an architecture is outside.
- the *structural range*: every value of ``AnyNetArch`` builds: D in 1..64, W in 8..8192
  with ``W x R`` an integer, G any divisor of ``W x R``. torchvision's RegNetX models (widths
  up to 2520, up to 42 groups) and the paper's appendix models (Table IX: width 1316,
  depth 19, 46 groups; "we increase the upper bound of search space") are such values, so
  presets and user architectures are validated here, not against the search range.

Encoding and gradient parameter: the 16 numbers ``D1..4, W1..4, R1..4, G1..4`` mapped
linearly onto 0..1 over the search range (R by its index among the ratios). ``relax`` is
the identity; ``project`` rounds and clips every value into the search range and replaces
G by the divisor of ``W x R`` nearest to it (paper Table IX note), so it always builds.
``sample`` draws D, W and R uniformly, then G uniformly among the valid divisors.

Cost (``anynet_cost``) is analytic and exact: it equals what ``torch.utils.flop_counter``
measures on the built network (convolution and classifier multiply-adds; RegNet's "MF"
are these MACs) and its parameter count.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from prednas.errors import PredNASError
from prednas.spaces.fields import (
    as_number,
    check_choice,
    check_int,
    check_keys,
    fail,
    float_array,
    from_unit,
    get_list,
    snap,
    unit,
)

SPACE = "anynet"
STAGES = 4
STEM_WIDTH = 32
RATIOS: tuple[float, ...] = (0.25, 0.5, 1.0)
MAX_DEPTH = 64
WIDTH_LIMITS = (8, 8192)
FIELDS = ("depths", "widths", "ratios", "groups")


@dataclass(frozen=True)
class AnyNetArch:
    """Per-stage depth, width, bottleneck ratio and group count; always buildable."""

    depths: tuple[int, ...]
    widths: tuple[int, ...]
    ratios: tuple[float, ...]
    groups: tuple[int, ...]

    def __post_init__(self) -> None:
        for key in FIELDS:
            get_list(SPACE, {key: getattr(self, key)}, key, STAGES)
        for i in range(STAGES):
            check_int(SPACE, f"depths[{i}]", self.depths[i], 1, MAX_DEPTH)
            check_int(SPACE, f"widths[{i}]", self.widths[i], *WIDTH_LIMITS)
            ratio = check_choice(SPACE, f"ratios[{i}]", self.ratios[i], RATIOS)
            if not (self.widths[i] * ratio).is_integer():
                fail(SPACE, f"widths[{i}]", self.widths[i],
                     f"a multiple of {round(1 / ratio)} so that widths[{i}] x ratios[{i}] ({ratio:g}) is an integer")
            w_b = int(self.widths[i] * ratio)
            if check_int(SPACE, f"groups[{i}]", self.groups[i], 1, w_b) and w_b % self.groups[i]:
                fail(SPACE, f"groups[{i}]", self.groups[i],
                     f"a divisor of the bottleneck width {w_b} (widths[{i}] x ratios[{i}]): "
                     f"{', '.join(map(str, divisors(w_b)))}")

    @property
    def bottlenecks(self) -> tuple[int, ...]:
        """Bottleneck width ``W x R`` of each stage."""
        return tuple(int(w * r) for w, r in zip(self.widths, self.ratios, strict=True))

    @property
    def group_widths(self) -> tuple[int, ...]:
        """Channels per group of each stage's 3x3 convolution."""
        return tuple(b // g for b, g in zip(self.bottlenecks, self.groups, strict=True))


def make_arch(depths: Any, widths: Any, ratios: Any, groups: Any) -> AnyNetArch:
    """An architecture from four 4-item sequences (integral floats become ints); checked."""
    values = []
    for key, items in zip(FIELDS, (depths, widths, ratios, groups), strict=True):
        items = get_list(SPACE, {key: items}, key, STAGES)
        values.append(tuple(as_number(v, integral=key != "ratios") for v in items))
    return AnyNetArch(*values)


@functools.lru_cache(maxsize=4096)
def divisors(n: int) -> tuple[int, ...]:
    """Positive divisors of ``n``, ascending."""
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return tuple(sorted(set(small + [n // d for d in small])))


@functools.lru_cache(maxsize=4096)
def _divisors_in(n: int, lo: int, hi: int) -> tuple[int, ...]:
    return tuple(d for d in divisors(n) if lo <= d <= hi) or (1,)


def nearest_group(w_b: int, g: float, lo: int, hi: int) -> int:
    """The divisor of ``w_b`` in ``lo..hi`` nearest to ``g`` (the smaller on a tie)."""
    return min(_divisors_in(w_b, lo, hi), key=lambda d: (abs(d - g), d))


@dataclass(frozen=True)
class AnyNetRanges:
    """Where the search samples and projects; the default is paper Table III."""

    depth: tuple[int, int] = (1, 16)
    width: tuple[int, int] = (24, 1024)
    width_step: int = 8
    groups: tuple[int, int] = (1, 32)

    def __post_init__(self) -> None:
        (d_lo, d_hi), (w_lo, w_hi), (g_lo, g_hi), step = self.depth, self.width, self.groups, self.width_step
        ok = (1 <= d_lo <= d_hi <= MAX_DEPTH and step % 4 == 0 and WIDTH_LIMITS[0] <= w_lo <= w_hi <= WIDTH_LIMITS[1]
              and w_lo % step == 0 and w_hi % step == 0 and 1 <= g_lo <= g_hi)
        if not ok:
            raise PredNASError(f"invalid {SPACE} search range {self}; expected 1 <= depth <= {MAX_DEPTH}, widths "
                               f"multiples of a width_step divisible by 4 within {WIDTH_LIMITS}, 1 <= groups")


TABLE_III = AnyNetRanges()


def anynet_cost(arch: AnyNetArch, input_size: int = 224, num_classes: int = 1000) -> dict[str, int]:
    """Exact MACs, FLOPs (2 x MACs) and params of ``build(arch, num_classes)`` on one image."""
    h = (input_size + 1) // 2  # 3x3 stride-2 stem, padding 1
    macs = h * h * STEM_WIDTH * 27
    params = 27 * STEM_WIDTH + 2 * STEM_WIDTH
    w_in = STEM_WIDTH
    for d, w, b, g in zip(arch.depths, arch.widths, arch.bottlenecks, arch.groups, strict=True):
        h_out = (h + 1) // 2
        conv3 = 9 * b * (b // g)
        # first block: 1x1 at the input resolution, strided 3x3, 1x1, projection shortcut
        macs += h * h * w_in * b + h_out * h_out * (conv3 + b * w + w_in * w)
        params += w_in * b + conv3 + b * w + w_in * w + 2 * (b + b + w + w)
        # the d - 1 identical blocks that follow
        macs += (d - 1) * h_out * h_out * (w * b + conv3 + b * w)
        params += (d - 1) * (w * b + conv3 + b * w + 2 * (b + b + w))
        h, w_in = h_out, w
    macs += w_in * num_classes
    params += w_in * num_classes + num_classes
    return {"macs": macs, "flops": 2 * macs, "params": params}


def build(arch: AnyNetArch, num_classes: int = 1000) -> Any:
    """The AnyNetX network of ``arch`` (``prednas.models.anynet.AnyNetX``), freshly initialised.

    Input: ``(B, 3, H, W)`` images, any size; output: ``(B, num_classes)`` logits.
    """
    from prednas.models.anynet import AnyNetX

    check_int(SPACE, "num_classes", num_classes, 1, 2**31)
    return AnyNetX(arch.depths, arch.widths, arch.bottlenecks, arch.groups, num_classes=num_classes,
                   stem_width=STEM_WIDTH)


def counted_cost(arch: AnyNetArch, input_size: int = 224, num_classes: int = 1000) -> dict[str, int]:
    """Cost measured by building ``arch`` on the meta device and running ``flop_counter``."""
    from prednas.models.counting import counted_cost as count

    return count(lambda: build(arch, num_classes), input_size)


# Presets are data. RegNetX: torchvision's configurations (BlockParams.from_init_params of
# each ``regnet_x_*``, bottleneck ratio 1; groups = width / group width) with the published
# GFLOPS (multiply-adds, torchvision's ``_ops``) and parameter counts.
_P = "torchvision regnet_x_{}"
PRESETS: dict[str, dict[str, Any]] = {
    "regnet_x_400mf": dict(depths=[1, 2, 7, 12], widths=[32, 64, 160, 400], groups=[2, 4, 10, 25],
                           gmacs=0.414, params=5_495_976, source=_P.format("400mf")),
    "regnet_x_800mf": dict(depths=[1, 3, 7, 5], widths=[64, 128, 288, 672], groups=[4, 8, 18, 42],
                           gmacs=0.800, params=7_259_656, source=_P.format("800mf")),
    "regnet_x_1_6gf": dict(depths=[2, 4, 10, 2], widths=[72, 168, 408, 912], groups=[3, 7, 17, 38],
                           gmacs=1.603, params=9_190_136, source=_P.format("1_6gf")),
    "regnet_x_3_2gf": dict(depths=[2, 6, 15, 2], widths=[96, 192, 432, 1008], groups=[2, 4, 9, 21],
                           gmacs=3.177, params=15_296_552, source=_P.format("3_2gf")),
    "regnet_x_8gf": dict(depths=[2, 5, 15, 1], widths=[80, 240, 720, 1920], groups=[1, 2, 6, 16],
                         gmacs=7.995, params=39_572_648, source=_P.format("8gf")),
    "regnet_x_16gf": dict(depths=[2, 6, 13, 1], widths=[256, 512, 896, 2048], groups=[2, 4, 7, 16],
                          gmacs=15.941, params=54_278_536, source=_P.format("16gf")),
    "regnet_x_32gf": dict(depths=[2, 7, 13, 1], widths=[336, 672, 1344, 2520], groups=[2, 4, 8, 15],
                          gmacs=31.736, params=107_811_560, source=_P.format("32gf")),
}
# The paper's searched models (Table IX, PredNAS rows; Table III repeats 600MF with a
# group count that cannot divide, 22, where Table IX has 32) with their printed GFLOPS.
# PredNAS-12GF is left out: its printed group width (160) contradicts its width and groups
# (720 x 0.5 / 2 = 180) and its cost (10.9 GF here) is 8% off the printed 11.8.
_T9 = "paper Table IX"
PRESETS.update({
    "prednas_200mf": dict(depths=[5, 2, 16, 1], widths=[24, 32, 96, 1600], ratios=[1, 1, 1, 0.25],
                          groups=[3, 1, 12, 16], gmacs=0.22, params=None, source=_T9),
    "prednas_400mf": dict(depths=[4, 2, 10, 8], widths=[64, 232, 64, 760], ratios=[0.5, 0.25, 1, 0.5],
                          groups=[8, 29, 32, 38], gmacs=0.41, params=None, source=_T9),
    "prednas_600mf": dict(depths=[3, 3, 6, 12], widths=[64, 152, 256, 1024], ratios=[0.5, 0.5, 0.5, 0.25],
                          groups=[2, 19, 32, 32], gmacs=0.61, params=None, source=_T9),
    "prednas_800mf": dict(depths=[6, 3, 13, 2], widths=[96, 168, 168, 1048], ratios=[0.25, 0.5, 1, 1],
                          groups=[8, 4, 28, 8], gmacs=0.77, params=None, source=_T9),
    "prednas_1_6gf": dict(depths=[4, 1, 8, 11], widths=[128, 240, 472, 968], ratios=[0.5, 0.5, 0.5, 0.5],
                          groups=[8, 10, 4, 11], gmacs=1.64, params=None, source=_T9),
    "prednas_3_2gf": dict(depths=[5, 1, 14, 13], widths=[128, 128, 496, 1144], ratios=[0.5, 0.5, 0.5, 1],
                          groups=[32, 16, 31, 26], gmacs=3.1, params=None, source=_T9),
    "prednas_4gf": dict(depths=[13, 5, 14, 1], widths=[128, 128, 992, 1024], ratios=[0.5, 0.5, 0.5, 1],
                        groups=[32, 16, 31, 4], gmacs=4.1, params=None, source=_T9),
    "prednas_6_4gf": dict(depths=[12, 2, 17, 1], widths=[184, 296, 1240, 1316], ratios=[0.5, 0.5, 0.25, 1],
                          groups=[4, 37, 10, 1], gmacs=6.4, params=None, source=_T9),
    "prednas_8gf": dict(depths=[8, 2, 15, 1], widths=[304, 512, 1184, 1408], ratios=[0.25, 0.5, 0.5, 1],
                        groups=[38, 16, 37, 1], gmacs=7.9, params=None, source=_T9),
})
DEFAULT_INPUT_SIZE = 224
INPUT_SIZES = (32, 8192, 1)  # the cost input sizes the space accepts: lo, hi, step


def preset_names() -> list[str]:
    """Names of the AnyNet presets, in table order."""
    return list(PRESETS)


def preset(name: str) -> AnyNetArch:
    """The architecture of a named preset; an unknown name lists the known ones."""
    if name not in PRESETS:
        raise PredNASError(f"unknown {SPACE} preset {name!r}; expected one of: {', '.join(PRESETS)}")
    p = PRESETS[name]
    return make_arch(p["depths"], p["widths"], p.get("ratios", [1.0] * STAGES), p["groups"])


class AnyNetSpace:
    """AnyNetX: 4 stages of (depth, width, bottleneck ratio, groups), searched within ``ranges``."""

    name = SPACE
    kind = "size"
    param_bounds = (0.0, 1.0)  # gradient search keeps its iterate in the encodings' box
    encoding_shape = (4 * STAGES,)
    param_shape = (4 * STAGES,)
    default_input_size = DEFAULT_INPUT_SIZE

    def __init__(self, ranges: AnyNetRanges = TABLE_III, num_classes: int = 1000,
                 input_size: int = DEFAULT_INPUT_SIZE) -> None:
        self.ranges = ranges
        self.num_classes = check_int(SPACE, "num_classes", num_classes, 1, 2**31)
        self.input_size = check_int(SPACE, "input_size", input_size, *INPUT_SIZES)

    def sample(self, rng: np.random.Generator) -> AnyNetArch:
        """D, W, R uniform in the search range, then G uniform among the valid divisors of W x R."""
        r = self.ranges
        depths = rng.integers(r.depth[0], r.depth[1] + 1, size=STAGES)
        widths = rng.integers(r.width[0] // r.width_step, r.width[1] // r.width_step + 1, size=STAGES) * r.width_step
        ratios = [RATIOS[i] for i in rng.integers(0, len(RATIOS), size=STAGES)]
        groups = [int(rng.choice(_divisors_in(int(w * q), *r.groups))) for w, q in zip(widths, ratios, strict=True)]
        return make_arch(depths.tolist(), widths.tolist(), ratios, groups)

    def encode(self, arch: AnyNetArch) -> np.ndarray:
        """``D1..4, W1..4, R1..4, G1..4`` mapped onto 0..1 over the search range (float32)."""
        r = self.ranges
        x = [unit(d, *r.depth) for d in arch.depths] + [unit(w, *r.width) for w in arch.widths]
        x += [RATIOS.index(q) / (len(RATIOS) - 1) for q in arch.ratios] + [unit(g, *r.groups) for g in arch.groups]
        return np.asarray(x, dtype=np.float32)

    def param(self, arch: AnyNetArch) -> np.ndarray:
        """The encoding itself (a size space searches the normalised numbers directly)."""
        return self.encode(arch)

    def relax(self, theta: Any) -> Any:
        """Identity: the predictor reads the continuous numbers."""
        return theta

    def project(self, theta: np.ndarray) -> AnyNetArch:
        """Round and clip each number into the search range; G becomes the nearest divisor of W x R."""
        x = float_array(SPACE, "parameter", theta).reshape(-1)
        if x.shape != self.param_shape:
            raise PredNASError(f"{SPACE} parameter must have {self.param_shape[0]} numbers, got shape {x.shape}")
        x = np.where(np.isfinite(x), x, 0.0)
        r = self.ranges
        depths = [snap(from_unit(v, *r.depth), *r.depth) for v in x[0:4]]
        widths = [snap(from_unit(v, *r.width), *r.width, r.width_step) for v in x[4:8]]
        ratios = [RATIOS[snap(v * (len(RATIOS) - 1), 0, len(RATIOS) - 1)] for v in x[8:12]]
        groups = [nearest_group(int(w * q), from_unit(v, *r.groups), *r.groups)
                  for w, q, v in zip(widths, ratios, x[12:16], strict=True)]
        return AnyNetArch(tuple(depths), tuple(widths), tuple(ratios), tuple(groups))

    def scale_widths(self, arch: AnyNetArch, factor: float) -> AnyNetArch:
        """Every stage width times ``factor``, snapped into the search range; each group count the
        valid divisor nearest to the old one (how a cost-constrained search moves a start into its window)."""
        r = self.ranges
        widths = [snap(w * factor, *r.width, r.width_step) for w in arch.widths]
        groups = [nearest_group(int(w * q), g, *r.groups) for w, q, g in zip(widths, arch.ratios, arch.groups,
                                                                             strict=True)]
        return AnyNetArch(arch.depths, tuple(widths), arch.ratios, tuple(groups))

    def check_range(self, arch: AnyNetArch) -> AnyNetArch:
        """``arch`` unchanged if it lies in the search range, else PredNASError naming the field."""
        r = self.ranges
        for i in range(STAGES):
            check_int(SPACE, f"depths[{i}]", arch.depths[i], *r.depth)
            check_int(SPACE, f"widths[{i}]", arch.widths[i], *r.width, r.width_step)
            check_int(SPACE, f"groups[{i}]", arch.groups[i], *r.groups)
        return arch

    def cost(self, arch: AnyNetArch) -> dict[str, float]:
        """Analytic MACs, FLOPs (2 x MACs) and params at the space's input size and classes."""
        return anynet_cost(arch, self.input_size, self.num_classes)

    def counted_cost(self, arch: Any) -> dict[str, int]:
        """Cost measured on the built network (meta device, ``flop_counter``): the analytic cost's check."""
        return counted_cost(arch, self.input_size, self.num_classes)

    def build(self, arch: AnyNetArch) -> Any:
        """``build(arch, self.num_classes)``."""
        return build(arch, self.num_classes)

    def to_dict(self, arch: AnyNetArch) -> dict[str, Any]:
        """``{"depths": [...], "widths": [...], "ratios": [...], "groups": [...]}``."""
        return {key: list(getattr(arch, key)) for key in FIELDS}

    def from_dict(self, data: Mapping[str, Any]) -> AnyNetArch:
        """Parse and check the JSON form (structural range; see ``check_range`` for the search range)."""
        check_keys(SPACE, data, FIELDS)
        return make_arch(*(get_list(SPACE, data, key, STAGES) for key in FIELDS))

    def equivalence_key(self, arch: AnyNetArch) -> str:
        """Canonical JSON: distinct AnyNet architectures compute distinct functions."""
        return json.dumps(self.to_dict(arch), separators=(",", ":"))

    def size(self) -> int | None:
        """None: about 3 x 10^18 architectures, too many to enumerate (``cardinality`` counts them)."""
        return None

    def cardinality(self) -> int:
        """Exact number of architectures in the search range."""
        r = self.ranges
        per_stage = sum(len(_divisors_in(int(w * q), *r.groups))
                        for w in range(r.width[0], r.width[1] + 1, r.width_step) for q in RATIOS)
        return (per_stage * (r.depth[1] - r.depth[0] + 1)) ** STAGES

    def enumerate(self) -> Iterator[AnyNetArch]:
        """Refused: the space is far too large."""
        raise PredNASError(f"the {SPACE} space has about 10^{math.log10(self.cardinality()):.0f} architectures "
                           "and cannot be enumerated")

    def presets(self) -> list[str]:
        """Names of the presets."""
        return preset_names()

    def preset(self, name: str) -> AnyNetArch:
        """A named preset's architecture."""
        return preset(name)
