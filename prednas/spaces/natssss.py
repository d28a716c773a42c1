"""NATS-Bench size search space, "sss" (Dong et al., NATS-Bench, TPAMI 2021, Sec. 3.2).

An architecture is the channel count of the 5 layers of NATS-Bench's size network, each in
{8, 16, ..., 64}: 8^5 = 32,768 architectures, written as NATS-Bench writes them
(``"8:16:32:48:64"``) and numbered as it numbers them (base-8 digits, last layer fastest;
``NatsSssArch.index``). The network (NATS-Bench's ``infer.shape.tiny``) is NAS-Bench-201's
macro skeleton with one cell per stage and the searched channel counts:

    stem: 3x3 conv 3 -> c0, BN
    cell(c0 -> c0), residual block(c0 -> c1, stride 2),
    cell(c1 -> c2), residual block(c2 -> c3, stride 2),
    cell(c3 -> c4), BN, ReLU, global average pool, linear(c4 -> classes)

The cell is fixed (``CELL``, NATS-Bench's choice for this space). An operation leaving the
cell's input node maps ``c_in -> c_out`` and every other one ``c_out -> c_out``; a skip
connection between different widths is a 1x1 convolution with BN. A residual block is two
ReLU-conv3x3-BN (the first strided) plus a 2x2 average pool and a 1x1 convolution on the
shortcut. Convolutions have no bias.

Encoding and gradient parameter: the 5 channel counts mapped linearly onto 0..1 (8 -> 0,
64 -> 1); ``relax`` is the identity and ``project`` rounds and clips to the channel grid.

Cost (``natssss_cost``) is analytic and equals NATS-Bench's figures exactly, for all 32,768
architectures on its three datasets (``tests/test_natssss.py``). NATS-Bench's "FLOPs"
(``get_model_infos``) count the multiply-accumulates of the convolutions and the classifier
plus the classifier's bias additions, and no pooling; as for NAS-Bench-201 that count is
``macs`` here and ``flops`` is 2 x ``macs``. ``params`` counts trainable parameters
(convolutions, BN scales and shifts, the classifier).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from prednas.errors import PredNASError
from prednas.spaces.fields import as_number, check_int, check_keys, float_array, from_unit, get_list, snap, unit
from prednas.spaces.nb201 import EDGES, parse_arch

SPACE = "natssss"
LAYERS = 5
CHANNELS: tuple[int, ...] = (8, 16, 24, 32, 40, 48, 56, 64)
LOW, HIGH, STEP = CHANNELS[0], CHANNELS[-1], CHANNELS[1] - CHANNELS[0]
CELL = parse_arch("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|")
REDUCTIONS: tuple[bool, ...] = (False, True, False, True, False)  # layers 1 and 3 are residual blocks
FIELD = "channels"


@dataclass(frozen=True)
class NatsSssArch:
    """The channel count of each of the 5 layers."""

    channels: tuple[int, ...]

    def __post_init__(self) -> None:
        get_list(SPACE, {FIELD: self.channels}, FIELD, LAYERS)
        for i, c in enumerate(self.channels):
            check_int(SPACE, f"{FIELD}[{i}]", c, LOW, HIGH, STEP)

    def __str__(self) -> str:
        return ":".join(str(c) for c in self.channels)

    @property
    def index(self) -> int:
        """NATS-Bench's index of the architecture (base-8 digits, last layer fastest)."""
        return sum(CHANNELS.index(c) * len(CHANNELS) ** (LAYERS - 1 - i) for i, c in enumerate(self.channels))


def make_arch(channels: Any) -> NatsSssArch:
    """An architecture from 5 channel counts (integral floats become ints); checked."""
    items = get_list(SPACE, {FIELD: channels}, FIELD, LAYERS)
    return NatsSssArch(tuple(as_number(c) for c in items))


def parse_arch_string(text: Any) -> NatsSssArch:
    """Parse NATS-Bench's ``"8:16:32:48:64"``; a malformed string raises PredNASError."""
    parts = text.strip().split(":") if isinstance(text, str) else []
    if len(parts) != LAYERS or not all(p.isdigit() for p in parts):
        raise PredNASError(f"malformed {SPACE} arch string {text!r}: expected {LAYERS} channel counts "
                           f"joined by ':' (e.g. 8:16:32:48:64), each a multiple of {STEP} in {LOW}..{HIGH}")
    return make_arch([int(p) for p in parts])


