"""Search methods compared at an equal query budget of ``n + k`` (paper Table II).

The two PredNAS methods are the product's own pipeline, run in process by
``prednas.pipeline.inprocess.run_inprocess`` (``PIPELINE_METHODS`` names their config
overrides):

- ``prednas``: the default search config: K spent in rounds, every class scored when the
  space is enumerable, a cost-pretrained predictor;
- ``prednas-paper``: the same pipeline with one round, no enumeration and no pretraining:
  the paper's single pass (Algorithm 1 from ``gradient.starts`` random cells, the top K).

The baselines below run on a ``History`` and draw from the pipeline's random streams
(``prednas.pipeline.exchange.rng_for``) under the same run seed, so every method of one
repeat starts from the same cells as the pipeline's sample step:

- ``random``: N + K distinct random cells (the first N are the pipeline's samples);
- ``rea``: regularised evolution (Real et al. 2019): population 10 (the first samples),
  tournament 3, one mutation (a random field resampled) per child;
- ``predictor-random``: the paper's predictor, fitted on the N samples, ranking
  ``DRAWS`` random cells (random shooting).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from prednas.errors import PredNASError
from prednas.search.history import History, draw_distinct

PIPELINE_METHODS: dict[str, tuple[str, ...]] = {
    "prednas": (),
    "prednas-paper": ("rounds=1", "exhaustive_limit=0", "pretrain=0"),
}
DRAWS = 20_000  # predictor-random's random cells
POPULATION, TOURNAMENT = 10, 3  # rea


def _rng(seed: int, stream: str) -> np.random.Generator:
    from prednas.pipeline.exchange import rng_for

    return rng_for(seed, stream)


def _samples(history: History, seed: int, count: int) -> list[Any]:
    """The pipeline sample step's first ``count`` cells under ``seed`` (on an empty store)."""
    return draw_distinct(history.space, set(), _rng(seed, "sample"), count)


def run_random(history: History, seed: int, spec: Any) -> dict[str, float]:
    """N + K distinct random cells."""
    history.query_all(_samples(history, seed, spec.n + spec.k), "sample")
    return {}


def run_predictor_random(history: History, seed: int, spec: Any) -> dict[str, float]:
    """Random shooting: the paper's predictor, fitted on the N samples, ranks ``DRAWS`` random cells."""
    from prednas.pipeline.exchange import seed_for
    from prednas.pipeline.fitting import fit_config
    from prednas.predictors.fit import fit_predictor

    history.query_all(_samples(history, seed, spec.n), "sample")
    x, y = history.training_set()
    predictor = fit_predictor(history.space, x, y, seed=seed_for(seed, "fit", 1), config=fit_config(spec.predictor))
    rng = _rng(seed, "search")
    candidates = history.unseen(history.space.sample(rng) for _ in range(DRAWS))
    scores = predictor.predict_archs(candidates)
    order = np.argsort(-scores, kind="stable")
    done = history.query_all((candidates[i] for i in order), "top-k", limit=spec.k)
    history.query_all(draw_distinct(history.space, set(history.keys), _rng(seed, "top-up"), spec.k - done), "top-k")
    return {"pool_size": float(len(candidates))}


def run_rea(history: History, seed: int, spec: Any) -> dict[str, float]:
    """Regularised evolution: age-based removal, tournament selection, one mutation."""
    space = history.space
    population: deque[tuple[Any, float]] = deque()
    for arch in _samples(history, seed, POPULATION):
        evaluation = history.query(arch, "sample")
        if evaluation is not None:
            population.append((arch, evaluation.accuracy))
    rng = _rng(seed, "search")
    stalls = 0
    while history.remaining > 0 and population and stalls < 1000:
        picks = rng.choice(len(population), size=min(TOURNAMENT, len(population)), replace=False)
        parent = max((population[i] for i in picks), key=lambda p: p[1])[0]
        child = mutate(space, parent, rng)
        evaluation = history.query(child, "evolve")
        if evaluation is None:
            stalls += 1
            continue
        stalls = 0
        population.append((child, evaluation.accuracy))
        if len(population) > POPULATION:
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


BASELINES: dict[str, Callable[[History, int, Any], dict[str, float]]] = {
    "random": run_random,
    "rea": run_rea,
    "predictor-random": run_predictor_random,
}
METHODS: tuple[str, ...] = (*PIPELINE_METHODS, *BASELINES)


def check_method(method: str) -> str:
    """A known method name, else one line listing them."""
    if method not in METHODS:
        raise PredNASError(f"unknown method {method!r}; expected one of: {', '.join(METHODS)}")
    return method


def check_budget(space: Any, n: int, k: int) -> None:
    """N and K must be positive and fit in the space."""
    for name, value in (("n", n), ("k", k)):
        if not isinstance(value, int) or value <= 0:
            raise PredNASError(f"{name} must be a positive integer, got {value!r}")
    size = space.size()
    if size is not None and n + k > size:
        raise PredNASError(f"n + k = {n + k} exceeds the {size} architectures of space {space.name!r}")


def run_baseline(method: str, space: Any, evaluator: Any, *, seed: int, spec: Any) -> tuple[History, dict[str, float]]:
    """Run one baseline with a budget of ``spec.n + spec.k`` queries under run seed ``seed``."""
    if method not in BASELINES:
        raise PredNASError(f"unknown baseline {method!r}; expected one of: {', '.join(BASELINES)}")
    check_budget(space, spec.n, spec.k)
    history = History(space, evaluator, spec.n + spec.k)
    return history, BASELINES[method](history, seed, spec)
