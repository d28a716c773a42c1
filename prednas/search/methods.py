"""Search methods compared at an equal query budget of ``n + k`` (paper Table II).

- ``prednas-paper``: the paper's algorithm: N random samples, one predictor, Algorithm 1
  from ``starts`` random cells, the top K of the pool not yet queried. Its only changes
  from the paper are those it needs to work, named in ``prednas.search.gradient`` and
  ``prednas.predictors.gcn``; a pool shorter than K is topped up with random cells.
- ``prednas``: the default; see ``run_prednas``.
- ``random``: N + K distinct random cells.
- ``rea``: regularised evolution (Real et al. 2019): population 10, tournament 3, one
  mutation (a random field resampled) per child.
- ``predictor-random``: the same predictor ranking ``draws`` random cells (random shooting).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from prednas.errors import PredNASError
from prednas.evaluators.base import Evaluator
from prednas.predictors.fit import FitConfig, Predictor, fit_predictor
from prednas.search.acquisition import Ensemble, acquire, can_enumerate, enumerate_classes, pretrained_state
from prednas.search.gradient import GradientConfig, gradient_search
from prednas.search.history import History, sample_unseen

ACQUISITIONS = ("mean", "ucb")


@dataclass(frozen=True)
class SearchConfig:
    """Everything a method needs besides the space, the evaluator and the seed.

    ``rounds``, ``ensemble``, ``acquisition``/``beta``, ``exhaustive_limit`` and ``pretrain``
    (architectures used to pretrain on analytic cost; 0 turns it off) are the levers of
    ``prednas`` (see ``prednas.search.acquisition``); ``prednas-paper`` ignores them.
    """

    n: int = 30
    k: int = 40
    fit: FitConfig = field(default_factory=FitConfig)
    gradient: GradientConfig = field(default_factory=GradientConfig)
    rounds: int = 4
    ensemble: int = 1
    acquisition: str = "mean"
    beta: float = 0.5
    exhaustive_limit: int = 100_000
    pretrain: int = 20_000
    pretrain_epochs: int = 30
    draws: int = 20_000
    population: int = 10
    tournament: int = 3

    def __post_init__(self) -> None:
        if self.acquisition not in ACQUISITIONS:
            raise PredNASError(f"unknown acquisition {self.acquisition!r}; expected one of: {', '.join(ACQUISITIONS)}")
        for name in ("rounds", "ensemble", "draws", "population", "tournament"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise PredNASError(f"{name} must be a positive integer, got {value!r}")


def parse_overrides(config: SearchConfig, items: list[str]) -> SearchConfig:
    """Apply ``key=value`` overrides (``fit.epochs=200``, ``gradient.steps=100``, ``ensemble=3``)."""
    top: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {"fit": {}, "gradient": {}}
    for item in items:
        key, sep, raw = item.partition("=")
        target, _, leaf = key.rpartition(".")
        holder = getattr(config, target) if target in nested else config
        if not sep or (target and target not in nested) or not hasattr(holder, leaf):
            raise PredNASError(f"bad option {item!r}; expected key=value with a SearchConfig field")
        default = getattr(holder, leaf)
        try:
            value = type(default)(raw) if not isinstance(default, bool) else raw.lower() in ("1", "true", "yes")
        except ValueError:
            raise PredNASError(f"bad value in {item!r}; expected a {type(default).__name__}") from None
        (nested[target] if target else top)[leaf] = value
    fit = replace(config.fit, **nested["fit"])
    gradient = replace(config.gradient, **nested["gradient"])
    return replace(config, fit=fit, gradient=gradient, **top)


@dataclass
class SearchResult:
    """A finished search: its history, answer and diagnostics."""

    method: str
    history: History
    stats: dict[str, float] = field(default_factory=dict)

    @property
    def best(self) -> Any:
        """The queried architecture with the best search signal."""
        return self.history.best()


def _seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**31 - 1))


def fit_on(history: History, rng: np.random.Generator, config: SearchConfig, pretrain: bool = False) -> Predictor:
    """A predictor fitted on everything queried so far (from cost-pretrained weights if asked)."""
    x, y = history.training_set()
    init = pretrained_state(history.space, config.pretrain, config.pretrain_epochs) if pretrain else None
    return fit_predictor(history.space, x, y, seed=_seed(rng), config=config.fit, init=init)


def _sample_stage(history: History, rng: np.random.Generator, n: int) -> None:
    history.query_all(sample_unseen(history.space, history, rng, n), "sample")


def _top_up(history: History, rng: np.random.Generator, stage: str, count: int) -> None:
    history.query_all(sample_unseen(history.space, history, rng, count), stage)


def run_prednas_paper(history: History, rng: np.random.Generator, config: SearchConfig) -> dict[str, float]:
    """The paper's algorithm, one predictor and one pool."""
    _sample_stage(history, rng, config.n)
    predictor = fit_on(history, rng, config)
    pool = gradient_search(history.space, predictor, rng=rng, config=config.gradient)
    done = history.query_all(history.unseen(pool.archs), "top-k", limit=config.k)
    _top_up(history, rng, "top-k", config.k - done)
    return pool.stats


