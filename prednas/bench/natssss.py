"""FLOPs-constrained search on NATS-Bench sss: targets, windows and the in-window baselines.

The building blocks of ``prednas bench natssss``. A target is a quantile of the FLOPs of
all 32,768 architectures on the chosen dataset (``target_from_quantile``), or a given
figure; the window keeps the architectures whose FLOPs lie within a relative half-width of
it (``make_window``, default +-5 %), the same ``CostWindow`` rule the product's search uses.
``in_window_optimum`` is the best test accuracy inside the window, what every method is
measured against, and ``in_window`` checks a method's answer.

FLOPs are the space's (2 x MACs, where MACs are NATS-Bench's "FLOPs"; see
``prednas.spaces.natssss``). Quantiles and windows are the same architectures in either unit.

The baselines only ever propose architectures inside the window, each query a distinct one,
so their budget is spent entirely on candidates that could be the answer:

- ``random_in_window``: ``budget`` distinct architectures drawn uniformly from the window.
- ``rea_in_window``: regularised evolution (Real et al. 2019, as ``rea`` in
  ``prednas.search.methods``: population 10, tournament 3, age-based removal) started from
  random in-window architectures; a child changes one layer's channel count, drawn
  uniformly among the single-layer changes that stay in the window and were not queried
  yet. A parent with no such change is replaced by a random unqueried in-window
  architecture, so the budget is always spent.

Both return the product's ``History``; its ``best()`` is the answer (best search signal).
"""

from __future__ import annotations

import functools
import math
from collections import deque
from typing import Any

import numpy as np

from prednas.errors import PredNASError
from prednas.evaluators.base import Evaluator
from prednas.search.gradient import CostWindow
from prednas.search.history import History
from prednas.spaces.natssss import CHANNELS, NatsSssArch, NatsSssSpace, from_index

DEFAULT_WINDOW = 0.05
METRIC = "flops"
QUANTILES: tuple[float, ...] = (0.25, 0.5, 0.75)  # the targets of the acceptance runs


@functools.lru_cache(maxsize=8)
def _costs(num_classes: int, input_size: int, metric: str) -> np.ndarray:
    space = NatsSssSpace(num_classes, input_size)
    values = np.array([space.cost(a)[metric] for a in space.enumerate()], dtype=np.float64)
    values.flags.writeable = False
    return values


def space_costs(space: NatsSssSpace, metric: str = METRIC) -> np.ndarray:
    """``metric`` (``macs``, ``flops`` or ``params``) of every architecture, in NATS-Bench index order (cached)."""
    if metric not in ("macs", "flops", "params"):
        raise PredNASError(f"unknown cost metric {metric!r}; expected one of: macs, flops, params")
    return _costs(space.num_classes, space.input_size, metric)


def target_from_quantile(space: NatsSssSpace, q: float, metric: str = METRIC) -> float:
    """The ``q``-quantile of ``metric`` over the whole space (linear interpolation)."""
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 <= q <= 1.0:
        raise PredNASError(f"target quantile = {q!r}: expected a number in 0..1")
    return float(np.quantile(space_costs(space, metric), q))


def make_window(target: float, window: float = DEFAULT_WINDOW, metric: str = METRIC) -> CostWindow:
    """``target +- window x target`` on ``metric``."""
    if isinstance(target, bool) or not isinstance(target, (int, float)) or not math.isfinite(target) or target <= 0:
        raise PredNASError(f"target {metric} = {target!r}: expected a positive number")
    if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0.0 < window < 1.0:
        raise PredNASError(f"window = {window!r}: expected a relative half-width between 0 and 1 (e.g. 0.05)")
    return CostWindow(metric, float(target), float(window) * float(target))


def window_indices(space: NatsSssSpace, window: CostWindow) -> np.ndarray:
    """NATS-Bench indices of the architectures inside ``window``; none inside is an error."""
    inside = np.flatnonzero(np.abs(space_costs(space, window.metric) - window.target) <= window.delta)
    if not len(inside):
        raise PredNASError(f"no {space.name} architecture has {window.metric} in {window.target:.4g} "
                           f"+- {window.delta:.3g}; widen the window or move the target")
    return inside


