"""NAS-Bench-201 cell space (topology), encoded as in paper Sec. IV-A after Wen et al.

A cell is a 4-node DAG; each of its 6 edges ``j -> i`` carries one of 5 operations and is
written in NB201's arch string as ``|op~j|`` under node ``i``. The encoding turns the
cell into the paper's operation graph: 8 nodes (input, the 6 edge operations in
arch-string order, output) with a fixed adjacency of the maximal cell (edge-op ``j -> i``
feeds every edge-op leaving node ``i``), and an 8 x 7 one-hot operation matrix over the
options (input, the 5 operations, output). Because ``none`` and ``skip_connect`` are
operations, only the operation matrix varies; gradient search updates it through a
row-wise softmax and projects by argmax (Eq. 4).

Deviation: the softmax of an interior row runs over the 5 operation columns only (the
input and output options are masked), so a relaxed cell is always a mixture of real cells.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from prednas.errors import PredNASError
from prednas.spaces.fields import float_array

OPS: tuple[str, ...] = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
EDGES: tuple[tuple[int, int], ...] = ((0, 1), (0, 2), (1, 2), (0, 3), (1, 3), (2, 3))
OPTIONS: tuple[str, ...] = ("input", *OPS, "output")
NUM_NODES = len(EDGES) + 2
_ARCH_RE = re.compile(
    r"^\|([a-z0-9_]+)~(\d)\|\+\|([a-z0-9_]+)~(\d)\|([a-z0-9_]+)~(\d)\|\+"
    r"\|([a-z0-9_]+)~(\d)\|([a-z0-9_]+)~(\d)\|([a-z0-9_]+)~(\d)\|$"
)


@dataclass(frozen=True)
class NB201Cell:
    """One NB201 cell: the operation on each edge, in arch-string order."""

    ops: tuple[str, ...]

    def __str__(self) -> str:
        return arch_string(self.ops)


def arch_string(ops: tuple[str, ...]) -> str:
    """NB201's canonical arch string for the 6 edge operations."""
    nodes: list[list[str]] = [[], [], []]
    for (src, dst), op in zip(EDGES, ops, strict=True):
        nodes[dst - 1].append(f"{op}~{src}")
    return "+".join("|" + "|".join(node) + "|" for node in nodes)


def parse_arch(text: str) -> NB201Cell:
    """Parse an NB201 arch string; a malformed one raises PredNASError."""
    match = _ARCH_RE.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise PredNASError(
            f"malformed NB201 arch string {text!r}; expected |op~0|+|op~0|op~1|+|op~0|op~1|op~2| "
            f"with op in {', '.join(OPS)}"
        )
    groups = match.groups()
    ops = groups[0::2]
    for op, (src, _), got in zip(ops, EDGES, groups[1::2], strict=True):
        if op not in OPS:
            raise PredNASError(f"unknown NB201 operation {op!r} in {text!r}; expected one of {', '.join(OPS)}")
        if int(got) != src:
            raise PredNASError(f"NB201 arch string {text!r} has input ~{got} where ~{src} was expected")
    return NB201Cell(tuple(ops))


def _adjacency() -> np.ndarray:
    adj = np.zeros((NUM_NODES, NUM_NODES), dtype=np.float32)
    out = NUM_NODES - 1
    for e, (src, dst) in enumerate(EDGES):
        if src == 0:
            adj[0, e + 1] = 1.0
        if dst == 3:
            adj[e + 1, out] = 1.0
        for f, (src2, _) in enumerate(EDGES):
            if src2 == dst:
                adj[e + 1, f + 1] = 1.0
    return adj


ADJACENCY = _adjacency()
_MASK = np.full((NUM_NODES, len(OPTIONS)), -np.inf, dtype=np.float32)
_MASK[0, 0] = 0.0
_MASK[1:-1, 1:-1] = 0.0
_MASK[-1, -1] = 0.0

# Analytic cost of NB201's evaluation network ``infer.tiny`` (C=16, N=5) on 32x32 input:
# every stage has C^2 * H * W = 262,144, so an edge op costs the same in all 15 cells.
_CELL_MACS = {"nor_conv_3x3": 15 * 9 * 262_144, "nor_conv_1x1": 15 * 262_144}
_CELL_PARAMS = {
    "nor_conv_3x3": 5 * (9 * (256 + 1024 + 4096) + 2 * (16 + 32 + 64)),
    "nor_conv_1x1": 5 * ((256 + 1024 + 4096) + 2 * (16 + 32 + 64)),
}
_BASE_MACS = 7_783_050 - 650  # stem, residual blocks, less the 10-class classifier
_BASE_PARAMS = 73_306 - 650


