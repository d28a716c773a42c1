"""The evaluator protocol and the value it returns."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class Evaluation:
    """One measured architecture: the search signal, its cost and what is reported.

    ``accuracy`` is what the search optimises (a validation accuracy, in percent, or an
    mAP); ``cost`` holds ``macs``/``flops``/``params`` (and ``latency_ms`` when measured);
    ``report`` holds figures shown to the user but never fed back to the search (for the
    NB201 table, the test accuracy).
    """

    accuracy: float
    cost: dict[str, float]
    report: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Evaluator(Protocol):
    """Measures architectures of one space; ``config()`` identifies what it measures."""

    name: str

    def config(self) -> dict[str, Any]:
        """Everything that changes the measured numbers (hashed into the triplet key)."""

    def evaluate(self, space: Any, arch: Any) -> Evaluation:
        """Measure one architecture."""


def config_hash(config: dict[str, Any]) -> str:
    """Stable 12-hex-digit hash of an evaluator config."""
    payload = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]