def in_window(space: NatsSssSpace, arch: NatsSssArch, window: CostWindow) -> bool:
    """Whether ``arch``'s cost lies inside ``window`` (the check applied to every answer)."""
    return window.contains(space.cost(arch))


def in_window_optimum(evaluator: Any, window: CostWindow) -> tuple[NatsSssArch, float]:
    """The in-window architecture with the best test accuracy, and that accuracy (no query counted)."""
    inside = window_indices(evaluator.space, window)
    best = inside[int(np.argmax(evaluator.test_column()[inside]))]
    arch = from_index(int(best))
    return arch, evaluator.test_of(arch)


def window_summary(evaluator: Any, window: CostWindow) -> dict[str, Any]:
    """What a report states about a window: its bounds, how many architectures it holds, its optimum."""
    arch, accuracy = in_window_optimum(evaluator, window)
    return {"metric": window.metric, "target": window.target, "delta": window.delta,
            "architectures": len(window_indices(evaluator.space, window)),
            "optimum": {"arch": str(arch), "test_accuracy": accuracy}}


def random_in_window(space: NatsSssSpace, evaluator: Evaluator, rng: np.random.Generator, budget: int,
                     window: CostWindow) -> History:
    """``budget`` distinct architectures drawn uniformly from the window, all queried."""
    history = History(space, evaluator, _check_budget(space, budget, window))
    for i in rng.choice(window_indices(space, window), size=budget, replace=False):
        history.query(from_index(int(i)), "sample")
    return history


def rea_in_window(space: NatsSssSpace, evaluator: Evaluator, rng: np.random.Generator, budget: int,
                  window: CostWindow, *, population: int = 10, tournament: int = 3) -> History:
    """Regularised evolution whose every query lies in the window (see the module docstring)."""
    for name, value in (("population", population), ("tournament", tournament)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PredNASError(f"{name} = {value!r}: expected a positive integer")
    history = History(space, evaluator, _check_budget(space, budget, window))
    alive: deque[tuple[NatsSssArch, float]] = deque()
    for i in rng.choice(window_indices(space, window), size=min(population, budget), replace=False):
        arch = from_index(int(i))
        alive.append((arch, history.query(arch, "sample").accuracy))
    while history.remaining > 0:
        picks = rng.choice(len(alive), size=min(tournament, len(alive)), replace=False)
        parent = max((alive[i] for i in picks), key=lambda p: p[1])[0]
        child = mutate_in_window(space, parent, window, rng, history) or _unseen_in_window(space, window, rng, history)
        alive.append((child, history.query(child, "evolve").accuracy))
        if len(alive) > population:
            alive.popleft()
    return history


def mutate_in_window(space: NatsSssSpace, arch: NatsSssArch, window: CostWindow, rng: np.random.Generator,
                     history: History | None = None) -> NatsSssArch | None:
    """A uniformly drawn single-layer change of ``arch`` inside the window (and not in ``history``); None if none."""
    children = [NatsSssArch((*arch.channels[:i], c, *arch.channels[i + 1:]))
                for i in range(len(arch.channels)) for c in CHANNELS if c != arch.channels[i]]
    children = [c for c in children if in_window(space, c, window) and not (history is not None and history.seen(c))]
    return children[int(rng.integers(len(children)))] if children else None


def _unseen_in_window(space: NatsSssSpace, window: CostWindow, rng: np.random.Generator,
                      history: History) -> NatsSssArch:
    unseen = [from_index(int(i)) for i in window_indices(space, window)]
    unseen = [a for a in unseen if not history.seen(a)]
    return unseen[int(rng.integers(len(unseen)))]


def _check_budget(space: NatsSssSpace, budget: int, window: CostWindow) -> int:
    size = len(window_indices(space, window))
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= size:
        raise PredNASError(f"budget = {budget!r}: expected an integer in 1..{size} (the architectures in the window)")
    return budget
