"""The Table II protocol on NAS-Bench-201 (paper Sec. IV-A).

Each repeat ``r`` of each method runs with ``numpy.random.default_rng([seed, r])``, so the
methods are paired: repeat ``r`` of every predictor method starts from the same N cells.
The answer of a run is the queried cell with the best search signal; its test accuracy
is what is reported. Repeats run in worker processes; results do not depend on their
number or scheduling.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from multiprocessing import get_context
from typing import Any

import numpy as np

from prednas.errors import PredNASError
from prednas.evaluators.nb201_table import DATASETS, SIGNALS, NB201TableEvaluator, check_dataset
from prednas.search.methods import METHODS, SearchConfig, check_budget, run_search

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
    """One repeat of one method under one config; ``label`` names its row."""

    label: str
    method: str
    repeat: int
    dataset: str
    signal: str
    seed: int
    config: SearchConfig


def run_job(job: Job) -> dict[str, Any]:
    """Run one search and return its answer and diagnostics."""
    import torch

    torch.set_num_threads(1)
    evaluator = NB201TableEvaluator(job.dataset, job.signal)
    rng = np.random.default_rng([job.seed, job.repeat])
    result = run_search(job.method, evaluator.space, evaluator, seed=rng, config=job.config)
    best = result.best
    return {
        "label": job.label,
        "repeat": job.repeat,
        "test": best.evaluation.report["test_accuracy"],
        "signal": best.evaluation.accuracy,
        "arch": str(best.arch),
        "queries": evaluator.queries,
        "stats": result.stats,
    }


def check_methods(methods: list[str]) -> list[str]:
    """Validate method names."""
    for method in methods:
        if method not in METHODS:
            raise PredNASError(f"unknown method {method!r}; expected one of: {', '.join(METHODS)}")
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
    config: SearchConfig | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Run every method ``repeats`` times and collect the Table II figures."""
    check_methods(methods)
    config = replace(config or SearchConfig(), n=n, k=k)
    entries = {m: (m, config) for m in methods}
    return run_entries(dataset, entries, repeats=repeats, seed=seed, signal=signal, workers=workers, progress=progress)


def run_entries(
    dataset: str,
    entries: dict[str, tuple[str, SearchConfig]],
    *,
    repeats: int,
    seed: int,
    signal: str = "valid",
    workers: int | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Run each labelled (method, config) ``repeats`` times, paired by seed."""
    check_dataset(dataset)
    if signal not in SIGNALS:
        raise PredNASError(f"unknown signal {signal!r}; expected one of: {', '.join(SIGNALS)}")
    if not isinstance(repeats, int) or repeats < 1:
        raise PredNASError(f"repeats must be a positive integer, got {repeats!r}")
    space = NB201TableEvaluator(dataset, signal).space
    n, k = next(iter(entries.values()))[1].n, next(iter(entries.values()))[1].k
    for _, config in entries.values():
        check_budget(space, config.n, config.k)
    jobs = [Job(label, m, r, dataset, signal, seed, c) for label, (m, c) in entries.items() for r in range(repeats)]
    start = time.perf_counter()
    rows = _run_all(jobs, workers or min(2, os.cpu_count() or 1), progress)
    results = {label: _summarise([r for r in rows if r["label"] == label]) for label in entries}
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


def _summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    rows = sorted(rows, key=lambda r: r["repeat"])
    runs = [r["test"] for r in rows]
    return {
        "mean": float(np.mean(runs)),
        "std": float(np.std(runs)),
        "runs": runs,
        "queries": [r["queries"] for r in rows],
        "signal_runs": [r["signal"] for r in rows],
        "archs": [r["arch"] for r in rows],
        "stats": _mean_stats([r["stats"] for r in rows]),
    }


def _run_all(jobs: list[Job], workers: int, progress: Any) -> list[dict[str, Any]]:
    if workers <= 1:
        out = []
        for job in jobs:
            out.append(run_job(job))
            if progress:
                progress()
        return out
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        out = []
        for row in pool.map(run_job, jobs, chunksize=1):
            out.append(row)
            if progress:
                progress()
        return out


def _mean_stats(stats: list[dict[str, float]]) -> dict[str, float]:
    keys = sorted({k for s in stats for k in s})
    return {k: float(np.mean([s[k] for s in stats if k in s])) for k in keys}


def paired(report: dict[str, Any], method: str, baseline: str) -> tuple[float, float]:
    """Mean paired difference ``method - baseline`` over repeats, and its standard error."""
    a = np.array(report["results"][method]["runs"])
    b = np.array(report["results"][baseline]["runs"])
    d = a - b
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return float(d.mean()), se


def paper_column(dataset: str) -> int:
    """Column of Table II for a dataset."""
    return DATASETS.index(dataset)
