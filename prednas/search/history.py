"""The record of one search: every architecture queried, deduplicated by equivalence."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from prednas.evaluators.base import Evaluation, Evaluator


@dataclass(frozen=True)
class Query:
    """One evaluated architecture and the stage that asked for it."""

    arch: Any
    evaluation: Evaluation
    stage: str


class History:
    """Queries one evaluator under a budget, never twice for equivalent architectures."""

    def __init__(self, space: Any, evaluator: Evaluator, budget: int) -> None:
        self.space = space
        self.evaluator = evaluator
        self.budget = budget
        self.queries: list[Query] = []
        self._keys: set[str] = set()

    def __len__(self) -> int:
        return len(self.queries)

    @property
    def remaining(self) -> int:
        """Queries left in the budget."""
        return self.budget - len(self.queries)

    @property
    def keys(self) -> frozenset[str]:
        """Equivalence keys of every architecture queried so far."""
        return frozenset(self._keys)

    def seen(self, arch: Any) -> bool:
        """Whether an equivalent architecture was already queried."""
        return self.space.equivalence_key(arch) in self._keys

    def query(self, arch: Any, stage: str) -> Evaluation | None:
        """Evaluate ``arch`` unless it was seen or the budget is spent."""
        if self.remaining <= 0 or self.seen(arch):
            return None
        evaluation = self.evaluator.evaluate(self.space, arch)
        self._keys.add(self.space.equivalence_key(arch))
        self.queries.append(Query(arch, evaluation, stage))
        return evaluation

    def query_all(self, archs: Iterable[Any], stage: str, limit: int | None = None) -> int:
        """Query architectures in order until ``limit`` new ones (or the budget) are spent."""
        done = 0
        for arch in archs:
            if limit is not None and done >= limit:
                break
            if self.query(arch, stage) is not None:
                done += 1
        return done

    def best(self) -> Query:
        """The query with the best search signal (first on ties)."""
        return max(self.queries, key=lambda q: q.evaluation.accuracy)

    def training_set(self) -> tuple[np.ndarray, np.ndarray]:
        """Encodings and accuracies of every query."""
        x = np.stack([self.space.encode(q.arch) for q in self.queries])
        y = np.array([q.evaluation.accuracy for q in self.queries])
        return x, y

    def unseen(self, archs: Iterable[Any]) -> list[Any]:
        """Architectures not yet queried, one per equivalence class, order kept."""
        keys = set(self._keys)
        out = []
        for arch in archs:
            key = self.space.equivalence_key(arch)
            if key not in keys:
                keys.add(key)
                out.append(arch)
        return out


def sample_unseen(
    space: Any, history: History, rng: np.random.Generator, count: int, max_draws: int = 100_000
) -> list[Any]:
    """Up to ``count`` random architectures from classes not yet queried, distinct from each other."""
    out: list[Any] = []
    keys: set[str] = set()
    for _ in range(max_draws):
        if len(out) >= count:
            break
        arch = space.sample(rng)
        key = space.equivalence_key(arch)
        if key in keys or history.seen(arch):
            continue
        keys.add(key)
        out.append(arch)
    return out


def draw_distinct(space: Any, known: set[str], rng: np.random.Generator, count: int,
                  max_draws: int = 200_000, draw: Callable[[np.random.Generator], Any] | None = None) -> list[Any]:
    """Up to ``count`` random architectures of distinct equivalence classes, none in ``known`` (keys).

    The pipeline's sample step draws its N architectures this way, and the baselines draw
    theirs from the same stream, so a benchmark's methods start from the same cells.
    ``draw`` replaces ``space.sample`` (e.g. a draw inside a cost window); one that returns
    None has run out, and the list ends there.
    """
    draw = draw or space.sample
    keys = set(known)
    out: list[Any] = []
    for _ in range(max_draws):
        if len(out) >= count:
            break
        arch = draw(rng)
        if arch is None:
            break
        key = space.equivalence_key(arch)
        if key not in keys:
            keys.add(key)
            out.append(arch)
    return out
