"""Tracking turned off (``tracking_uri: none``): the search runs and stores triplets, MLflow sees nothing.

Benchmarks run the pipeline's own steps thousands of times; each search keeps its triplets
in the store as usual but logs nowhere. Every tracker call is accepted and does nothing;
the parent run id is derived from the run key, so steps still tell runs apart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

NONE_URI = "none"


class NullTracker:
    """A tracker that records nothing."""

    tracking_uri = NONE_URI

    def start_parent(self, run_name: str, params: Mapping[str, Any], tags: Mapping[str, Any], *,
                     key: str | None = None) -> str:
        """A run id derived from ``key`` (the same key gives the same id)."""
        return "none-" + hashlib.sha256((key or run_name).encode()).hexdigest()[:24]

    def attach(self, run_id: str) -> str:
        """Nothing to attach to; returns ``run_id``."""
        return run_id

    def log_predictor(self, *args: Any, **kwargs: Any) -> None:
        """No registry: no version."""
        return None

    def log_training_set(self, parent_run_id: str, triplets: Any, *args: Any, **kwargs: Any) -> str:
        """The training hash of ``triplets``, as the real tracker returns it."""
        from prednas.store.triplet import training_hash

        return training_hash(list(triplets))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return _nothing


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None
