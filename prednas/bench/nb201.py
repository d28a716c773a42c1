"""The Table II protocol on NAS-Bench-201 (paper Sec. IV-A), measured on the product.

Repeat ``r`` of ``--seed S`` runs under the run seed ``1000 * S + r`` (``run_seed``): the
``prednas`` and ``prednas-paper`` methods are the pipeline itself, run in process from
the packaged default config (``nb201-cifar100.yaml``) with the dataset, N, K and that
seed set, tracking off and a fresh in-memory store, so ``prednas run --in-process --seed
1000 * S + r`` (on an empty store, same dataset, N and K) chooses the cell the benchmark
recorded. The baselines draw from the pipeline's random streams under the same run seed,
so every method of one repeat starts from the same cells (paired). The answer of a run
is the queried cell with the best search signal; its test accuracy is what is reported.
Repeats run in worker processes; results do not depend on their number or scheduling.
Cross-validation of the predictor fit is switched off (``predictor.cv_folds=0``): it is
reported, never used to choose, so the answers are those of the default config.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prednas.bench.runner import check_repeats, pipeline_answer, run_all, run_pipeline, run_seed, store_name, summarise
from prednas.errors import PredNASError
from prednas.evaluators.nb201_table import DATASETS, SIGNALS, NB201TableEvaluator, check_dataset
from prednas.search.methods import METHODS, PIPELINE_METHODS, check_budget, check_method, run_baseline

# Paper Table II (70 queries, 15 repeats): mean test accuracy per dataset.
PAPER_TABLE_II: dict[str, tuple[float, float, float]] = {
    "Optimal": (94.37, 73.51, 47.31),
    "Random": (93.80, 71.18, 45.38),
    "BOHB": (93.57, 71.36, 45.04),
    "RL": (93.88, 71.63, 45.03),
    "REA": (94.04, 71.78, 45.52),
    "AceNAS": (94.15, 72.64, 45.99),
    "PredNAS (paper)": (94.20, 73.09, 46.72),
}


@dataclass(frozen=True)
class Job:
    """One repeat of one method under one set of config overrides; ``label`` names its row."""

    label: str
    method: str
    repeat: int
    dataset: str
    signal: str
    seed: int
    n: int
    k: int
    overrides: tuple[str, ...] = ()

    @property
    def run_seed(self) -> int:
        """The seed this repeat runs under."""
        return run_seed(self.seed, self.repeat)


def bench_spec(dataset: str, signal: str, n: int, k: int, seed: int, overrides: tuple[str, ...] = (),
               store: str = "memory://bench") -> Any:
    """The search config a benchmark repeat runs: the packaged default with these settings, tracking off."""
    from prednas.pipeline.config import load_config

    return load_config(None, [f"evaluator.dataset={dataset}", f"evaluator.signal={signal}", f"n={n}", f"k={k}",
                              f"seed={seed}", "tracking_uri=none", f"store_uri={store}", "predictor.cv_folds=0",
                              *overrides])


def run_job(job: Job) -> dict[str, Any]:
    """Run one search and return its answer and diagnostics."""
    import torch

    torch.set_num_threads(1)
    if job.method in PIPELINE_METHODS:
        return {"label": job.label, "repeat": job.repeat, "run_seed": job.run_seed, **_pipeline_job(job)}
    evaluator = NB201TableEvaluator(job.dataset, job.signal)
    spec = bench_spec(job.dataset, job.signal, job.n, job.k, job.run_seed, job.overrides)
    history, stats = run_baseline(job.method, evaluator.space, evaluator, seed=job.run_seed, spec=spec)
    best = history.best()
    return {"label": job.label, "repeat": job.repeat, "run_seed": job.run_seed,
            "test": best.evaluation.report["test_accuracy"], "signal": best.evaluation.accuracy,
            "arch": str(best.arch), "queries": len(history), "stats": stats}


def _pipeline_job(job: Job) -> dict[str, Any]:
    """The pipeline's own search, in process, on a fresh in-memory store."""
    name = store_name(job.label, job.repeat)
    spec = bench_spec(job.dataset, job.signal, job.n, job.k, job.run_seed,
                      (*PIPELINE_METHODS[job.method], *job.overrides), store=f"memory://{name}")
    report = run_pipeline(spec, name)
    return {**pipeline_answer(report), "arch": report["best"]["arch"]["arch"]}


def check_methods(methods: list[str]) -> list[str]:
    """Validate method names."""
    for method in methods:
        check_method(method)
    if not methods:
        raise PredNASError(f"no method given; expected some of: {', '.join(METHODS)}")
    return methods


def run_benchmark(
    dataset: str,
    *,
    n: int,
    k: int,
    repeats: int,
    seed: int,
    methods: list[str],
    signal: str = "valid",
    workers: int | None = None,
    overrides: tuple[str, ...] = (),
    progress: Any = None,
) -> dict[str, Any]:
    """Run every method ``repeats`` times and collect the Table II figures."""
    check_methods(methods)
    entries = {m: (m, tuple(overrides)) for m in methods}
    return run_entries(dataset, entries, n=n, k=k, repeats=repeats, seed=seed, signal=signal, workers=workers,
                       progress=progress)


def run_entries(
    dataset: str,
    entries: dict[str, tuple[str, tuple[str, ...]]],
    *,
    n: int,
    k: int,
    repeats: int,
    seed: int,
    signal: str = "valid",
    workers: int | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Run each labelled (method, config overrides) ``repeats`` times, paired by run seed."""
    check_dataset(dataset)
    if signal not in SIGNALS:
        raise PredNASError(f"unknown signal {signal!r}; expected one of: {', '.join(SIGNALS)}")
    check_repeats(repeats, seed)
    space = NB201TableEvaluator(dataset, signal).space
    check_budget(space, n, k)
    for method, overrides in entries.values():
        check_method(method)
        bench_spec(dataset, signal, n, k, run_seed(seed, 0), (*PIPELINE_METHODS.get(method, ()), *overrides))
    jobs = [Job(label, m, r, dataset, signal, seed, n, k, o) for label, (m, o) in entries.items()
            for r in range(repeats)]
    start = time.perf_counter()
    rows = run_all(run_job, jobs, workers, progress)
    results = {label: summarise([r for r in rows if r["label"] == label]) for label in entries}
    return {
        "dataset": dataset,
        "n": n,
        "k": k,
        "repeats": repeats,
        "seed": seed,
        "signal": signal,
        "results": results,
        "wall_seconds": time.perf_counter() - start,
    }


def paper_column(dataset: str) -> int:
    """Column of Table II for a dataset."""
    return DATASETS.index(dataset)
