"""The search-space protocol every space implements (paper Sec. III-B).

A space maps architectures (frozen, hashable values that round-trip through JSON) to
the encodings the predictors read, and back through a projection. Gradient search
works on a *parameter* tensor ``theta`` of shape ``param_shape``: ``relax(theta)`` is
the differentiable encoding fed to the predictors and ``project(theta)`` the nearest
architecture (Eq. 4). For a size space theta is the normalised encoding itself; for a
topology space it is the operation matrix whose rows pass through a softmax.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class SearchSpace(Protocol):
    """What the sampler, the predictors and the searches need from a space."""

    name: str
    kind: str  # "topology" (GCN predictor) or "size" (MLP predictor)
    encoding_shape: tuple[int, ...]
    param_shape: tuple[int, ...]

    def sample(self, rng: np.random.Generator) -> Any:
        """Draw one architecture uniformly from the space."""

    def encode(self, arch: Any) -> np.ndarray:
        """The predictor input for one architecture (float32, ``encoding_shape``)."""

    def param(self, arch: Any) -> np.ndarray:
        """The gradient-search parameter that projects back onto ``arch``."""

    def relax(self, theta: Any) -> Any:
        """Differentiable encoding of a batch of parameters (torch, ``(B, *param_shape)``)."""

    def project(self, theta: np.ndarray) -> Any:
        """The architecture nearest to one parameter point (Eq. 4)."""

    def cost(self, arch: Any) -> dict[str, float]:
        """Analytic cost: ``macs``, ``flops`` (2 x MACs unless the space says otherwise), ``params``."""

    def to_dict(self, arch: Any) -> dict[str, Any]:
        """JSON-ready form of an architecture."""

    def from_dict(self, data: Mapping[str, Any]) -> Any:
        """Parse and validate the JSON form; raises PredNASError on a bad value."""

    def equivalence_key(self, arch: Any) -> str:
        """Key shared by architectures that compute the same function."""

    def size(self) -> int | None:
        """Number of architectures when the space can be enumerated, else None."""

    def enumerate(self) -> Iterator[Any]:
        """Every architecture, for spaces whose ``size()`` is not None."""


def arch_id(space: SearchSpace, arch: Any) -> str:
    """Stable 16-hex-digit id of an architecture within its space."""
    payload = json.dumps({"space": space.name, "arch": space.to_dict(arch)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
