"""YOLOX detector size space (paper Sec. IV-C, Table V; network: ``prednas.models.yolox``).

An architecture is a stem width, a backbone and a neck of 4 stages each (depth, width,
expand ratio per stage) and, for each of the 3 detection levels (strides 8, 16, 32), a
decoupled head: the widths of its shared convs, of its cls branch and of its reg branch
(1 to 4 convs each). ``build(arch, num_classes)`` returns the detector.

Search range (``sample``, ``project``, ``check_range``), after Table V:

- stem width: a multiple of 8 in 8..80 (Table V's 10 values exactly);
- backbone stage k = 1..4: depth 1..12, width a multiple of 8 in 8..80 x 2^k (Table V:
  ``B^k <= 2 B^(k-1)``, ``B^0 = 80``), ratio in {0.25, 0.5, 1};
- neck stage: depth 1..3, width a multiple of 8 in 8..1280, ratio in {0.25, 0.5, 1};
- head convs: 1..4 per part, widths multiples of 8 in 8..512.

Grid choice: Table V splits each width range into 10 (heads: 8) equal values, a grid that
cannot express YOLOX-M's neck width 192 nor PredNAS-S's backbone widths 72 and 80 or head
widths 40 and 56 (Table VII), so every width lies on multiples of 8 instead; that grid
contains Table V's. The lower bounds are 8 ("we adjust the lower bound to obtain models
with small FLOPs", appendix).

Structural range (every ``YOLOXArch`` builds): depths 1..64 (heads 1..8), any integer
width in 8..8192. YOLOX-X (neck depth 4) and the appendix's PredNAS-S/M-dagger rows (widths
788, 92, 34) lie outside the search range but inside this one.

Encoding and gradient parameter (70 numbers, ~0..1): stem; backbone depths, widths,
ratios; neck depths, widths, ratios; then per level the 3 head depths and 4 width slots
for each of shared, cls, reg. Depths map ``lo..hi -> 0..1``, widths ``w / max``, ratios by
their index; the slots of convs beyond a part's depth read 0 and are dropped by
``project``, which rounds and clips every number into the search range.

Cost (``yolox_cost``) is analytic and exact against ``torch.utils.flop_counter`` (conv
multiply-adds). YOLOX's published "GFLOPs" are 2 x MACs: our ``flops``.

Paper models: YOLOX-S/M/L match their published params and GFLOPs within 0.5%. PredNAS-S
(Table VII, preset ``prednas_s``) builds, but at 32.3 GFLOPs and 12.9M params against the
printed 28.4 and 10.6M: no reading of the neck wiring or shared-conv kernel that keeps
YOLOX-S exact reproduces the printed figures, so Table VII is taken as printed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from prednas.errors import PredNASError
from prednas.spaces.fields import (
    as_number,
    check_choice,
    check_int,
    check_keys,
    float_array,
    get_list,
    ratio_unit,
    snap,
    snap_ratio,
    unit,
)

SPACE = "yolox"
RATIOS: tuple[float, ...] = (0.25, 0.5, 1.0)
STAGES = 4
LEVELS = 3
PARTS = ("shared", "cls", "reg")
MAX_DEPTH, MAX_HEAD_DEPTH, WIDTH_LIMITS = 64, 8, (8, 8192)
STEP = 8
SEARCH = {"stem": (8, 80), "backbone_depth": (1, 12), "backbone_width": [(8, 80 * 2**k) for k in range(1, 5)],
          "neck_depth": (1, 3), "neck_width": (8, 1280), "head_depth": (1, 4), "head_width": (8, 512)}
DEFAULT_INPUT_SIZE = 640
INPUT_SIZES = (32, 8192, 32)  # the cost input sizes the space accepts: lo, hi, step


@dataclass(frozen=True)
class Stages:
    """Depth, width and expand ratio of 4 CSP stages (backbone or neck)."""

    depths: tuple[int, ...]
    widths: tuple[int, ...]
    ratios: tuple[float, ...]


@dataclass(frozen=True)
class Head:
    """One level's decoupled head: widths of its shared, cls and reg convs (1 or more each)."""

    shared: tuple[int, ...]
    cls: tuple[int, ...]
    reg: tuple[int, ...]


