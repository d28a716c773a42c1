"""FLOPs-constrained search on NATS-Bench sss at an equal query budget: ``prednas bench natssss``.

Every method answers with an architecture inside the window ``target +- window x target``
(FLOPs; ``prednas.bench.natssss``) and is measured by that architecture's test accuracy
against the best inside the window (``optimum``). Repeat ``r`` of seed ``S`` runs under the
run seed ``1000 * S + r`` (``prednas.bench.runner``), so the methods of one repeat are paired.

The pipeline methods are the product's search from the packaged ``natssss-cifar100.yaml``
with the dataset, N, K, seed and the cost window set, tracking off, a fresh in-memory store
and the config overrides of ``WINDOW_METHODS``:

- ``prednas``: the config as shipped: every class of the space scored and the window's kept
  (the search step enumerates only when no alpha is above 0), the last round starting next to
  the best measured (``refine``);
- ``prednas-gradient``: enumeration off and the window term on, so Algorithm 1 under the
  window proposes every round (``exhaustive_limit=0``, ``alphas=[1.0]``, and ``refine=0``: no
  proposals next to the best measured, so Algorithm 1 alone chooses what is measured).

The baselines:

- ``predictor-random``: the pipeline's own sample, evaluate and first fit steps (the same N
  architectures and the same fitted predictor as ``prednas-gradient``), then random shooting
  (``prednas.search.constrained.random_shooting``) with as many predictor evaluations as
  Algorithm 1 makes in all of ``prednas-gradient``'s rounds (``gradient_evaluations``; the
  search step records them per round as ``evaluations``); the K best predicted unseen
  in-window architectures are queried in one go (no refit between rounds);
- ``rea`` and ``random``: ``rea_in_window`` and ``random_in_window`` with N + K queries.

The answer of a baseline is its best queried architecture inside the window, as the
pipeline's ``select`` chooses under a cost target.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from typing import Any

from prednas.bench.natssss import (
    DEFAULT_WINDOW,
    in_window,
    in_window_optimum,
    make_window,
    random_in_window,
    rea_in_window,
    target_from_quantile,
    window_indices,
)
from prednas.bench.runner import check_repeats, pipeline_answer, run_all, run_pipeline, run_seed, store_name, summarise
from prednas.errors import PredNASError
from prednas.evaluators.natssss_table import DATASETS, NatsSssTableEvaluator, dataset_space
from prednas.search.gradient import CostWindow
from prednas.search.history import History

WINDOW_METHODS: dict[str, tuple[str, ...]] = {
    "prednas": (),
    "prednas-gradient": ("exhaustive_limit=0", "alphas=[1.0]", "refine=0"),
}
BASELINES: tuple[str, ...] = ("predictor-random", "rea", "random")
METHODS: tuple[str, ...] = (*WINDOW_METHODS, *BASELINES)
CONFIG = "natssss-cifar100.yaml"


@dataclass(frozen=True)
class WindowJob:
    """One repeat of one method on one dataset and window."""

    method: str
    repeat: int
    dataset: str
    seed: int
    n: int
    k: int
    target: float
    window: float  # relative half-width
    overrides: tuple[str, ...] = ()

    @property
    def run_seed(self) -> int:
        """The seed this repeat runs under."""
        return run_seed(self.seed, self.repeat)

    @property
    def cost_window(self) -> CostWindow:
        """The FLOPs window every answer must lie in."""
        return make_window(self.target, self.window)


def config_path() -> str:
    """The packaged NATS-Bench sss config the pipeline methods start from."""
    from importlib import resources

    return str(resources.files("prednas.pipelines") / "configs" / CONFIG)


def window_spec(job: WindowJob, method: str, store: str = "memory://bench") -> Any:
    """The search config of a pipeline method's repeat: the packaged config with this job's settings."""
    from prednas.pipeline.config import load_config

    cost = make_window(job.target, job.window)
    return load_config(config_path(), [
        f"evaluator.dataset={job.dataset}", f"n={job.n}", f"k={job.k}", f"seed={job.run_seed}", "tracking_uri=none",
        f"store_uri={store}", "predictor.cv_folds=0",
        f"cost={{metric: {cost.metric}, target: {cost.target!r}, window: {cost.delta!r}}}",
        *WINDOW_METHODS[method], *job.overrides])


def gradient_evaluations(spec: Any) -> int:
    """Relaxed points Algorithm 1 scores in all rounds of ``spec`` (what the search step records as ``evaluations``)."""
    from prednas.search.constrained import SIZE_GRADIENT, ConstrainedConfig

    options = {k: v for k, v in spec.gradient.items() if k != "penalty"}
    per_round = ConstrainedConfig(gradient=replace(SIZE_GRADIENT, **options), alphas=spec.alphas).evaluations
    return spec.rounds * per_round


def run_window_job(job: WindowJob) -> dict[str, Any]:
    """Run one repeat; its answer, whether it lies in the window, and diagnostics."""
    import torch

    torch.set_num_threads(1)
    space = dataset_space(job.dataset)
    if job.method in WINDOW_METHODS:
        name = store_name(job.method, job.repeat)
        report = run_pipeline(window_spec(job, job.method, f"memory://{name}"), name)
        arch = space.from_dict(report["best"]["arch"])
        row = pipeline_answer(report)
    else:
        history, stats = _baseline(job, space)
        best = _best_inside(history, job.cost_window)
        arch = best.arch
        row = {"test": best.evaluation.report["test_accuracy"], "signal": best.evaluation.accuracy,
               "queries": len(history), "stats": stats}
    return {**row, "repeat": job.repeat, "run_seed": job.run_seed, "method": job.method, "arch": str(arch),
            "in_window": in_window(space, arch, job.cost_window)}


def _baseline(job: WindowJob, space: Any) -> tuple[History, dict[str, float]]:
    from prednas.pipeline.exchange import rng_for

    evaluator = NatsSssTableEvaluator(job.dataset)
    if job.method == "predictor-random":
        return _predictor_random(job, space, evaluator)
    run = random_in_window if job.method == "random" else rea_in_window
    return run(space, evaluator, rng_for(job.run_seed, "search"), job.n + job.k, job.cost_window), {}


def _predictor_random(job: WindowJob, space: Any, evaluator: Any) -> tuple[History, dict[str, float]]:
    """The pipeline's sample and first fit, then random shooting in the window at Algorithm 1's evaluations."""
    from prednas.pipeline import exchange, steps
    from prednas.pipeline.fitting import one_thread
    from prednas.predictors.fit import Predictor
    from prednas.search.constrained import random_shooting
    from prednas.store.memory import drop

    name = store_name(job.method, job.repeat)
    spec = window_spec(job, "prednas-gradient", f"memory://{name}")
    key, state = f"bench-{spec.seed}", "FAILED"
    try:
        context, shards = steps.sample(spec, run_key=key)
        measured = [t for shard in shards for t in steps.evaluate(context, shard)[0]]
        fit = steps.fit_predictors(context, measured)
        state = "SUCCEEDED"
    finally:
        steps.close(spec.tracking_uri, spec.experiment, key, state)
        drop(name)
    history = History(space, evaluator, spec.n + spec.k)
    history.query_all((space.from_dict(t.arch) for t in measured), "sample")
    draws = gradient_evaluations(spec)
    with one_thread():
        pool = random_shooting(space, Predictor.from_bytes(space, fit["main"]), job.cost_window,
                               rng=exchange.rng_for(spec.seed, "search", 1), draws=draws)
    done = history.query_all(history.unseen(pool.archs), "top-k", limit=spec.k)
    if done < spec.k:
        _top_up(history, job.cost_window, exchange.rng_for(spec.seed, "top-up", 1))
    return history, {"pool_size": pool.stats["pool_size"], "evaluations": float(draws)}


def _top_up(history: History, window: CostWindow, rng: Any) -> None:
    """Spend what is left of the budget on random unseen architectures inside the window."""
    from prednas.spaces.natssss import from_index

    for i in rng.permutation(window_indices(history.space, window)):
        if history.remaining <= 0:
            break
        history.query(from_index(int(i)), "top-k")


def _best_inside(history: History, window: CostWindow) -> Any:
    """The best query inside the window (every query when none is), first on ties."""
    inside = [q for q in history.queries if in_window(history.space, q.arch, window)] or history.queries
    return max(inside, key=lambda q: q.evaluation.accuracy)


def check_methods(methods: list[str]) -> list[str]:
    """Known method names, at least one, else one line listing them."""
    if not methods:
        raise PredNASError(f"--methods is empty; expected some of: {', '.join(METHODS)}")
    for method in methods:
        if method not in METHODS:
            raise PredNASError(f"--methods: unknown method {method!r}; expected some of: {', '.join(METHODS)}")
    return methods


def resolve_target(dataset: str, quantile: float | None, flops: float | None) -> tuple[float, float | None]:
    """The window's centre in FLOPs, from a quantile of the space's FLOPs (default the median) or given."""
    if dataset not in DATASETS:
        raise PredNASError(f"--dataset {dataset!r}: expected one of: {', '.join(DATASETS)}")
    if quantile is not None and flops is not None:
        raise PredNASError("--target-quantile and --target-flops both given; expected one of them")
    if flops is not None:
        if isinstance(flops, bool) or not isinstance(flops, (int, float)) or not math.isfinite(flops) or flops <= 0:
            raise PredNASError(f"--target-flops {flops!r}: expected a positive number of FLOPs (2 x MACs)")
        return float(flops), None
    q = 0.5 if quantile is None else quantile
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 < q < 1.0:
        raise PredNASError(f"--target-quantile {q!r}: expected a number strictly between 0 and 1")
    return target_from_quantile(dataset_space(dataset), float(q)), float(q)


def check_window(dataset: str, target: float, window: float, budget: int) -> int:
    """The number of architectures in the window; it must hold the N + K queries of the in-window baselines."""
    if isinstance(window, bool) or not isinstance(window, (int, float)) or not 0.0 < window < 1.0:
        raise PredNASError(f"--window {window!r}: expected a relative half-width strictly between 0 and 1 "
                           f"(default {DEFAULT_WINDOW})")
    cost = make_window(target, window)
    try:
        size = len(window_indices(dataset_space(dataset), cost))
    except PredNASError:
        raise PredNASError(f"--window {window!r} around {target:.4g} FLOPs holds no {dataset} architecture; "
                           "expected a wider --window or another target") from None
    if budget > size:
        raise PredNASError(f"--n + --k = {budget} exceeds the {size} architectures in the window "
                           f"({target:.4g} FLOPs +- {window:g}); expected a wider --window or a smaller budget")
    return size


def run_natssss(dataset: str, *, n: int, k: int, repeats: int, seed: int, methods: list[str],
                target_quantile: float | None = None, target_flops: float | None = None,
                window: float = DEFAULT_WINDOW, workers: int | None = None, overrides: tuple[str, ...] = (),
                progress: Any = None) -> dict[str, Any]:
    """Run every method ``repeats`` times in one FLOPs window; the nb201 report plus the window and its optimum."""
    check_methods(methods)
    target, quantile = resolve_target(dataset, target_quantile, target_flops)
    for name, value in (("--n", n), ("--k", k)):
        if isinstance(value, bool) or not isinstance(value, int) or value < (2 if name == "--n" else 1):
            raise PredNASError(f"{name} {value!r}: expected an integer of at least {2 if name == '--n' else 1}")
    size = check_window(dataset, target, window, n + k)
    check_repeats(repeats, seed)
    jobs = [WindowJob(m, r, dataset, seed, n, k, target, window, tuple(overrides))
            for m in methods for r in range(repeats)]
    for m in {j.method for j in jobs} & set(WINDOW_METHODS):
        window_spec(jobs[0], m)  # a bad --set fails before any search runs
    evaluator = NatsSssTableEvaluator(dataset)
    cost = make_window(target, window)
    optimum_arch, optimum = in_window_optimum(evaluator, cost)
    start = time.perf_counter()
    rows = run_all(run_window_job, jobs, workers, progress)
    results = {}
    for m in methods:
        mine = sorted((r for r in rows if r["method"] == m), key=lambda r: r["repeat"])
        results[m] = {**summarise(mine), "in_window": [bool(r["in_window"]) for r in mine]}
    return {"dataset": dataset, "n": n, "k": k, "repeats": repeats, "seed": seed, "signal": "test",
            "results": results, "wall_seconds": time.perf_counter() - start,
            "metric": cost.metric, "target": target, "target_quantile": quantile, "window": float(window),
            "delta": cost.delta, "architectures": size, "optimum": optimum, "optimum_arch": str(optimum_arch)}
