"""What every search benchmark shares: run seeds, pipeline repeats, worker processes, summaries.

Repeat ``r`` of benchmark seed ``S`` runs under the run seed ``1000 * S + r`` (``run_seed``),
so every method of one repeat draws from the same random streams (paired). A pipeline
method is the product's own search (``prednas.pipeline.inprocess.run_inprocess``) on a fresh
``memory://`` store that is dropped afterwards (``run_pipeline``); a baseline is a function
of the benchmark. Jobs run in spawned worker processes (``run_all``); results do not depend
on their number or scheduling. ``summarise`` gives one method's row of the JSON report and
``paired`` the mean paired difference of two methods with its standard error.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

import numpy as np

from prednas.errors import PredNASError

SEED_LIMIT = 2**31 - 1


def run_seed(seed: int, repeat: int) -> int:
    """The ``prednas run --seed`` value of repeat ``repeat`` under benchmark seed ``seed``."""
    return 1000 * seed + repeat


def check_repeats(repeats: Any, seed: Any) -> None:
    """``repeats`` a positive integer and every run seed a valid search seed."""
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise PredNASError(f"repeats must be a positive integer, got {repeats!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0 or run_seed(seed, repeats - 1) > SEED_LIMIT:
        raise PredNASError(f"seed must be an integer in [0, {max(0, SEED_LIMIT - repeats + 1) // 1000}], got {seed!r}")


def run_pipeline(spec: Any, name: str) -> dict[str, Any]:
    """The pipeline's own search on the fresh in-memory store ``name``; its report."""
    from prednas.pipeline.inprocess import run_inprocess
    from prednas.store.memory import drop

    try:
        return run_inprocess(spec, run_key=f"bench-{spec.seed}")
    finally:
        drop(name)


def store_name(label: str, repeat: int) -> str:
    """A store name no other job of this process uses."""
    return f"bench-{os.getpid()}-{label}-{repeat}".replace(" ", "_")


def pipeline_answer(report: dict[str, Any]) -> dict[str, Any]:
    """The answer of a pipeline run as a benchmark row: test accuracy, signal, queries, diagnostics."""
    best, metrics = report["best"], report["metrics"]
    return {"test": best["report"]["test_accuracy"], "signal": best["accuracy"], "queries": int(metrics["queries"]),
            "stats": {k: metrics[k] for k in ("pool_size", "rounds") if k in metrics},
            "trajectory": [p.get("best_test_accuracy", float("nan")) for p in report["rounds"]]}


def run_all(run_job: Callable[[Any], dict[str, Any]], jobs: Sequence[Any], workers: int | None,
            progress: Callable[[], None] | None = None) -> list[dict[str, Any]]:
    """``run_job`` (a module-level function) on every job, in ``workers`` spawned processes (default up to 2)."""
    workers = workers or min(2, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise PredNASError(f"workers must be a positive integer, got {workers!r}")
    if workers == 1:
        return [_advance(run_job(job), progress) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return [_advance(row, progress) for row in pool.map(run_job, jobs, chunksize=1)]


def _advance(row: dict[str, Any], progress: Callable[[], None] | None) -> dict[str, Any]:
    if progress:
        progress()
    return row


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One method's figures over its repeats (in repeat order)."""
    rows = sorted(rows, key=lambda r: r["repeat"])
    runs = [r["test"] for r in rows]
    return {
        "mean": float(np.mean(runs)),
        "std": float(np.std(runs)),
        "runs": runs,
        "queries": [r["queries"] for r in rows],
        "signal_runs": [r["signal"] for r in rows],
        "archs": [r["arch"] for r in rows],
        "run_seeds": [r["run_seed"] for r in rows],
        "stats": mean_stats([r["stats"] for r in rows]),
    }


def mean_stats(stats: list[dict[str, float]]) -> dict[str, float]:
    """Each diagnostic's mean over the repeats that report it."""
    keys = sorted({k for s in stats for k in s})
    return {k: float(np.mean([s[k] for s in stats if k in s])) for k in keys}


def paired(report: dict[str, Any], method: str, baseline: str) -> tuple[float, float]:
    """Mean paired difference ``method - baseline`` over repeats, and its standard error."""
    a = np.array(report["results"][method]["runs"])
    b = np.array(report["results"][baseline]["runs"])
    d = a - b
    se = float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("nan")
    return float(d.mean()), se