@dataclass(frozen=True)
class YOLOXArch:
    """A detector of the space; always buildable (checked on construction)."""

    stem: int
    backbone: Stages
    neck: Stages
    heads: tuple[Head, ...]

    def __post_init__(self) -> None:
        check_int(SPACE, "stem", self.stem, *WIDTH_LIMITS)
        for part in ("backbone", "neck"):
            stages = getattr(self, part)
            for key in ("depths", "widths", "ratios"):
                get_list(SPACE, {f"{part}.{key}": getattr(stages, key)}, f"{part}.{key}", STAGES)
            for i in range(STAGES):
                check_int(SPACE, f"{part}.depths[{i}]", stages.depths[i], 1, MAX_DEPTH)
                check_int(SPACE, f"{part}.widths[{i}]", stages.widths[i], *WIDTH_LIMITS)
                check_choice(SPACE, f"{part}.ratios[{i}]", stages.ratios[i], RATIOS)
        get_list(SPACE, {"heads": self.heads}, "heads", LEVELS)
        for level, head in enumerate(self.heads):
            for part in PARTS:
                name = f"heads[{level}].{part}"
                widths = get_list(SPACE, {name: getattr(head, part)}, name, (1, MAX_HEAD_DEPTH))
                for j, w in enumerate(widths):
                    check_int(SPACE, f"{name}[{j}]", w, *WIDTH_LIMITS)


def _stages_dict(stages: Stages) -> dict[str, list[Any]]:
    return {"depths": list(stages.depths), "widths": list(stages.widths), "ratios": list(stages.ratios)}


def to_dict(arch: YOLOXArch) -> dict[str, Any]:
    """JSON form: ``{stem, backbone: {depths, widths, ratios}, neck: {...}, heads: [{shared, cls, reg}] x 3}``."""
    return {"stem": arch.stem, "backbone": _stages_dict(arch.backbone), "neck": _stages_dict(arch.neck),
            "heads": [{part: list(getattr(h, part)) for part in PARTS} for h in arch.heads]}


def from_dict(data: Mapping[str, Any]) -> YOLOXArch:
    """Parse and check the JSON form (structural range)."""
    check_keys(SPACE, data, ("stem", "backbone", "neck", "heads"))
    if "stem" not in data:
        raise PredNASError(f"{SPACE} architecture is missing field 'stem'; expected a width")
    parts = {}
    for part in ("backbone", "neck"):
        if part not in data:
            raise PredNASError(f"{SPACE} architecture is missing field {part!r}; expected {{depths, widths, ratios}}")
        section = data[part]
        check_keys(f"{SPACE} {part}", section, ("depths", "widths", "ratios"))
        lists = [get_list(f"{SPACE} {part}", section, key, STAGES) for key in ("depths", "widths", "ratios")]
        parts[part] = Stages(*(tuple(as_number(v, key != "ratios") for v in values)
                               for key, values in zip(("depths", "widths", "ratios"), lists, strict=True)))
    heads = []
    for level, head in enumerate(get_list(SPACE, data, "heads", LEVELS)):
        check_keys(f"{SPACE} heads[{level}]", head, PARTS)
        widths = [get_list(f"{SPACE} heads[{level}]", head, part, (1, MAX_HEAD_DEPTH)) for part in PARTS]
        heads.append(Head(*(tuple(as_number(w) for w in ws) for ws in widths)))
    return YOLOXArch(as_number(data["stem"]), parts["backbone"], parts["neck"], tuple(heads))


def make(stem: int, backbone: tuple[Any, Any, Any], neck: tuple[Any, Any, Any], heads: Any) -> YOLOXArch:
    """An architecture from lists: backbone and neck as (depths, widths, ratios), heads as (shared, cls, reg)."""
    return from_dict({"stem": stem, "backbone": dict(zip(("depths", "widths", "ratios"), backbone, strict=True)),
                      "neck": dict(zip(("depths", "widths", "ratios"), neck, strict=True)),
                      "heads": [dict(zip(PARTS, h, strict=True)) for h in heads]})


