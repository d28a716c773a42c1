"""What the training evaluators share: building a space's network, checkpoint keys, latency.

A training evaluator builds the architecture with the space module's
``build(arch, num_classes)`` (so the classifier gets the data's classes, not the
space's default 1000), seeds its initial weights with the recipe's seed, and checkpoints
under a key made of the space, the evaluator-config hash and the architecture id, in the
step's output folder and the artifact store. Measured latency is the median of batch-1
inference passes on the evaluation device at the space's deployment input size.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from torch import nn

from prednas.errors import PredNASError
from prednas.evaluators.base import config_hash
from prednas.spaces.base import arch_id
from prednas.train.checkpoint import BlobStore, Checkpointer, fingerprint
from prednas.train.runtime import Runtime, build_seeded


def build_network(space: Any, arch: Any, num_classes: int, seed: int) -> nn.Module:
    """The network of ``arch`` with ``num_classes`` outputs and initial weights drawn from ``seed``."""
    factory = getattr(sys.modules.get(type(space).__module__), "build", None)
    if factory is None:
        raise PredNASError(f"space {getattr(space, 'name', space)!r} cannot build networks to train")
    return build_seeded(lambda: factory(arch, num_classes), seed)


def runtime_from(device: str, precision: str, workers: int | None) -> Runtime:
    """A ``Runtime`` from evaluator options."""
    return Runtime(device=device, precision=precision, workers=workers)


class CheckpointingMixin:
    """Checkpoint placement for an evaluator: a folder and/or a store, set by the running step."""

    checkpoint_dir: Path | None = None
    store: BlobStore | None = None

    def attach(self, checkpoint_dir: str | Path | None = None, store: BlobStore | None = None) -> Any:
        """Checkpoint every epoch into ``checkpoint_dir`` and/or ``store`` (what a pipeline step calls)."""
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.store = store
        return self

    def checkpointer(self, space: Any, arch: Any, config: dict[str, Any]) -> Checkpointer | None:
        """The checkpointer of one architecture under this evaluator's config (None without a place)."""
        if self.checkpoint_dir is None and self.store is None:
            return None
        aid = arch_id(space, arch)
        fp = fingerprint({"config": config, "space": space.name, "arch": space.to_dict(arch)})
        key = f"artifacts/checkpoints/{space.name}/{config_hash(config)}/{aid}.pt"
        directory = self.checkpoint_dir / space.name / config_hash(config) if self.checkpoint_dir else None
        return Checkpointer(fp, directory, self.store, key)