class NB201Space:
    """The 15,625 NAS-Bench-201 cells (5 operations on 6 edges)."""

    name = "nb201"
    kind = "topology"
    encoding_shape = (NUM_NODES, len(OPTIONS))
    param_shape = (NUM_NODES, len(OPTIONS))
    adjacency = ADJACENCY

    def __init__(self, num_classes: int = 10) -> None:
        self.num_classes = num_classes

    def sample(self, rng: np.random.Generator) -> NB201Cell:
        """A uniformly drawn cell."""
        return NB201Cell(tuple(OPS[i] for i in rng.integers(0, len(OPS), size=len(EDGES))))

    def encode(self, arch: NB201Cell) -> np.ndarray:
        """The 8 x 7 one-hot operation matrix (cached; read-only)."""
        return _encode(arch.ops)

    def param(self, arch: NB201Cell) -> np.ndarray:
        """Gradient-search start: the one-hot operation matrix (a writable copy)."""
        return self.encode(arch).copy()

    def relax(self, theta: Any) -> Any:
        """Row-wise softmax over the valid options of each node."""
        import torch

        mask = torch.as_tensor(_MASK, device=theta.device, dtype=theta.dtype)
        return torch.softmax(theta + mask, dim=-1)

    def project(self, theta: np.ndarray) -> NB201Cell:
        """Argmax operation of each edge row."""
        x = float_array(self.name, "encoding", theta)
        if x.shape != self.param_shape or not np.all(np.isfinite(x)):
            raise PredNASError(
                f"NB201 encoding must be a finite {self.param_shape[0]}x{self.param_shape[1]} matrix, "
                f"got shape {x.shape}"
            )
        return NB201Cell(tuple(OPS[i] for i in np.argmax(x[1:-1, 1:-1], axis=1)))

    def cost(self, arch: NB201Cell) -> dict[str, float]:
        """MACs, FLOPs (2 x MACs) and params of ``infer.tiny`` at 32 x 32 (NB201's "FLOPs" are MACs)."""
        head = 64 * self.num_classes + self.num_classes
        macs = _BASE_MACS + head + sum(_CELL_MACS.get(op, 0) for op in arch.ops)
        params = _BASE_PARAMS + head + sum(_CELL_PARAMS.get(op, 0) for op in arch.ops)
        return {"macs": float(macs), "flops": float(2 * macs), "params": float(params)}

    def to_dict(self, arch: NB201Cell) -> dict[str, Any]:
        """``{"arch": <arch string>}``."""
        return {"arch": str(arch)}

    def from_dict(self, data: Mapping[str, Any] | str) -> NB201Cell:
        """Parse ``{"arch": str}`` or a bare arch string."""
        if isinstance(data, str):
            return parse_arch(data)
        if not isinstance(data, Mapping) or "arch" not in data:
            raise PredNASError(f"NB201 architecture must be {{'arch': <arch string>}}, got {data!r}")
        return parse_arch(data["arch"])

    def equivalence_key(self, arch: NB201Cell) -> str:
        """NB201's isomorphism key (``Structure.to_unique_str(consider_zero=True)``)."""
        return _equivalence_key(arch.ops)

    def size(self) -> int:
        """5^6 = 15,625 cells."""
        return len(OPS) ** len(EDGES)

    def enumerate(self) -> Iterator[NB201Cell]:
        """Every cell (not in NB201 index order: the table maps cells to indices)."""
        for ops in itertools.product(OPS, repeat=len(EDGES)):
            yield NB201Cell(ops)


@functools.lru_cache(maxsize=len(OPS) ** len(EDGES))
def _encode(ops: tuple[str, ...]) -> np.ndarray:
    x = np.zeros((NUM_NODES, len(OPTIONS)), dtype=np.float32)
    x[0, 0] = 1.0
    x[-1, -1] = 1.0
    for e, op in enumerate(ops):
        x[e + 1, 1 + OPS.index(op)] = 1.0
    x.flags.writeable = False
    return x


@functools.lru_cache(maxsize=len(OPS) ** len(EDGES))
def _equivalence_key(ops: tuple[str, ...]) -> str:
    value = {0: "0"}
    for dst in (1, 2, 3):
        terms = []
        for (src, to), op in zip(EDGES, ops, strict=True):
            if to != dst:
                continue
            if op == "none" or value[src] == "#":
                terms.append("#")
            elif op == "skip_connect":
                terms.append(value[src])
            else:
                terms.append(f"({value[src]})@{op}")
        value[dst] = "+".join(sorted(terms))
    return value[3]