def from_index(index: int) -> NatsSssArch:
    """The architecture with NATS-Bench index ``index`` (0..32767)."""
    index = check_int(SPACE, "index", index, 0, len(CHANNELS) ** LAYERS - 1)
    digits = [(index // len(CHANNELS) ** (LAYERS - 1 - i)) % len(CHANNELS) for i in range(LAYERS)]
    return NatsSssArch(tuple(CHANNELS[d] for d in digits))


def _conv(c_in: int, c_out: int, k: int, hw: int) -> tuple[int, int]:
    """MACs and weights of a bias-free ``k x k`` convolution with ``hw`` output pixels."""
    return k * k * c_in * c_out * hw, k * k * c_in * c_out


def _cell(c_in: int, c_out: int, hw: int) -> tuple[int, int]:
    """MACs and params of ``CELL`` mapping ``c_in -> c_out`` channels at ``hw`` pixels."""
    macs = params = 0
    for (src, _), op in zip(EDGES, CELL.ops, strict=True):
        c = c_in if src == 0 else c_out
        if op == "skip_connect" and c == c_out:
            continue  # identity
        assert op in ("nor_conv_3x3", "skip_connect"), op  # the only operations of CELL
        m, p = _conv(c, c_out, 3 if op == "nor_conv_3x3" else 1, hw)
        macs, params = macs + m, params + p + 2 * c_out  # ReLU-conv-BN, or 1x1 conv-BN for a skip
    return macs, params


def _residual(c_in: int, c_out: int, hw: int) -> tuple[int, int]:
    """MACs and params of a stride-2 residual block with ``hw`` output pixels."""
    a, b, shortcut = _conv(c_in, c_out, 3, hw), _conv(c_out, c_out, 3, hw), _conv(c_in, c_out, 1, hw)
    return a[0] + b[0] + shortcut[0], a[1] + b[1] + shortcut[1] + 4 * c_out


def natssss_cost(arch: NatsSssArch, input_size: int = 32, num_classes: int = 10) -> dict[str, int]:
    """NATS-Bench's MACs (its "FLOPs"), FLOPs (2 x MACs) and params of ``arch`` on one image."""
    side = input_size
    c_prev = arch.channels[0]
    macs, params = _conv(3, c_prev, 3, side * side)
    params += 2 * c_prev
    for c, reduction in zip(arch.channels, REDUCTIONS, strict=True):
        if reduction:
            side = (side + 1) // 2
        m, p = (_residual if reduction else _cell)(c_prev, c, side * side)
        macs, params, c_prev = macs + m, params + p, c
    params += 2 * c_prev  # the last BN
    macs += c_prev * num_classes + num_classes  # NATS-Bench counts the classifier's bias additions
    params += c_prev * num_classes + num_classes
    return {"macs": macs, "flops": 2 * macs, "params": params}


class NatsSssSpace:
    """NATS-Bench sss: 5 layers, each with 8 to 64 channels in steps of 8."""

    name = SPACE
    kind = "size"
    param_bounds = (0.0, 1.0)  # gradient search keeps its iterate in the encodings' box
    encoding_shape = (LAYERS,)
    param_shape = (LAYERS,)

    def __init__(self, num_classes: int = 10, input_size: int = 32) -> None:
        self.num_classes = check_int(SPACE, "num_classes", num_classes, 1, 2**31)
        self.input_size = check_int(SPACE, "input_size", input_size, 1, 8192)
        self._costs: dict[NatsSssArch, dict[str, int]] = {}  # at most 32,768 entries

    def sample(self, rng: np.random.Generator) -> NatsSssArch:
        """Every layer's channel count drawn uniformly."""
        return NatsSssArch(tuple(CHANNELS[i] for i in rng.integers(0, len(CHANNELS), size=LAYERS)))

    def encode(self, arch: NatsSssArch) -> np.ndarray:
        """The channel counts mapped onto 0..1 (float32)."""
        return np.asarray([unit(c, LOW, HIGH) for c in arch.channels], dtype=np.float32)

    def param(self, arch: NatsSssArch) -> np.ndarray:
        """The encoding itself (a size space searches the normalised numbers directly)."""
        return self.encode(arch)

    def relax(self, theta: Any) -> Any:
        """Identity: the predictor reads the continuous numbers."""
        return theta

    def project(self, theta: np.ndarray) -> NatsSssArch:
        """Round and clip each number onto the channel grid (a non-finite one counts as 0)."""
        x = float_array(SPACE, "parameter", theta).reshape(-1)
        if x.shape != self.param_shape:
            raise PredNASError(f"{SPACE} parameter must have {LAYERS} numbers, got shape {x.shape}")
        x = np.where(np.isfinite(x), x, 0.0)
        return NatsSssArch(tuple(snap(from_unit(v, LOW, HIGH), LOW, HIGH, STEP) for v in x))

    def scale_widths(self, arch: NatsSssArch, factor: float) -> NatsSssArch:
        """Every channel count times ``factor``, snapped onto the grid (how a constrained search enters its window)."""
        return NatsSssArch(tuple(snap(c * factor, LOW, HIGH, STEP) for c in arch.channels))

    def cost(self, arch: NatsSssArch) -> dict[str, float]:
        """NATS-Bench's MACs, FLOPs (2 x MACs) and params at the space's input size and classes.

        Memoised per architecture: a constrained search asks for the same costs many times over
        (every bisection step of ``window_starts``, every projection the window term is anchored to).
        """
        cost = self._costs.get(arch)
        if cost is None:
            cost = self._costs[arch] = natssss_cost(arch, self.input_size, self.num_classes)
        return dict(cost)

    def to_dict(self, arch: NatsSssArch) -> dict[str, Any]:
        """``{"channels": [c0, c1, c2, c3, c4]}``."""
        return {FIELD: list(arch.channels)}

    def from_dict(self, data: Mapping[str, Any] | str) -> NatsSssArch:
        """Parse ``{"channels": [...]}`` or NATS-Bench's arch string ``"8:16:32:48:64"``."""
        if isinstance(data, str):
            return parse_arch_string(data)
        check_keys(SPACE, data, (FIELD,))
        return make_arch(get_list(SPACE, data, FIELD, LAYERS))

    def equivalence_key(self, arch: NatsSssArch) -> str:
        """The arch string: distinct channel counts compute distinct functions."""
        return str(arch)

    def size(self) -> int:
        """8^5 = 32,768 architectures."""
        return len(CHANNELS) ** LAYERS

    def enumerate(self) -> Iterator[NatsSssArch]:
        """Every architecture, in NATS-Bench index order."""
        for channels in itertools.product(CHANNELS, repeat=LAYERS):
            yield NatsSssArch(channels)