def _conv(c_in: int, c_out: int, k: int, h: int) -> tuple[int, int]:
    """MACs and params (weights + BN) of a BaseConv producing an ``h x h`` map."""
    return h * h * c_in * c_out * k * k, c_in * c_out * k * k + 2 * c_out


def _csp(c_in: int, c_out: int, depth: int, ratio: float, h: int) -> tuple[int, int]:
    hid = int(c_out * ratio)
    per_pixel = 2 * c_in * hid + 2 * hid * c_out + depth * 10 * hid * hid
    return h * h * per_pixel, per_pixel + 2 * (2 * hid + c_out) + depth * 4 * hid


def _head(c_in: int, head: Head, h: int, num_classes: int) -> tuple[int, int]:
    macs = params = 0
    c = c_in
    for w in head.shared:  # 1x1 shared convs
        m, p = _conv(c, w, 1, h)
        macs, params, c = macs + m, params + p, w
    for branch, outputs in ((head.cls, num_classes), (head.reg, 5)):
        b = c
        for w in branch:
            m, p = _conv(b, w, 3, h)
            macs, params, b = macs + m, params + p, w
        macs, params = macs + h * h * b * outputs, params + b * outputs + outputs  # predictors, with bias
    return macs, params


def yolox_cost(arch: YOLOXArch, input_size: int = DEFAULT_INPUT_SIZE, num_classes: int = 80) -> dict[str, int]:
    """Exact MACs, FLOPs (2 x MACs, YOLOX's GFLOPs) and params of ``build(arch, num_classes)`` on one image."""
    check_int(SPACE, "input_size", input_size, *INPUT_SIZES)
    (_, b2, b3, b4), (n1, n2, n3, n4) = arch.backbone.widths, arch.neck.widths
    nd, nr = arch.neck.depths, arch.neck.ratios
    h = [input_size // 2**k for k in range(6)]  # h[k]: resolution at stride 2^k
    parts = [_conv(12, arch.stem, 3, h[1])]
    c = arch.stem
    for k, (d, w, r) in enumerate(zip(arch.backbone.depths, arch.backbone.widths, arch.backbone.ratios, strict=True)):
        parts.append(_conv(c, w, 3, h[k + 2]))
        if k == STAGES - 1:  # SPP
            parts += [_conv(w, w // 2, 1, h[5]), _conv(4 * (w // 2), w, 1, h[5])]
        parts.append(_csp(w, w, d, r, h[k + 2]))
        c = w
    parts += [_conv(b4, n1, 1, h[5]), _csp(n1 + b3, n1, nd[0], nr[0], h[4]), _conv(n1, n2, 1, h[4]),
              _csp(n2 + b2, n2, nd[1], nr[1], h[3]), _conv(n2, n2, 3, h[4]), _csp(2 * n2, n3, nd[2], nr[2], h[4]),
              _conv(n3, n3, 3, h[5]), _csp(n3 + n1, n4, nd[3], nr[3], h[5])]
    levels = zip((n2, n3, n4), arch.heads, h[3:], strict=True)
    parts += [_head(c_in, head, size, num_classes) for c_in, head, size in levels]
    macs, params = (sum(x) for x in zip(*parts, strict=True))
    return {"macs": macs, "flops": 2 * macs, "params": params}


def build(arch: YOLOXArch, num_classes: int = 80) -> Any:
    """The detector of ``arch`` (``prednas.models.yolox.YOLOXDetector``), freshly initialised.

    Training mode returns the raw per-level maps (strides 8, 16, 32; channels reg 4, obj 1,
    cls ``num_classes``); eval mode returns boxes, scores and labels per image (see the
    detector's docstring).
    """
    from prednas.models.yolox import YOLOXDetector

    check_int(SPACE, "num_classes", num_classes, 1, 2**31)
    stages = [(s.depths, s.widths, s.ratios) for s in (arch.backbone, arch.neck)]
    heads = [(h.shared, h.cls, h.reg) for h in arch.heads]
    return YOLOXDetector(arch.stem, stages[0], stages[1], heads, num_classes=num_classes)


def counted_cost(arch: YOLOXArch, input_size: int = DEFAULT_INPUT_SIZE, num_classes: int = 80) -> dict[str, int]:
    """Cost measured by building ``arch`` on the meta device and counting its raw forward."""
    from prednas.models.counting import counted_cost as count

    check_int(SPACE, "input_size", input_size, 32, 8192, 32)
    return count(lambda: build(arch, num_classes), input_size, forward=lambda model, x: model.raw(x))


def _yolox_heads(width: int) -> list[tuple[list[int], list[int], list[int]]]:
    """YOLOX's head at every level: one shared 1x1 conv and two 3x3 convs per branch, all ``width``."""
    return [([width], [width, width], [width, width])] * LEVELS


# Presets are data. YOLOX: the official models (depth/width multipliers expanded into
# stage depths and widths; published params and GFLOPs from the YOLOX README). PredNAS-S:
# paper Table VII, with the paper's Table VI figures (which ours do not reproduce).
_R = [0.5] * STAGES
PRESETS: dict[str, dict[str, Any]] = {
    "yolox_tiny": dict(stem=24, backbone=([1, 3, 3, 1], [48, 96, 192, 384], _R),
                       neck=([1] * 4, [192, 96, 192, 384], _R), heads=_yolox_heads(96), input_size=416,
                       gflops=6.45, mparams=5.06, source="YOLOX README"),
    "yolox_s": dict(stem=32, backbone=([1, 3, 3, 1], [64, 128, 256, 512], _R), neck=([1] * 4, [256, 128, 256, 512], _R),
                    heads=_yolox_heads(128), input_size=640, gflops=26.8, mparams=9.0, source="YOLOX README"),
    "yolox_m": dict(stem=48, backbone=([2, 6, 6, 2], [96, 192, 384, 768], _R), neck=([2] * 4, [384, 192, 384, 768], _R),
                    heads=_yolox_heads(192), input_size=640, gflops=73.8, mparams=25.3, source="YOLOX README"),
    "yolox_l": dict(stem=64, backbone=([3, 9, 9, 3], [128, 256, 512, 1024], _R),
                    neck=([3] * 4, [512, 256, 512, 1024], _R), heads=_yolox_heads(256), input_size=640,
                    gflops=155.6, mparams=54.2, source="YOLOX README"),
    "yolox_x": dict(stem=80, backbone=([4, 12, 12, 4], [160, 320, 640, 1280], _R),
                    neck=([4] * 4, [640, 320, 640, 1280], _R), heads=_yolox_heads(320), input_size=640,
                    gflops=281.9, mparams=99.1, source="YOLOX README"),
    "prednas_s": dict(stem=16, backbone=([4, 3, 3, 1], [72, 80, 320, 488], [0.25, 1.0, 0.5, 0.25]),
                      neck=([1, 3, 1, 3], [512, 256, 576, 304], [0.5, 0.25, 0.5, 0.25]),
                      heads=[([224, 40], [56, 96], [32]), ([224, 176], [32], [104, 224]),
                             ([256, 136, 176], [176, 40, 224], [192])],
                      input_size=640, gflops=28.4, mparams=10.6, source="paper Tables VI, VII"),
}


def preset_names() -> list[str]:
    """Names of the YOLOX-space presets, in table order."""
    return list(PRESETS)


def preset(name: str) -> YOLOXArch:
    """The architecture of a named preset; an unknown name lists the known ones."""
    if name not in PRESETS:
        raise PredNASError(f"unknown {SPACE} preset {name!r}; expected one of: {', '.join(PRESETS)}")
    p = PRESETS[name]
    return make(p["stem"], p["backbone"], p["neck"], p["heads"])


def _backbone_hi(k: int) -> int:
    return SEARCH["backbone_width"][k][1]


class YOLOXSpace:
    """The paper's YOLOX search space (Table V) on a multiples-of-8 width grid."""

    name = SPACE
    kind = "size"
    param_bounds = (0.0, 1.0)  # gradient search keeps its iterate in the encodings' box
    encoding_shape = (1 + 2 * 3 * STAGES + LEVELS * 3 * 5,)
    param_shape = encoding_shape
    default_input_size = DEFAULT_INPUT_SIZE

    def __init__(self, num_classes: int = 80, input_size: int = DEFAULT_INPUT_SIZE) -> None:
        self.num_classes = check_int(SPACE, "num_classes", num_classes, 1, 2**31)
        self.input_size = check_int(SPACE, "input_size", input_size, 32, 8192, 32)

    def sample(self, rng: np.random.Generator) -> YOLOXArch:
        """Every depth, width (on the grid) and ratio drawn uniformly from the search range."""
        def width(lo: int, hi: int) -> int:
            return int(rng.integers(lo // STEP, hi // STEP + 1)) * STEP

        def depth(lo: int, hi: int) -> int:
            return int(rng.integers(lo, hi + 1))

        def ratios() -> tuple[float, ...]:
            return tuple(RATIOS[i] for i in rng.integers(0, len(RATIOS), size=STAGES))

        backbone = Stages(tuple(depth(*SEARCH["backbone_depth"]) for _ in range(STAGES)),
                          tuple(width(*SEARCH["backbone_width"][k]) for k in range(STAGES)), ratios())
        neck = Stages(tuple(depth(*SEARCH["neck_depth"]) for _ in range(STAGES)),
                      tuple(width(*SEARCH["neck_width"]) for _ in range(STAGES)), ratios())
        heads = tuple(Head(*(tuple(width(*SEARCH["head_width"]) for _ in range(depth(*SEARCH["head_depth"])))
                             for _ in PARTS)) for _ in range(LEVELS))
        return YOLOXArch(width(*SEARCH["stem"]), backbone, neck, heads)

    def encode(self, arch: YOLOXArch) -> np.ndarray:
        """The 70 normalised numbers (see the module docstring), float32."""
        x = [arch.stem / SEARCH["stem"][1]]
        for part, depth_range in (("backbone", SEARCH["backbone_depth"]), ("neck", SEARCH["neck_depth"])):
            stages = getattr(arch, part)
            his = [_backbone_hi(k) for k in range(STAGES)] if part == "backbone" else [SEARCH["neck_width"][1]] * 4
            x += [unit(d, *depth_range) for d in stages.depths]
            x += [w / hi for w, hi in zip(stages.widths, his, strict=True)]
            x += [ratio_unit(r, RATIOS) for r in stages.ratios]
        slots, hi = SEARCH["head_depth"][1], SEARCH["head_width"][1]
        for head in arch.heads:
            x += [unit(len(getattr(head, part)), *SEARCH["head_depth"]) for part in PARTS]
            for part in PARTS:
                widths = getattr(head, part)
                x += [widths[j] / hi if j < len(widths) else 0.0 for j in range(slots)]
        return np.asarray(x, dtype=np.float32)

    def param(self, arch: YOLOXArch) -> np.ndarray:
        """The encoding itself."""
        return self.encode(arch)

    def relax(self, theta: Any) -> Any:
        """Identity: the predictor reads the continuous numbers."""
        return theta

    def project(self, theta: np.ndarray) -> YOLOXArch:
        """Round and clip every number into the search range; width slots beyond a part's depth are dropped."""
        x = float_array(SPACE, "parameter", theta).reshape(-1)
        if x.shape != self.param_shape:
            raise PredNASError(f"{SPACE} parameter must have {self.param_shape[0]} numbers, got shape {x.shape}")
        x = np.where(np.isfinite(x), x, 0.0)

        def width(v: float, lo: int, hi: int) -> int:
            return snap(v * hi, lo, hi, STEP)

        def depth(v: float, lo: int, hi: int) -> int:
            return snap(lo + v * (hi - lo), lo, hi)

        def stages(at: int, depth_range: tuple[int, int], width_ranges: list[tuple[int, int]]) -> Stages:
            return Stages(tuple(depth(v, *depth_range) for v in x[at:at + 4]),
                          tuple(width(v, *r) for v, r in zip(x[at + 4:at + 8], width_ranges, strict=True)),
                          tuple(snap_ratio(v, RATIOS) for v in x[at + 8:at + 12]))

        backbone = stages(1, SEARCH["backbone_depth"], SEARCH["backbone_width"])
        neck = stages(13, SEARCH["neck_depth"], [SEARCH["neck_width"]] * STAGES)
        heads = []
        for level in range(LEVELS):
            at = 25 + 15 * level
            depths = [depth(v, *SEARCH["head_depth"]) for v in x[at:at + 3]]
            heads.append(Head(*(tuple(width(v, *SEARCH["head_width"]) for v in x[at + 3 + 4 * p:at + 3 + 4 * p + d])
                                for p, d in enumerate(depths))))
        return YOLOXArch(width(x[0], *SEARCH["stem"]), backbone, neck, tuple(heads))

    def scale_widths(self, arch: YOLOXArch, factor: float) -> YOLOXArch:
        """Every width (stem, stages, head convs) times ``factor``, snapped onto the grid and into its range
        (how a cost-constrained search moves a start into its window)."""
        def width(w: int, lo: int, hi: int) -> int:
            return snap(w * factor, lo, hi, STEP)

        backbone = replace(arch.backbone, widths=tuple(width(w, *SEARCH["backbone_width"][k])
                                                       for k, w in enumerate(arch.backbone.widths)))
        neck = replace(arch.neck, widths=tuple(width(w, *SEARCH["neck_width"]) for w in arch.neck.widths))
        heads = tuple(Head(*(tuple(width(w, *SEARCH["head_width"]) for w in getattr(head, part)) for part in PARTS))
                      for head in arch.heads)
        return YOLOXArch(width(arch.stem, *SEARCH["stem"]), backbone, neck, heads)

    def check_range(self, arch: YOLOXArch) -> YOLOXArch:
        """``arch`` unchanged if it lies in the search range, else PredNASError naming the field."""
        check_int(SPACE, "stem", arch.stem, *SEARCH["stem"], STEP)
        for part in ("backbone", "neck"):
            stages = getattr(arch, part)
            for i in range(STAGES):
                check_int(SPACE, f"{part}.depths[{i}]", stages.depths[i], *SEARCH[f"{part}_depth"])
                width_range = SEARCH["backbone_width"][i] if part == "backbone" else SEARCH["neck_width"]
                check_int(SPACE, f"{part}.widths[{i}]", stages.widths[i], *width_range, STEP)
        for level, head in enumerate(arch.heads):
            for part in PARTS:
                widths = getattr(head, part)
                check_int(SPACE, f"heads[{level}].{part} depth", len(widths), *SEARCH["head_depth"])
                for j, w in enumerate(widths):
                    check_int(SPACE, f"heads[{level}].{part}[{j}]", w, *SEARCH["head_width"], STEP)
        return arch

    def cost(self, arch: YOLOXArch) -> dict[str, float]:
        """Analytic MACs, FLOPs (2 x MACs) and params at the space's input size and classes."""
        return yolox_cost(arch, self.input_size, self.num_classes)

    def counted_cost(self, arch: Any) -> dict[str, int]:
        """Cost measured on the built network (meta device, ``flop_counter``): the analytic cost's check."""
        return counted_cost(arch, self.input_size, self.num_classes)

    def build(self, arch: YOLOXArch) -> Any:
        """``build(arch, self.num_classes)``."""
        return build(arch, self.num_classes)

    def to_dict(self, arch: YOLOXArch) -> dict[str, Any]:
        """JSON form (see ``to_dict``)."""
        return to_dict(arch)

    def from_dict(self, data: Mapping[str, Any]) -> YOLOXArch:
        """Parse and check the JSON form (structural range; ``check_range`` for the search range)."""
        return from_dict(data)

    def equivalence_key(self, arch: YOLOXArch) -> str:
        """Canonical JSON: distinct architectures compute distinct functions."""
        return json.dumps(to_dict(arch), separators=(",", ":"))

    def size(self) -> int | None:
        """None: about 10^100 architectures (paper Table V)."""
        return None

    def enumerate(self) -> Iterator[YOLOXArch]:
        """Refused: the space is far too large."""
        raise PredNASError(f"the {SPACE} space has about 10^100 architectures and cannot be enumerated")

    def presets(self) -> list[str]:
        """Names of the presets."""
        return preset_names()

    def preset(self, name: str) -> YOLOXArch:
        """A named preset's architecture."""
        return preset(name)