def run_prednas(history: History, rng: np.random.Generator, config: SearchConfig) -> dict[str, float]:
    """PredNAS with the K queries spent in ``rounds``, refitting an ensemble between them.

    Each round fits ``ensemble`` predictors on every triplet measured so far, proposes
    candidates (every equivalence class when the space is small enough to enumerate,
    Algorithm 1 otherwise), ranks them by the acquisition function and queries the best
    unseen ones, so later rounds learn from the top-K results of earlier ones.
    """
    _sample_stage(history, rng, config.n)
    sizes = np.diff(np.linspace(0, config.k, config.rounds + 1).round().astype(int))
    stats: dict[str, float] = {}
    for size in sizes:
        members = [fit_on(history, rng, config, pretrain=config.pretrain > 0) for _ in range(config.ensemble)]
        ensemble = Ensemble(members)
        candidates, stats = _propose(history, ensemble, rng, config)
        values = acquire(ensemble, candidates, config.acquisition, config.beta)
        order = np.argsort(-values, kind="stable")
        done = history.query_all((candidates[i] for i in order), "top-k", limit=int(size))
        _top_up(history, rng, "top-k", int(size) - done)
    return stats


def _propose(history: History, ensemble: Ensemble, rng: np.random.Generator,
             config: SearchConfig) -> tuple[list[Any], dict[str, float]]:
    space = history.space
    if can_enumerate(space, config.exhaustive_limit):
        candidates = history.unseen(enumerate_classes(space))
        return candidates, {"pool_size": float(len(candidates))}
    pool = gradient_search(space, ensemble, rng=rng, config=config.gradient)
    return history.unseen(pool.archs), pool.stats


def run_random(history: History, rng: np.random.Generator, config: SearchConfig) -> dict[str, float]:
    """N + K distinct random cells."""
    _sample_stage(history, rng, config.n + config.k)
    return {}


def run_predictor_random(history: History, rng: np.random.Generator, config: SearchConfig) -> dict[str, float]:
    """Random shooting: rank ``draws`` random cells with the same predictor."""
    _sample_stage(history, rng, config.n)
    predictor = fit_on(history, rng, config)
    candidates = history.unseen(history.space.sample(rng) for _ in range(config.draws))
    scores = predictor.predict_archs(candidates)
    order = np.argsort(-scores, kind="stable")
    done = history.query_all((candidates[i] for i in order), "top-k", limit=config.k)
    _top_up(history, rng, "top-k", config.k - done)
    return {"pool_size": float(len(candidates))}


def run_rea(history: History, rng: np.random.Generator, config: SearchConfig) -> dict[str, float]:
    """Regularised evolution: age-based removal, tournament selection, one mutation."""
    space = history.space
    population: deque[tuple[Any, float]] = deque()
    for arch in sample_unseen(space, history, rng, config.population):
        evaluation = history.query(arch, "sample")
        if evaluation is not None:
            population.append((arch, evaluation.accuracy))
    stalls = 0
    while history.remaining > 0 and population and stalls < 1000:
        picks = rng.choice(len(population), size=min(config.tournament, len(population)), replace=False)
        parent = max((population[i] for i in picks), key=lambda p: p[1])[0]
        child = mutate(space, parent, rng)
        evaluation = history.query(child, "evolve")
        if evaluation is None:
            stalls += 1
            continue
        stalls = 0
        population.append((child, evaluation.accuracy))
        if len(population) > config.population:
            population.popleft()
    return {}


def mutate(space: Any, arch: Any, rng: np.random.Generator) -> Any:
    """Resample one field of ``arch`` (one edge operation for a cell), keeping it different."""
    theta = space.param(arch)
    for _ in range(100):
        donor = space.param(space.sample(rng))
        rows = np.flatnonzero(np.any((theta != donor).reshape(len(theta), -1), axis=1))
        if len(rows):
            child = theta.copy()
            row = rng.choice(rows)
            child[row] = donor[row]
            return space.project(child)
    return space.sample(rng)


METHODS: dict[str, Callable[[History, np.random.Generator, SearchConfig], dict[str, float]]] = {
    "prednas": run_prednas,
    "prednas-paper": run_prednas_paper,
    "random": run_random,
    "rea": run_rea,
    "predictor-random": run_predictor_random,
}


def check_budget(space: Any, n: int, k: int) -> None:
    """N and K must be positive and fit in the space."""
    for name, value in (("n", n), ("k", k)):
        if not isinstance(value, int) or value <= 0:
            raise PredNASError(f"{name} must be a positive integer, got {value!r}")
    size = space.size()
    if size is not None and n + k > size:
        raise PredNASError(f"n + k = {n + k} exceeds the {size} architectures of space {space.name!r}")


def run_search(
    method: str,
    space: Any,
    evaluator: Evaluator,
    *,
    seed: int | np.random.Generator,
    config: SearchConfig = SearchConfig(),
) -> SearchResult:
    """Run one search method with a budget of ``config.n + config.k`` queries."""
    if method not in METHODS:
        raise PredNASError(f"unknown method {method!r}; expected one of: {', '.join(METHODS)}")
    check_budget(space, config.n, config.k)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    history = History(space, evaluator, config.n + config.k)
    stats = METHODS[method](history, rng, config)
    return SearchResult(method, history, stats)
