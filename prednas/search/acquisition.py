"""What the pipeline's search step scores, beyond Algorithm 1: every class, from a cost-pretrained start.

Two settings of the search config, both generic over spaces:

- ``exhaustive_limit``: when the space can be enumerated and holds at most this many
  architectures, every equivalence class is scored instead of running gradient search
  (random shooting over NB201 already covers almost every cell, so this is the
  predictor's exact optimum); larger spaces use Algorithm 1.
- ``pretrain``: each fit starts from weights pretrained to rank the space (every class of an
  enumerable space, else that many random architectures) by log analytic MACs, which costs
  no training; the measured accuracies then fine-tune it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

PRETRAIN_EPOCHS = 30

__all__ = ["PRETRAIN_EPOCHS", "can_enumerate", "classes_in_window", "enumerate_classes", "pretrained_state"]


def enumerate_classes(space: Any) -> list[Any]:
    """One architecture per equivalence class of an enumerable space (cached per space)."""
    cached = getattr(space, "_prednas_classes", None)
    if cached is None:
        seen: dict[str, Any] = {}
        for arch in space.enumerate():
            seen.setdefault(space.equivalence_key(arch), arch)
        cached = list(seen.values())
        space._prednas_classes = cached
    return cached


def classes_in_window(space: Any, window: Any) -> list[Any]:
    """The classes of ``enumerate_classes`` whose analytic cost lies in ``window``, in that order
    (cached per space and window: every round of a search filters the same classes)."""
    cache = getattr(space, "_prednas_windows", None)
    if cache is None:
        cache = space._prednas_windows = {}
    if window not in cache:
        cache[window] = [a for a in enumerate_classes(space) if window.contains(space.cost(a))]
    return cache[window]


def can_enumerate(space: Any, limit: int) -> bool:
    """Whether exhaustive scoring applies to ``space`` under ``limit``."""
    size = space.size()
    return limit > 0 and size is not None and size <= limit


_PRETRAINED: dict[tuple[str, int, int], dict[str, torch.Tensor]] = {}


def pretrained_state(space: Any, samples: int, epochs: int = PRETRAIN_EPOCHS) -> dict[str, torch.Tensor]:
    """Predictor weights pretrained to rank architectures by log analytic MACs (no training data).

    Uses every equivalence class of an enumerable space, else ``samples`` random ones drawn
    with a fixed seed; cached per process, so every search on a space shares one
    pretraining. Fine-tuning on measured accuracies starts from these weights.
    """
    from prednas.predictors.fit import FitConfig, fit_predictor

    key = (space.name, samples, epochs)
    if key not in _PRETRAINED:
        rng = np.random.default_rng(0)
        size = space.size()
        archs = enumerate_classes(space) if size is not None and size <= samples else [
            space.sample(rng) for _ in range(samples)
        ]
        x = np.stack([space.encode(a) for a in archs])
        y = np.log1p([space.cost(a)["macs"] for a in archs])
        config = FitConfig(epochs=epochs, batch_size=256)
        _PRETRAINED[key] = fit_predictor(space, x, y, seed=0, config=config).network.state_dict()
    return _PRETRAINED[key]
